"""Attribution data: texts tokenised once, with their gender-swapped twins aligned position by position.

An :class:`AttributionData` holds everything a score needs for every example: token ids and masks of the original
texts and of their counterfactual twins (the gender swap of :func:`pipeline.data.counterfactual`, as in the
counterfactual gap of Garg et al. 2019 and the interventions of Vig et al. 2020), padded to one common length so
that position ``t`` of a text and of its twin sit in the same column; class labels and genders of task data; the
[MASK] position and the (male, female) pronoun token ids of WinoBias / Winogender items with the pronoun masked
(Zhao et al. 2018; Rudinger et al. 2018); or the set index (X, Y, A, B) of SEAT items (May et al. 2019).

:meth:`AttributionData.batch` cuts a :class:`Batch` (rows, moved to the model's device, trimmed to the longest row
of either view). Activation patching needs twins with the same token length, so positions correspond one to one:
:meth:`AttributionData.aligned` keeps those pairs and says how many were dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import torch
from jaxtyping import Int
from torch import Tensor

from pipeline.data import MALE, PRONOUN_GENDER, GenderSwapper, SeatTest, TaskData, counterfactual
from pipeline.data.sampling import seeded_rows
from pipeline.models import LoadedModel

__all__ = ["AttributionData", "Batch", "View", "aligned_pairs", "split_rows"]

log = logging.getLogger(__name__)

ViewName = Literal["orig", "cf"]
# Per-example tensors, in the order of the dataclass fields; optional ones are None when the data lacks them.
_ROW_FIELDS = ("input_ids", "attention_mask", "target_pos", "cf_input_ids", "cf_attention_mask", "cf_target_pos",
               "labels", "genders", "pronoun_ids", "groups")  # fmt: skip
_SEQ_FIELDS = ("input_ids", "attention_mask", "cf_input_ids", "cf_attention_mask")
# Male/female forms to compare at a masked gender-neutral pronoun (Winogender's "neutral" sentences).
_NEUTRAL_PAIRS = {"they": ("he", "she"), "them": ("him", "her"), "their": ("his", "her"), "theirs": ("his", "hers"),
                  "themselves": ("himself", "herself"), "themself": ("himself", "herself")}  # fmt: skip


@dataclass(frozen=True)
class View:
    """One input of a score: the original texts or their twins. ``target_pos`` is -1 where there is none."""

    input_ids: Int[Tensor, "batch seq"]
    attention_mask: Int[Tensor, "batch seq"]
    target_pos: Int[Tensor, " batch"]
    pronoun_ids: Int[Tensor, "batch 2"]  # (male form, female form) token ids to read at target_pos


@dataclass(frozen=True, eq=False)
class _Rows:
    """Per-example tensors shared by :class:`AttributionData` and :class:`Batch` (first axis = example)."""

    input_ids: Int[Tensor, "n seq"]
    attention_mask: Int[Tensor, "n seq"]
    target_pos: Int[Tensor, " n"]  # [MASK] position, -1 when none
    cf_input_ids: Int[Tensor, "n seq"] | None
    cf_attention_mask: Int[Tensor, "n seq"] | None
    cf_target_pos: Int[Tensor, " n"] | None
    labels: Int[Tensor, " n"]  # class id, -1 when none
    genders: Int[Tensor, " n"]  # MALE=0 / FEMALE=1, -1 when unknown
    pronoun_ids: Int[Tensor, "n 2"]  # (male form, female form) token ids, -1 when none
    groups: Int[Tensor, " n"]  # SEAT set 0..3 = X, Y, A, B, -1 when none

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def has_counterfactual(self) -> bool:
        return self.cf_input_ids is not None

    def swapped(self):
        """The same rows with original and counterfactual inputs exchanged (known genders flipped)."""
        cf = self.view("cf")
        return replace(self, input_ids=cf.input_ids, attention_mask=cf.attention_mask, target_pos=cf.target_pos,
                       cf_input_ids=self.input_ids, cf_attention_mask=self.attention_mask,
                       cf_target_pos=self.target_pos, genders=torch.where(self.genders >= 0, 1 - self.genders, -1),
                       **self._swapped_meta())  # fmt: skip

    def _swapped_meta(self) -> dict:
        return {}

    def _map_rows(self, fn) -> dict:
        return {f: (None if getattr(self, f) is None else fn(getattr(self, f))) for f in _ROW_FIELDS}

    def view(self, name: ViewName) -> View:
        """The original (``orig``) or swapped (``cf``) inputs."""
        if name == "orig":
            return View(self.input_ids, self.attention_mask, self.target_pos, self.pronoun_ids)
        if name != "cf":
            raise ValueError(f"view={name!r} is not a view; use 'orig' or 'cf'.")
        if not self.has_counterfactual:
            raise ValueError(
                "this data has no counterfactual twins; build it with twins: from_task(..., "
                "counterfactual_twins=True), from_texts(..., cf_texts=...) or from_pronouns."
            )
        return View(self.cf_input_ids, self.cf_attention_mask, self.cf_target_pos, self.pronoun_ids)


@dataclass(frozen=True, eq=False)
class Batch(_Rows):
    """A slice of :class:`AttributionData` on the model's device; ``index`` gives the rows' example ids."""

    index: Int[Tensor, " n"] = None  # type: ignore[assignment]

    def repeat(self, k: int) -> Batch:
        """``k`` stacked copies (copy-major: row ``c * len(self) + i`` is copy c of row i)."""
        return replace(self, index=self.index.repeat(k), **self._map_rows(lambda t: t.repeat(k, *[1] * (t.dim() - 1))))

    def rows(self, idx: Int[Tensor, " m"]) -> Batch:
        """The rows ``idx`` (any order, repeats allowed)."""
        return replace(self, index=self.index[idx], **self._map_rows(lambda t: t[idx]))


@dataclass(frozen=True, eq=False)
class AttributionData(_Rows):
    """Tokenised attribution inputs (CPU tensors); build with a ``from_*`` constructor.

    Attributes:
        name: a short name (e.g. ``bug-balanced``).
        texts: the original texts, shape (n,).
        cf_texts: the swapped twins, or None.
        label_names: class names of task data (empty otherwise).
        group_names: names of the SEAT sets X, Y, A, B (empty otherwise).
    """

    name: str = ""
    texts: tuple[str, ...] = ()
    cf_texts: tuple[str, ...] | None = None
    label_names: tuple[str, ...] = ()
    group_names: tuple[str, ...] = ()

    def _swapped_meta(self) -> dict:
        return {"texts": self.cf_texts, "cf_texts": self.texts, "name": f"{self.name}-swapped"}

    # ---- constructors ----------------------------------------------------------------------------------------
    @classmethod
    def from_texts(
        cls,
        loaded: LoadedModel,
        texts: Sequence[str],
        *,
        cf_texts: Sequence[str] | None = None,
        labels: Sequence[int] | None = None,
        genders: Sequence[int] | None = None,
        label_names: Sequence[str] = (),
        name: str = "texts",
        max_length: int = 128,
    ) -> AttributionData:
        """Tokenise ``texts`` (and their twins, to the same padded length) with the model's tokenizer."""
        n = len(texts)
        if n == 0:
            raise ValueError(f"data {name!r} is empty; attribution needs at least one example. Fix: check the filters.")
        if cf_texts is not None and len(cf_texts) != n:
            raise ValueError(f"cf_texts has {len(cf_texts)} texts for {n} originals; give one twin per text.")
        loaded.report_truncation(list(texts) + list(cf_texts or []), max_length, name=name)
        ids, mask = _encode(loaded, list(texts) + list(cf_texts or []), max_length)
        missing = torch.full((n,), -1, dtype=torch.long)
        return cls(
            input_ids=ids[:n], attention_mask=mask[:n], target_pos=missing,
            cf_input_ids=None if cf_texts is None else ids[n:],
            cf_attention_mask=None if cf_texts is None else mask[n:],
            cf_target_pos=None if cf_texts is None else missing,
            labels=missing if labels is None else torch.tensor(np.array(labels), dtype=torch.long),
            genders=missing if genders is None else torch.tensor(np.array(genders), dtype=torch.long),
            pronoun_ids=torch.full((n, 2), -1, dtype=torch.long), groups=missing,
            name=name, texts=tuple(texts), cf_texts=None if cf_texts is None else tuple(cf_texts),
            label_names=tuple(label_names),
        )  # fmt: skip

    @classmethod
    def from_task(
        cls,
        loaded: LoadedModel,
        task: TaskData,
        *,
        counterfactual_twins: bool = True,
        swapper: GenderSwapper | None = None,
        max_length: int = 128,
    ) -> AttributionData:
        """Task data (occupation classification); with twins, texts the swap leaves unchanged are left out.

        A text with no gendered word has itself as twin and carries no counterfactual signal; keeping it would
        pull every counterfactual effect towards zero, so it is dropped and the count is logged.
        """
        if len(task) == 0:
            raise ValueError(f"task {task.name!r} is empty; attribution needs at least one example.")
        if not counterfactual_twins:
            return cls.from_texts(
                loaded,
                task.texts,
                labels=task.labels,
                genders=task.genders,
                label_names=task.label_names,
                name=task.name,
                max_length=max_length,
            )
        twins = counterfactual(task, swapper)
        changed = np.array([a != b for a, b in zip(task.texts, twins.texts)])
        if not changed.any():
            raise ValueError(
                f"no text of {task.name!r} has a gendered word to swap, so there is no counterfactual; "
                "pass counterfactual_twins=False or data with gendered words."
            )
        if not changed.all():
            log.info(
                "%s: %d of %d texts have no gendered word to swap; left out", task.name, (~changed).sum(), len(task)
            )
        task, twins = task.subset(np.flatnonzero(changed)), twins.subset(np.flatnonzero(changed))
        return cls.from_texts(
            loaded,
            task.texts,
            cf_texts=twins.texts,
            labels=task.labels,
            genders=task.genders,
            label_names=task.label_names,
            name=task.name,
            max_length=max_length,
        )

    @classmethod
    def from_pronouns(
        cls,
        loaded: LoadedModel,
        items: Sequence,
        *,
        name: str = "pronouns",
        swapper: GenderSwapper | None = None,
        max_length: int = 128,
    ) -> AttributionData:
        """WinoBias or Winogender items with the pronoun replaced by the mask token.

        Each item gets the (male, female) forms of its pronoun, matched to its case with the gender swapper
        (``he``/``she``, ``him``/``her``, ``his``/``her``, ``his``/``hers``, ``himself``/``herself``; a neutral
        ``they``/``them``/``their`` compares ``he``/``she``, ``him``/``her``, ``his``/``her``). The twin is the
        gender swap of the masked text (its other gendered words swapped).
        """
        if len(items) == 0:
            raise ValueError(f"data {name!r} has no items; attribution needs at least one example.")
        tok = loaded.tokenizer
        if tok.mask_token is None:
            raise ValueError(f"the tokenizer of {loaded.source!r} has no mask token; pronoun data needs a masked LM.")
        swapper = swapper or GenderSwapper.from_winobias()
        texts, pairs, genders = [], [], []
        for item in items:
            text = getattr(item, "text", None) or item.sentence
            start, end = item.pronoun_start, item.pronoun_end
            texts.append(text[:start] + tok.mask_token + text[end:])
            pairs.append(_pronoun_pair(text[start:end], text[start:], swapper))
            genders.append(_gender_id(item.gender))
        cf = [swapper.swap(t) for t in texts]
        data = cls.from_texts(loaded, texts, cf_texts=cf, genders=genders, name=name, max_length=max_length)
        return replace(
            data,
            target_pos=_mask_positions(data.input_ids, tok.mask_token_id, name),
            cf_target_pos=_mask_positions(data.cf_input_ids, tok.mask_token_id, name),
            pronoun_ids=torch.tensor([[_single_token(tok, w) for w in p] for p in pairs]),
        )

    @classmethod
    def from_seat(cls, loaded: LoadedModel, test: SeatTest, *, max_length: int = 128) -> AttributionData:
        """The four sets of a SEAT test (X, Y targets; A, B attributes), one row per item."""
        sets = (test.targ1, test.targ2, test.attr1, test.attr2)
        data = cls.from_texts(loaded, [t for s in sets for t in s], name=test.name, max_length=max_length)
        groups = torch.cat([torch.full((len(s),), g, dtype=torch.long) for g, s in enumerate(sets)])
        names = (test.targ1_name, test.targ2_name, test.attr1_name, test.attr2_name)
        return replace(data, groups=groups, group_names=names)

    # ---- slicing ---------------------------------------------------------------------------------------------
    def subset(self, idx: Sequence[int] | np.ndarray | Tensor) -> AttributionData:
        """The rows ``idx`` (metadata kept)."""
        idx = torch.as_tensor(np.asarray(idx), dtype=torch.long)
        pick = lambda seq: None if seq is None else tuple(seq[i] for i in idx.tolist())
        return replace(self, texts=pick(self.texts), cf_texts=pick(self.cf_texts), **self._map_rows(lambda t: t[idx]))

    def aligned_rows(self) -> np.ndarray:
        """Row ids of the pairs whose original and twin have the same token length (sorted)."""
        self.view("cf")  # raises without twins
        return np.flatnonzero((self.attention_mask.sum(1) == self.cf_attention_mask.sum(1)).numpy())

    def aligned(self) -> tuple[AttributionData, int]:
        """Pairs whose original and twin have the same token length, and the number of pairs dropped."""
        rows = self.aligned_rows()
        if not len(rows):
            raise ValueError(
                f"no pair of {self.name!r} keeps its token length under the gender swap, so positions "
                "do not align; patching needs pairs of equal length (e.g. he/she, his/her swaps)."
            )
        return self.subset(rows), len(self) - len(rows)

    def batch(self, idx: Int[Tensor, " b"], device: torch.device | str | None = None) -> Batch:
        """Rows ``idx`` on ``device``, trimmed to the longest row of either view."""
        masks = [self.attention_mask[idx]] + ([self.cf_attention_mask[idx]] if self.has_counterfactual else [])
        used = torch.stack([m.any(0) for m in masks]).any(0)  # (seq,)
        seq = int(used.nonzero().max()) + 1 if used.any() else 1
        rows = self._map_rows(lambda t: t[idx])
        for key in _SEQ_FIELDS:
            if rows[key] is not None:
                rows[key] = rows[key][:, :seq]
        rows = {k: None if v is None else v.to(device) for k, v in rows.items()}
        return Batch(index=idx.to(device), **rows)


