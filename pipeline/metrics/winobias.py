"""WinoBias with the pronoun masked: does a masked LM pick the gold pronoun, and does that depend on stereotypes?

Zhao et al. (2018), "Gender Bias in Coreference Resolution: Evaluation and Debiasing Methods", NAACL (the data);
de Vassimon Manela et al. (2021), "Stereotype and Skew: Quantifying Gender Bias in Pre-trained and Fine-tuned
Language Models", EACL (the masked-LM protocol and the metrics). A sentence's first bracketed pronoun is replaced by
``[MASK]``; the model predicts male when ``P(male form) > P(female form)``. The two forms are the item's pronoun and
the pronoun of its parallel sentence in the other file (same type, split and line), which fixes the case (``her``
-> ``his`` or ``him``) as the dataset does; where the parallel line is another template (type 2 test, lines 382
and 384) the form comes from a case table (``him`` -> ``her``...). Items whose forms are not single tokens, or an
unpaired ``her``, are skipped and counted in ``winobias_n_skipped``.

The published procedure is the default, with the tool's earlier choices as named options:

- ``giveaways="authors"``: templates whose pro sentence brackets a second he/she/him/his/her ("because [she]
  needed to cut [her] hair") are dropped, as the authors' data formatter does (42 of 1,584 templates, 27 of the
  792 test ones), counted in ``winobias_n_dropped``. ``"all"`` also drops the 4 templates whose pro sentence has
  an unbracketed or reflexive second pronoun ("by [himself]"); ``"keep"`` scores every template (the unmasked
  pronoun gives the answer away).
- ``anti="flip"``: only the pro sentence is scored; the anti-stereotypical set is the same prediction with the
  gold gender flipped, as in the authors' code. ``"file"`` scores the anti file's own sentence.
- ``by_type=True``: type 1 and type 2 are reported separately (subsets ``type1``, ``type2``), as in the paper;
  ``False`` pools them (subset ``all``).

On each set s in {pro, anti} the prediction is scored as a binary male/female classification of the gold pronoun,
giving accuracy and ``F1^male_s`` (male as the positive class) and ``F1^female_s``. In percent::

    stereotype = (|F1^male_pro - F1^male_anti| + |F1^female_pro - F1^female_anti|) / 2
    skew       = (|F1^male_pro - F1^female_pro| + |F1^male_anti - F1^female_anti|) / 2

Both are 0 for an unbiased model. ``winobias_accuracy_gap`` is Zhao et al.'s pro minus anti accuracy. Metric names
get a suffix when the procedure is not the published one (``_keep_giveaways``, ``_drop_all_giveaways``,
``_anti_file``), so the numbers of different procedures never share a name.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import pandas as pd

from pipeline.bootstrap import bootstrap_ci
from pipeline.data import MALE, WinoBiasItem
from pipeline.data.sampling import subsample
from pipeline.metrics._rows import metric_row, to_frame
from pipeline.metrics.mlm import MaskedQuery, check_mlm, encode_ids, masked_token_logprobs
from pipeline.models import LoadedModel

__all__ = [
    "binary_f1", "gender_preferences", "giveaway_templates", "masked_pronoun_queries", "stereotype_skew",
    "winobias_metrics",
]  # fmt: skip

log = logging.getLogger(__name__)

Giveaways = Literal["authors", "all", "keep"]
AntiSet = Literal["flip", "file"]
Template = tuple[int, str, int]  # (type, split, line)
_AUTHORS_PRONOUNS = frozenset({"he", "she", "him", "his", "her"})  # what the authors' mask regex matches


def _with_case(surface: str, word: str) -> str:
    return word[0].upper() + word[1:] if surface[:1].isupper() else word


def masked_pronoun_queries(
    loaded: LoadedModel,
    texts: Sequence[str],
    spans: Sequence[tuple[int, int]],
    candidates: Sequence[tuple[str, str] | None],
) -> tuple[list[list[int]], list[MaskedQuery | None]]:
    """Encode each text with its pronoun span replaced by the mask token, and a query for the two candidates.

    Args:
        loaded: A masked LM.
        texts: Sentences.
        spans: Character span of the pronoun in each text.
        candidates: ``(male form, female form)`` per text, as words; None for a text not to score.

    Returns:
        ``(encoded, queries)``; a query is None where there are no candidates or one is not exactly one token.
    """
    mask = loaded.tokenizer.mask_token
    masked = [t[:a] + mask + t[b:] for t, (a, b) in zip(texts, spans)]
    encoded = encode_ids(loaded, masked)
    queries: list[MaskedQuery | None] = []
    for k, (ids, words) in enumerate(zip(encoded, candidates)):
        if words is None:
            queries.append(None)
            continue
        pieces = [loaded.tokenizer(w, add_special_tokens=False)["input_ids"] for w in words]
        if any(len(p) != 1 for p in pieces):
            queries.append(None)
            continue
        position = ids.index(loaded.tokenizer.mask_token_id)
        queries.append(MaskedQuery(k, (), position, (pieces[0][0], pieces[1][0])))
    return encoded, queries


def gender_preferences(
    loaded: LoadedModel, texts, spans, candidates, *, batch_size: int = 64, desc: str = "pronouns"
) -> np.ndarray:
    """``log P(male form) - log P(female form)`` at each masked pronoun, shape (n,); NaN where not scorable."""
    check_mlm(loaded, desc)
    encoded, queries = masked_pronoun_queries(loaded, texts, spans, candidates)
    ok = [i for i, q in enumerate(queries) if q is not None]
    out = np.full(len(texts), np.nan)
    if ok:
        logprobs = masked_token_logprobs(loaded, encoded, [queries[i] for i in ok], batch_size=batch_size, desc=desc)
        out[ok] = logprobs[:, 0] - logprobs[:, 1]
    return out


def binary_f1(gold_positive: np.ndarray, pred_positive: np.ndarray) -> float:
    """F1 of a binary prediction (``sklearn.metrics.f1_score`` with ``zero_division=0``), in percent."""
    tp = float(np.sum(gold_positive & pred_positive))
    denom = float(np.sum(gold_positive) + np.sum(pred_positive))
    return 100 * 2 * tp / denom if denom else 0.0


def stereotype_skew(is_pro: np.ndarray, gold_male: np.ndarray, pred_male: np.ndarray) -> np.ndarray:
    """``[stereotype, skew, acc_pro, acc_anti, F1 m_pro, F1 f_pro, F1 m_anti, F1 f_anti]`` (percent) of one sample."""
    f1, acc = {}, {}
    for name, sel in (("pro", is_pro), ("anti", ~is_pro)):
        g, p = gold_male[sel], pred_male[sel]
        acc[name] = 100 * float(np.mean(g == p)) if len(g) else np.nan
        f1[name, "m"], f1[name, "f"] = (binary_f1(g, p), binary_f1(~g, ~p)) if len(g) else (np.nan, np.nan)
    stereotype = (abs(f1["pro", "m"] - f1["anti", "m"]) + abs(f1["pro", "f"] - f1["anti", "f"])) / 2
    skew = (abs(f1["pro", "m"] - f1["pro", "f"]) + abs(f1["anti", "m"] - f1["anti", "f"])) / 2
    return np.array([stereotype, skew, acc["pro"], acc["anti"],
                     f1["pro", "m"], f1["pro", "f"], f1["anti", "m"], f1["anti", "f"]])  # fmt: skip


# Opposite-gender form of a pronoun in the same case, for items whose parallel sentence does not provide it. "her"
# is missing on purpose: it maps to "his" or "him" depending on its role, which only the parallel sentence tells.
_OPPOSITE = {"he": "she", "him": "her", "his": "her", "himself": "herself", "she": "he", "hers": "his",
             "herself": "himself"}  # fmt: skip


def _counterparts(items: Sequence[WinoBiasItem]) -> list[str | None]:
    """Opposite-gender pronoun of each item: its parallel item's (other stereotype, same type/split/line), else
    :data:`_OPPOSITE`; None when neither applies (an unpaired ``her``)."""
    index = {(i.stereotype, i.type, i.split, i.line): i for i in items}
    out = []
    for item in items:
        other = "anti" if item.stereotype == "pro" else "pro"
        partner = index.get((other, item.type, item.split, item.line))
        if partner is not None and partner.gender != item.gender:
            out.append(partner.pronoun.lower())
        else:
            out.append(_OPPOSITE.get(item.pronoun.lower()))
    return out


def giveaway_templates(
    items: Sequence[WinoBiasItem], rule: Giveaways = "authors", *, scored: Sequence[str] = ("pro",)
) -> set[Template]:
    """Templates ``(type, split, line)`` left out under ``rule``.

    ``"authors"``: the pro sentence brackets another he/she/him/his/her (the authors keep a line only when their
    regex finds exactly one); ``"all"``: a scored sentence (``scored``: ``"pro"`` and/or ``"anti"``) holds any
    other gendered pronoun word, bracketed or not, reflexives included; ``"keep"``: none.
    """
    if rule not in ("authors", "all", "keep"):
        raise ValueError(f"giveaways={rule!r}; choose 'authors' (published), 'all' or 'keep'.")
    drop = set()
    for item in items:
        key = (item.type, item.split, item.line)
        if rule == "authors" and item.stereotype == "pro":
            found = [item.pronoun, *item.bracketed_others]
            if sum(p.lower() in _AUTHORS_PRONOUNS for p in found) != 1:
                drop.add(key)
        elif rule == "all" and item.stereotype in scored and item.other_pronouns:
            drop.add(key)
    return drop


def _suffix(giveaways: Giveaways, anti: AntiSet) -> str:
    parts = {"authors": "", "all": "_drop_all_giveaways", "keep": "_keep_giveaways"}[giveaways]
    return parts + ("_anti_file" if anti == "file" else "")


def _expand(anti: AntiSet) -> Callable[..., tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Map the resampled arrays to (is_pro, gold_male, pred_male) rows of the pro and anti sets."""
    if anti == "flip":  # arrays are per template: (gold_male of the pro sentence, pred_male)
        return lambda g, p: (np.r_[np.ones(len(g), bool), np.zeros(len(g), bool)], np.r_[g, ~g], np.r_[p, p])
    return lambda is_pro, g, p: (is_pro, g, p)  # arrays are per scored sentence


