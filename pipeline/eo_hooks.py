"""Equal-opportunity post-processing inside a model: a fitted group-specific randomised relabelling
(:mod:`pipeline.compress.equal_opportunity`) installed as a forward hook on a sequence classifier, recorded in
``config.eo_rule`` (so it is saved in the variant's ``config.json``, written atomically with the variant folder) and
hooked in again by :func:`pipeline.models.load_model`, so every stage that predicts with the variant sees the
post-processed predictions.

What the hook outputs. The rule maps the model's predicted class ``i`` of an input of gender ``g`` to a final class
drawn from ``M[g, i]``. The hook replaces the logits by those of the *drawn* label (0 for it, -1e4 for every other
class), so a label read by argmax (accuracy, TPR gaps, GAP_RMS, flip rate) is the randomised rule's decision, and
a probability read by softmax is 1 for the drawn class and 0 otherwise: one draw of the outcome, whose expectation
over draws is the *expected outcome probability* ``M[g, argmax p(x)]`` (:meth:`EoRule.expected`). Mean probability
gaps over texts (the counterfactual gap) are therefore unbiased but noisier estimates of the gap in expected outcome
probabilities; the model's own class probabilities are gone, so nothing that needs them (calibration, gradients
of the logits: attribution) can be read from the post-processed model.

Seeded draws. The uniform number behind each input's draw is a hash of the rule's seed and the input as the model
sees it (tokenised, decoded, lower-cased: :func:`token_texts`), with every gendered word masked: the same text gets the same label in every batch, order and call, and a text and its
gender-swapped twin share their number (common random numbers), so a counterfactual flip comes from the model or
the group, not from the coin.

The gender at prediction time. ``gender = "inferred"``: the majority of the gendered words of the built-in list
(:data:`pipeline.data.counterfactual` pairs: pronouns, titles, kinship nouns, first names) in the input; an input
with none or a tie gets the model's own prediction. ``gender = "given"``: the caller names each input's gender
(:func:`given_genders`; inside a run every prediction passes the data's genders through :func:`data_genders`, a
counterfactual twin the flipped one); an input it did not name is refused, and one named ``UNKNOWN`` (or, by
:func:`data_genders`, given two genders in one call) gets the model's own prediction.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn
from transformers import PreTrainedTokenizerBase

from pipeline.data.counterfactual import _BUILTIN_ONE_WAY, _BUILTIN_PAIRS
from pipeline.data.task import FEMALE, MALE

__all__ = [
    "EO_KEY",
    "GENDER_SOURCES",
    "UNKNOWN",
    "EoRule",
    "data_genders",
    "gender_lexicon",
    "given_genders",
    "infer_genders",
    "install_eo_rule",
    "installed_rule",
    "load_eo_rule",
    "reads_given_genders",
    "token_texts",
]

log = logging.getLogger(__name__)

EO_KEY = "eo_rule"  # config attribute: EoRule.record()
GENDER_SOURCES: tuple[str, ...] = ("given", "inferred")
GenderSource = Literal["given", "inferred"]
UNKNOWN = -1  # inferred gender of a text with no gendered word, or as many of each
_OFF = -1e4  # logit of every class but the drawn one
_STORE = "_bias_atlas_eo"  # model attribute: _State
_WORD = re.compile(r"(?i:ma'am)|[^\W\d_]+")


def gender_lexicon() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(male words, female words) of the built-in gendered-word list of :mod:`pipeline.data.counterfactual`, with
    the pronouns ``his`` / ``her``, ``hers`` and ``ms`` / ``madam``."""
    male = {m for m, _ in _BUILTIN_PAIRS} | {"his"}
    female = {f for _, f in _BUILTIN_PAIRS} | {"her"} | set(_BUILTIN_ONE_WAY)
    return tuple(sorted(male)), tuple(sorted(female))


def _words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def infer_genders(texts: Sequence[str], male: Sequence[str], female: Sequence[str]) -> np.ndarray:
    """Per text, ``MALE`` or ``FEMALE`` by the majority of its words in ``male`` / ``female``; ``UNKNOWN`` when it
    has none or as many of each."""
    men, women = frozenset(male), frozenset(female)
    out = np.full(len(texts), UNKNOWN, dtype=np.int64)
    for i, text in enumerate(texts):
        words = _words(text)
        m, f = sum(w in men for w in words), sum(w in women for w in words)
        out[i] = MALE if m > f else FEMALE if f > m else UNKNOWN
    return out


def token_texts(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int) -> list[str]:
    """Each text as the model sees it: tokenised (cut at ``max_length``), decoded and lower-cased."""
    ids = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    return [tokenizer.decode(row, skip_special_tokens=True).lower() for row in ids]