def aligned_pairs(data: AttributionData, what: str) -> tuple[AttributionData, int]:
    """The pairs of ``data`` whose twin keeps the token length, and how many were left out (logged, naming
    ``what``): the one path by which every method that reads the twin position by position (activation patching,
    attribution patching from twins, token IG from the twin) drops the pairs it cannot align."""
    kept, dropped = data.aligned()
    if dropped:
        log.warning("%s: %d pairs change token length under the swap and are left out; %d remain", what, dropped,
                    len(kept))  # fmt: skip
    return kept, dropped


def split_rows(n: int, seed: int, fraction: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint, sorted, non-empty sets of row ids covering ``0..n-1``, drawn with ``seed``: ``round(fraction *
    n)`` rows (at least one, at most n - 1) and the rest. Selecting units on one part and testing them on the other
    keeps the test free of the selection (a unit picked for its large estimate on some examples is re-measured on
    others)."""
    if n < 2:
        raise ValueError(
            f"{n} example(s) cannot be split into a part that selects and a part that tests; give at least 2."
        )
    first = seeded_rows(n, min(max(round(fraction * n), 1), n - 1), seed)
    return first, np.setdiff1d(np.arange(n), first)


def _encode(loaded: LoadedModel, texts: list[str], max_length: int) -> tuple[Tensor, Tensor]:
    enc = loaded.tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    return enc["input_ids"].long(), enc["attention_mask"].long()


def _gender_id(gender: int | str) -> int:
    if isinstance(gender, str):
        return {"male": 0, "female": 1}.get(gender, -1)
    return int(gender)


def _pronoun_pair(pronoun: str, rest: str, swapper: GenderSwapper) -> tuple[str, str]:
    """(male, female) forms of a pronoun in context; ``rest`` is the text from the pronoun on."""
    low = pronoun.lower()
    if low in _NEUTRAL_PAIRS:
        return _NEUTRAL_PAIRS[low]
    if low not in PRONOUN_GENDER:
        raise ValueError(
            f"pronoun {pronoun!r} is not a gendered or neutral English pronoun; "
            f"known: {sorted(PRONOUN_GENDER) + sorted(_NEUTRAL_PAIRS)}."
        )
    other = swapper.swap(rest).split()[0].strip(".,;:!?\"')").lower()
    return (low, other) if PRONOUN_GENDER[low] == MALE else (other, low)


def _single_token(tokenizer, word: str) -> int:
    ids = tokenizer(word, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise ValueError(
            f"pronoun {word!r} is {len(ids)} tokens in this vocabulary; the pronoun gap needs one token "
            "per pronoun (BERT-family uncased/cased vocabularies have them)."
        )
    return int(ids[0])


def _mask_positions(ids: Tensor, mask_id: int, name: str) -> Tensor:
    hits = ids == mask_id  # (n, seq)
    counts = hits.sum(1)
    if (counts != 1).any():
        bad = int((counts != 1).nonzero()[0])
        raise ValueError(
            f"{name}: row {bad} has {int(counts[bad])} mask tokens after tokenisation (one expected); "
            "the text may have been truncated: raise max_length."
        )
    return hits.float().argmax(1)