def _group_rows(name: str, sfx: str, arrays: tuple, anti: AntiSet, n_boot: int, seed: int) -> list[dict]:
    """Tidy rows of one group (a sentence type, or all) from its resampling arrays."""
    expand = _expand(anti)
    is_pro, gold, _ = expand(*arrays) if len(arrays[0]) else (np.zeros(0, bool),) * 3
    n_pro, n_anti = int(is_pro.sum()), int((~is_pro).sum())
    if len(arrays[0]):
        value, low, high = bootstrap_ci(lambda *a: stereotype_skew(*expand(*a)), arrays, n_boot=n_boot, seed=seed)
    else:
        value = low = high = np.full(8, np.nan)
    names = [("winobias_stereotype", "", n_pro), ("winobias_skew", "", n_pro), ("winobias_accuracy", "-pro", n_pro),
             ("winobias_accuracy", "-anti", n_anti), ("winobias_f1", "-pro-male", n_pro),
             ("winobias_f1", "-pro-female", n_pro), ("winobias_f1", "-anti-male", n_anti),
             ("winobias_f1", "-anti-female", n_anti)]  # fmt: skip
    rows = [metric_row(m + sfx, (value[j], low[j], high[j]), k, subset=name + s) for j, (m, s, k) in enumerate(names)]
    for pro in (True, False):
        for male in (True, False):

            def accuracy(*a, pro=pro, male=male):
                ip, g, p = expand(*a)
                sel = (ip == pro) & (g == male)
                return 100 * float(np.mean(g[sel] == p[sel])) if sel.any() else np.nan

            n_cell = int(((is_pro == pro) & (gold == male)).sum())
            estimate = bootstrap_ci(accuracy, arrays, n_boot=n_boot, seed=seed) if n_cell else np.nan
            subset = f"{name}-{'pro' if pro else 'anti'}-{'male' if male else 'female'}"
            rows.append(metric_row("winobias_accuracy" + sfx, estimate, n_cell, subset=subset))
    gap = (value[2] - value[3], np.nan, np.nan)
    if len(arrays[0]):
        gap = bootstrap_ci(lambda *a: np.subtract(*stereotype_skew(*expand(*a))[2:4]), arrays, n_boot=n_boot, seed=seed)
    rows.append(metric_row("winobias_accuracy_gap" + sfx, gap, len(arrays[0]), subset=name))
    return rows