@dataclass(frozen=True)
class EoRule:
    """A fitted rule: ``matrix[g, i, j] = P(final = j | model predicted i, gender g)``, where the gender comes from
    (``gender``), the draws' ``seed``, and the gendered words that infer the gender and are masked in the draws. :meth:`apply` reads texts as the model sees them (:func:`token_texts`)."""

    matrix: np.ndarray
    gender: GenderSource
    seed: int
    male: tuple[str, ...]
    female: tuple[str, ...]

    def record(self) -> dict:
        """The JSON record saved in ``config.eo_rule`` (floats written exactly)."""
        return {"matrix": np.asarray(self.matrix, dtype=float).tolist(), "gender": self.gender, "seed": self.seed,
                "male": list(self.male), "female": list(self.female)}  # fmt: skip

    @classmethod
    def from_record(cls, record: dict) -> EoRule:
        """The rule a :meth:`record` describes.

        Raises:
            ValueError: an unknown gender source or a matrix that is not ``(groups, k, k)`` row-stochastic.
        """
        matrix = np.asarray(record["matrix"], dtype=float)
        if matrix.ndim != 3 or matrix.shape[1] != matrix.shape[2] or not np.allclose(matrix.sum(2), 1):
            raise ValueError(f"config.{EO_KEY}.matrix has shape {matrix.shape} or rows not summing to 1; rebuild it.")
        if record["gender"] not in GENDER_SOURCES:
            raise ValueError(f"config.{EO_KEY}.gender = {record['gender']!r}; allowed: {GENDER_SOURCES}.")
        return cls(matrix, record["gender"], int(record["seed"]), tuple(record["male"]), tuple(record["female"]))

    def uniforms(self, texts: Sequence[str]) -> np.ndarray:
        """The seeded uniform number of each text: a hash of the seed and the lower-cased text, gendered words
        masked."""
        gendered = frozenset(self.male) | frozenset(self.female)
        out = np.empty(len(texts))
        for i, text in enumerate(texts):
            key = _WORD.sub(lambda m: "*" if m.group().lower() in gendered else m.group().lower(), text)
            digest = hashlib.blake2b(f"{self.seed}\x00{key}".encode(), digest_size=8).digest()
            out[i] = int.from_bytes(digest, "little") / 2.0**64
        return out

    def expected(self, pred: np.ndarray, groups: np.ndarray) -> np.ndarray:
        """Expected outcome probabilities ``M[g, pred]`` (n, k); a one-hot of ``pred`` where the gender is unknown."""
        out = np.eye(self.matrix.shape[1])[pred]
        known = groups != UNKNOWN
        out[known] = self.matrix[groups[known], pred[known]]
        return out

    def apply(self, pred: np.ndarray, texts: Sequence[str], groups: np.ndarray) -> np.ndarray:
        """The final label of each text (its model prediction ``pred``, its gender ``groups``)."""
        cumulative = self.expected(pred, groups).cumsum(1)
        drawn = (self.uniforms(texts)[:, None] > cumulative).sum(1)
        return np.minimum(drawn, self.matrix.shape[1] - 1)


@dataclass
class _State:
    rule: EoRule
    tokenizer: PreTrainedTokenizerBase
    given: dict[str, int]  # text as the model sees it -> gender (given_genders)


def _hook(module: nn.Module, args: tuple, kwargs: dict, output: dict | tuple) -> dict | tuple:
    """Replace the logits by those of each input's drawn label (module docstring)."""
    state: _State = getattr(module, _STORE)
    if module.training:
        raise RuntimeError(
            "an equal-opportunity (eo) variant post-processes its predictions and cannot be trained; train the model "
            "it was fitted on instead."
        )
    ids = kwargs.get("input_ids", args[0] if args else None)
    if ids is None:
        raise ValueError(
            "an eo variant's rule reads each input's words (for the draw and the gender), so it needs input_ids, "
            "not inputs_embeds; gradient attributions of its post-processed outputs are not defined."
        )
    mask = kwargs.get("attention_mask")
    mask = None if mask is None else mask.cpu().bool()
    rows: list[Tensor] = [row if mask is None else row[mask[r]] for r, row in enumerate(ids.cpu())]
    texts = [state.tokenizer.decode(row, skip_special_tokens=True).lower() for row in rows]
    rule = state.rule
    if rule.gender == "inferred":
        groups = infer_genders(texts, rule.male, rule.female)
    else:
        missing = [t for t in texts if t not in state.given]
        if missing:
            raise LookupError(
                f"this eo variant uses each input's given gender, and {len(missing)} inputs have none (e.g. "
                f"{missing[0][:60]!r}); pass genders= to pipeline.metrics.predict.classifier_logits, predict within "
                "pipeline.eo_hooks.given_genders(loaded, texts, genders), or build the variant with gender = "
                "'inferred'."
            )
        groups = np.array([state.given[t] for t in texts], dtype=np.int64)
    logits = output["logits"] if isinstance(output, dict) else output[0]
    labels = rule.apply(logits.argmax(-1).cpu().numpy(), texts, groups)
    drawn = torch.full_like(logits, _OFF)
    drawn[torch.arange(len(labels), device=logits.device), torch.as_tensor(labels, device=logits.device)] = 0
    if isinstance(output, dict):
        output["logits"] = drawn
        return output
    return (drawn, *output[1:])