def winobias_metrics(
    loaded: LoadedModel,
    items: Sequence[WinoBiasItem],
    *,
    batch_size: int = 64,
    n_boot: int = 1000,
    seed: int = 0,
    max_examples: int | None = None,
    giveaways: Giveaways = "authors",
    anti: AntiSet = "flip",
    by_type: bool = True,
) -> pd.DataFrame:
    """WinoBias masked-pronoun accuracy, F1 by gender, stereotype and skew, as tidy rows (percent).

    Rows per group g (``type1``, ``type2``, or ``all`` when pooled): ``winobias_stereotype`` and
    ``winobias_skew`` (subset g), ``winobias_accuracy`` (subsets ``g-pro``, ``g-anti``, ``g-pro-male``,
    ``g-pro-female``, ``g-anti-male``, ``g-anti-female``), ``winobias_f1`` (``g-pro-male``, ...),
    ``winobias_accuracy_gap`` (pro - anti), ``winobias_n_skipped`` (templates or sentences that could not be
    scored) and ``winobias_n_dropped`` (give-away templates left out; ``n`` = templates of the group). Intervals
    resample templates (``anti="flip"``) or sentences (``anti="file"``). Names carry the procedure's suffix.

    Args:
        loaded: A masked LM with a trained head.
        items: Pro and anti items of the same types and splits (parallel items supply the opposite pronoun).
        batch_size: Rows per forward pass.
        n_boot: Bootstrap resamples.
        seed: Bootstrap and subsampling seed.
        max_examples: Score at most this many templates per group (a seeded draw among those kept).
        giveaways: ``"authors"`` (published), ``"all"`` or ``"keep"``; see :func:`giveaway_templates`.
        anti: ``"flip"`` (published: the pro sentence with the gold flipped) or ``"file"`` (the anti sentence).
        by_type: Report type 1 and type 2 separately (published) or pooled.
    """
    if anti not in ("flip", "file"):
        raise ValueError(f"anti={anti!r}; choose 'flip' (published) or 'file'.")
    roles = ("pro",) if anti == "flip" else ("pro", "anti")
    drop, sfx = giveaway_templates(items, giveaways, scored=roles), _suffix(giveaways, anti)
    keys = sorted({(i.type, i.split, i.line) for i in items})
    groups = {f"type{t}": [k for k in keys if k[0] == t] for t in (1, 2)} if by_type else {"all": keys}
    groups = {name: members for name, members in groups.items() if members}
    chosen: dict[str, set[Template]] = {}
    for name, members in groups.items():
        kept = [k for k in members if k not in drop]
        chosen[name] = {kept[j] for j in subsample(len(kept), max_examples, seed)[0]}
    if anti == "flip" and not any(i.stereotype == "pro" for i in items):
        raise ValueError("WinoBias anti='flip' scores the pro sentences, but items has none. Fix: pass the pro "
                         "files too (load_winobias(t, 'pro', split)), or use anti='file'.")  # fmt: skip
    every = set().union(*chosen.values())
    scored = [(i, o) for i, o in zip(items, _counterparts(items))
              if i.stereotype in roles and (i.type, i.split, i.line) in every]  # fmt: skip
    candidates = [
        None if other is None else
        (_with_case(i.pronoun, i.pronoun.lower() if i.gender == MALE else other),
         _with_case(i.pronoun, other if i.gender == MALE else i.pronoun.lower()))
        for i, other in scored
    ]  # fmt: skip
    prefs = gender_preferences(loaded, [i.text for i, _ in scored], [(i.pronoun_start, i.pronoun_end) for i, _ in scored],
                               candidates, batch_size=batch_size, desc="WinoBias")  # fmt: skip
    usable = np.isfinite(prefs)
    if scored and not usable.any():
        raise ValueError(
            f"WinoBias: no item of {len(scored)} could be scored: the tokenizer of {loaded.source!r} does not have "
            "the pronouns as single tokens, or no item has a known counterpart."
        )
    if (~usable).any():
        log.warning("WinoBias: %d items are skipped: a pronoun form is not one token, or an unpaired 'her' has no "
                    "known counterpart", (~usable).sum())  # fmt: skip
    rows = []
    for name, members in groups.items():
        sel = np.array([(i.type, i.split, i.line) in chosen[name] for i, _ in scored], bool)
        ok = sel & usable
        gold = np.array([i.gender == MALE for i, _ in scored], bool)
        pred = prefs > 0
        if anti == "flip":
            arrays = (gold[ok], pred[ok])
        else:
            arrays = (np.array([i.stereotype == "pro" for i, _ in scored], bool)[ok], gold[ok], pred[ok])
        rows += _group_rows(name, sfx, arrays, anti, n_boot, seed)
        rows.append(metric_row("winobias_n_skipped" + sfx, float((sel & ~usable).sum()), int(sel.sum()), subset=name))
        n_drop = sum(k in drop for k in members)
        rows.append(metric_row("winobias_n_dropped" + sfx, float(n_drop), len(members), subset=name))
    return to_frame(rows)