def install_eo_rule(model: nn.Module, tokenizer: PreTrainedTokenizerBase, rule: EoRule) -> None:
    """Hook ``rule`` into the sequence classifier ``model`` (replacing a rule it has) and record it in
    ``config.eo_rule``, so a ``save_pretrained`` folder reloads post-processed."""
    state = getattr(model, _STORE, None)
    if state is None:
        model.register_forward_hook(_hook, with_kwargs=True)
        setattr(model, _STORE, _State(rule, tokenizer, {}))
    else:
        state.rule = rule
    setattr(model.config, EO_KEY, rule.record())


def installed_rule(model: nn.Module) -> EoRule | None:
    """The rule hooked into ``model`` (None when it has none)."""
    state = getattr(model, _STORE, None)
    return None if state is None else state.rule


def load_eo_rule(model: nn.Module, tokenizer: PreTrainedTokenizerBase) -> None:
    """Hook in the rule that ``config.eo_rule`` records (called by ``load_model`` for a classifier)."""
    install_eo_rule(model, tokenizer, EoRule.from_record(getattr(model.config, EO_KEY)))


@contextmanager
def given_genders(loaded, texts: Sequence[str], genders: Sequence[int], *, max_length: int = 128) -> Iterator[None]:
    """Within the block, the gender of each of ``texts`` (as cut at ``max_length``) is ``genders`` for the rule of
    ``loaded`` (a :class:`pipeline.models.LoadedModel` whose rule uses ``gender = "given"``); a text given
    ``UNKNOWN`` keeps the model's own prediction.

    Raises:
        ValueError: ``loaded`` has no rule, a gender that is not ``MALE``, ``FEMALE`` or ``UNKNOWN``, or one text
            given two genders.
    """
    state: _State | None = getattr(loaded.model, _STORE, None)
    if state is None:
        raise ValueError(f"{loaded.source!r} has no equal-opportunity rule; given genders would not be read.")
    bad = set(np.asarray(genders, dtype=np.int64).tolist()) - {MALE, FEMALE, UNKNOWN}
    if bad:
        raise ValueError(f"given genders must be {MALE} (male), {FEMALE} (female) or {UNKNOWN} (unknown), got "
                         f"{sorted(bad)[:5]}.")  # fmt: skip
    given = dict(state.given)
    for text, gender in zip(token_texts(loaded.tokenizer, texts, max_length), genders, strict=True):
        if given.setdefault(text, int(gender)) != int(gender):
            raise ValueError(f"the text {text[:60]!r} is given two genders; give each input one.")
    previous, state.given = state.given, given
    try:
        yield
    finally:
        state.given = previous


def reads_given_genders(model: nn.Module) -> bool:
    """Whether ``model`` carries an eo rule that reads each input's given gender (``gender = "given"``)."""
    rule = installed_rule(model)
    return rule is not None and rule.gender == "given"


@contextmanager
def data_genders(loaded, texts: Sequence[str], genders: Sequence[int] | None, *, max_length: int) -> Iterator[None]:
    """Predictions of ``texts`` within the block read ``genders`` (one per text, from the data) when ``loaded``
    carries a rule with ``gender = "given"``; for any other model, or ``genders`` None, nothing changes.

    Texts that reach the model identically (after the cut at ``max_length``) but are given different genders in
    this call get ``UNKNOWN``: the rule leaves their predictions unchanged (counted in the log).
    """
    if genders is None or not reads_given_genders(loaded.model):
        yield
        return
    genders = np.asarray(genders, dtype=np.int64).copy()
    seen: dict[str, set[int]] = {}
    cut = token_texts(loaded.tokenizer, texts, max_length)
    for text, gender in zip(cut, genders, strict=True):
        seen.setdefault(text, set()).add(int(gender))
    clash = np.array([len(seen[t]) > 1 for t in cut], dtype=bool)
    if clash.any():
        log.info("eo: %d of %d inputs reach the model identically with both genders; left unchanged", clash.sum(),
                 len(cut))  # fmt: skip
        genders[clash] = UNKNOWN
    with given_genders(loaded, texts, genders, max_length=max_length):
        yield
