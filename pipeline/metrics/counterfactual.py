"""Counterfactual gender gap of a classifier: how the true-class probability moves when gendered words are swapped.

Garg et al. (2019), "Counterfactual Fairness in Text Classification through Robustness", AIES; the swap lists are
those of WinoBias (Zhao et al. 2018), applied by :func:`pipeline.data.counterfactual`. Each test text x of gender g
has a twin x' with the gendered words swapped (he <-> she, Mr <-> Mrs, John <-> Mary).

Sign convention. The raw change is ``p(y | x') - p(y | x)`` (twin minus original). The *gap* is oriented by gender
so that female-original and male-original examples point the same way::

    gap = P(y | female version) - P(y | male version)
        = p(y | x') - p(y | x)   if the original x is male
        = p(y | x) - p(y | x')   if the original x is female

A positive mean gap means the model gives the true class more probability when the text is about a woman. The
functions here are plain torch and differentiable, so :func:`counterfactual_gap` is the scalar "bias score of a
batch" that the attribution methods explain (gates or embeddings -> logits -> gap -> backward).

The signed mean cancels: a model that favours women for "nurse" and men for "engineer" can have a mean gap of 0.
The *skew-oriented gap* (``cf_skew_gap``, docs/FINDINGS.md) does not: each example's gap is multiplied by the
orientation of its class, ``s_y = sign(P(female | y) - P(female))`` in the training data (:func:`skew_orientation`),
so it is positive when the model's true-class probability follows the gender skew the class has in the data it
learned from (the stereotype the data teaches), negative when it runs against it, and 0 in expectation for a model
whose output does not depend on gender. Examples of classes without a skew (``s_y = 0``) have no oriented value.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor

from pipeline.bootstrap import bootstrap_ci
from pipeline.data import FEMALE, MALE, GenderSwapper, TaskData, counterfactual
from pipeline.data.neutral_edits import NeutralEditor
from pipeline.metrics._rows import metric_row, to_frame
from pipeline.metrics.predict import check_classifier, classifier_logits
from pipeline.models import LoadedModel
from pipeline.stats import sign_flip_test

__all__ = [
    "SKEW_METRIC",
    "counterfactual_examples",
    "counterfactual_gap",
    "counterfactual_metrics",
    "counterfactual_rows",
    "counterfactual_summary",
    "skew_orientation",
    "true_class_prob_change",
]

SKEW_METRIC = "cf_skew_gap"  # the per-example gap oriented by the class's gender skew in the training data

log = logging.getLogger(__name__)


def _check_logits(logits: Tensor, logits_cf: Tensor, labels: Tensor, genders: Tensor | None) -> None:
    if logits.ndim != 2 or logits.shape != logits_cf.shape:
        raise ValueError(
            f"logits and logits_cf must both be (batch, n_classes); got {tuple(logits.shape)} and "
            f"{tuple(logits_cf.shape)}. Pass the original and the swapped batch in the same order."
        )
    if labels.shape != (logits.shape[0],) or labels.dtype not in (torch.int64, torch.int32):
        raise ValueError(
            f"labels must be an int tensor of shape ({logits.shape[0]},); got {tuple(labels.shape)} {labels.dtype}."
        )
    if genders is not None and genders.shape != labels.shape:
        raise ValueError(
            f"genders must have shape {tuple(labels.shape)} (gender of each original text); got {tuple(genders.shape)}."
        )


def true_class_prob_change(
    logits: Float[Tensor, "batch n_classes"],
    logits_cf: Float[Tensor, "batch n_classes"],
    labels: Int[Tensor, " batch"],
    genders: Int[Tensor, " batch"] | None = None,
) -> Float[Tensor, " batch"]:
    """Per-example change in the true-class probability between a text and its gender-swapped twin.

    Without ``genders``: ``softmax(logits_cf)[y] - softmax(logits)[y]`` (twin minus original). With ``genders``
    (the gender of each *original* text, ``MALE`` = 0 / ``FEMALE`` = 1) the change is oriented to
    ``P(y | female version) - P(y | male version)``: kept for male originals, negated for female ones.
    Differentiable in both logits.

    Args:
        logits: Classifier logits of the original texts, shape (batch, n_classes).
        logits_cf: Logits of their swapped twins, same order and shape.
        labels: True class ids, shape (batch,).
        genders: Optional gender of each original text, shape (batch,).

    Returns:
        Shape (batch,).
    """
    _check_logits(logits, logits_cf, labels, genders)
    labels = labels.long().unsqueeze(1)  # (batch, 1)
    p = logits.softmax(-1).gather(1, labels).squeeze(1)  # (batch,)
    p_cf = logits_cf.softmax(-1).gather(1, labels).squeeze(1)  # (batch,)
    change = p_cf - p
    if genders is None:
        return change
    sign = torch.where(genders.to(change.device) == MALE, 1.0, -1.0).to(change.dtype)  # (batch,)
    return sign * change


def skew_orientation(data: TaskData) -> np.ndarray:
    """Orientation of each class, ``sign(P(female | y) - P(female))`` in ``data`` (the training data), float
    (n_classes,): +1 for classes with more women than the data as a whole, -1 for fewer, 0 for none or no rows."""
    share = data.female_share()
    overall = float(np.mean(data.genders != MALE)) if len(data) else np.nan
    return np.nan_to_num(np.sign(share - overall), nan=0.0)


def counterfactual_gap(
    logits: Float[Tensor, "batch n_classes"],
    logits_cf: Float[Tensor, "batch n_classes"],
    labels: Int[Tensor, " batch"],
    genders: Int[Tensor, " batch"] | None = None,
) -> Float[Tensor, ""]:
    """Mean of :func:`true_class_prob_change` over the batch: the differentiable bias score of a batch.

    Pass ``genders`` for the oriented gap ``mean P(y | female version) - P(y | male version)``.
    """
    return true_class_prob_change(logits, logits_cf, labels, genders).mean()


def counterfactual_examples(
    loaded: LoadedModel,
    data: TaskData,
    *,
    batch_size: int = 32,
    max_length: int = 128,
    swapper: GenderSwapper | None = None,
    logits: Tensor | None = None,
    orientation: np.ndarray | None = None,
    control: NeutralEditor | None = None,
) -> pd.DataFrame:
    """Per-example counterfactual values of a classifier on ``data`` (:func:`counterfactual_rows` with the
    classifier's logits).

    Args:
        loaded: A model loaded with ``head="classifier"``.
        data: Test texts, labels and genders.
        batch_size: Texts per forward pass.
        max_length: Token limit per text.
        swapper: Gender swapper; default :meth:`GenderSwapper.from_winobias`.
        logits: Precomputed logits of ``data.texts`` (n, n_classes), to avoid a second pass.
        orientation: :func:`skew_orientation` of the training data, (n_classes,); None leaves ``cf_skew_gap`` out.
        control: The gender-neutral edit of the flip-rate control; default :meth:`NeutralEditor.default`.
    """
    check_classifier(loaded, "counterfactual_examples")
    if logits is not None and logits.shape[0] != len(data):
        raise ValueError(f"logits has {logits.shape[0]} rows but data has {len(data)} texts; pass the logits of "
                         "data.texts.")  # fmt: skip

    def predict(texts: list[str], genders: np.ndarray) -> Tensor:
        return classifier_logits(loaded, texts, batch_size=batch_size, max_length=max_length, genders=genders)

    return counterfactual_rows(predict, data, swapper=swapper, logits=logits, orientation=orientation,
                               control=control)  # fmt: skip


def _gap_rows(subset: str, idx, logits, logits_cf, data: TaskData, orientation) -> list[pd.DataFrame]:
    """``cf_prob_gap``, ``cf_flip_rate`` (and ``cf_skew_gap``) rows of the texts ``idx`` and their twins."""
    labels, genders = data.labels[idx], data.genders[idx]
    with torch.no_grad():
        gap = true_class_prob_change(logits, logits_cf, torch.as_tensor(labels), torch.as_tensor(genders))
    gap = gap.double().numpy()
    flips = (logits.argmax(-1) != logits_cf.argmax(-1)).double().numpy()
    common = {"unit": "model", "n": 1, "example": idx, "label": labels, "gender": genders, "subset": subset}
    frames = [pd.DataFrame({**common, "metric": m, "value": v}) for m, v in (("cf_prob_gap", gap),
                                                                             ("cf_flip_rate", flips))]  # fmt: skip
    if orientation is not None:
        sign = np.asarray(orientation, dtype=float)[labels]
        keep = sign != 0
        some = {k: (v[keep] if isinstance(v, np.ndarray) else v) for k, v in common.items()}
        frames.append(pd.DataFrame({**some, "metric": SKEW_METRIC, "value": sign[keep] * gap[keep]}))
    return frames


def counterfactual_rows(
    predict: Callable[[list[str], np.ndarray], Tensor],
    data: TaskData,
    *,
    swapper: GenderSwapper | None = None,
    logits: Tensor | None = None,
    orientation: np.ndarray | None = None,
    control: NeutralEditor | None = None,
) -> pd.DataFrame:
    """Per-example counterfactual values of a classifier given as ``predict`` (texts, their genders -> logits
    (n, n_classes)). The genders are those of the data for the texts and their neutral control edits and the
    flipped ones for their gender-swapped twins; only an equal-opportunity variant that reads given genders uses
    them (:func:`pipeline.eo_hooks.data_genders`).

    One row per text the swapper changes and per metric, column ``subset`` naming the swap lists:

    - ``all`` (every pair of the lists): ``cf_prob_gap`` (the oriented gap of the module docstring),
      ``cf_flip_rate`` (1 when the predicted class of the text and of its twin differ) and, with ``orientation``,
      ``cf_skew_gap`` (``orientation[y] * gap``, texts whose class has a skew);
    - ``heldout`` (only the words of the held-out part, :meth:`GenderSwapper.part`; texts without such a word have
      no row): the same three metrics, on edits that CDA never trains on;
    - ``all``, flip-rate control (texts with a gendered word and a word of the control list): ``cf_control_flip``
      (1 when the gender-neutral edit of :class:`~pipeline.data.neutral_edits.NeutralEditor` flips the prediction)
      and ``cf_flip_excess`` (gender flip minus control flip, -1/0/1).

    Extra columns ``example`` (index in ``data``), ``label`` and ``gender`` (of the original text), ``n_texts``.
    Stored per example, two models scored on the same texts are compared with a paired bootstrap
    (:mod:`pipeline.findings.comparisons`).
    """
    if orientation is not None and np.shape(orientation) != (len(data.label_names),):
        raise ValueError(
            f"orientation has shape {np.shape(orientation)}; give one value per class ({len(data.label_names)},), "
            "from skew_orientation(training data)."
        )
    swapper = swapper or GenderSwapper.from_winobias()
    control = control or NeutralEditor.default()
    twins = counterfactual(data, swapper)
    changed = np.array([a != b for a, b in zip(data.texts, twins.texts)], dtype=bool)
    if (~changed).any():
        log.info("counterfactual: %d of %d texts have no gendered word to swap; left out", (~changed).sum(), len(data))
    idx = np.flatnonzero(changed)
    columns = ["unit", "metric", "value", "n", "example", "label", "gender", "subset"]
    if not changed.any():
        log.warning("counterfactual: no text of %r has a gendered word to swap; the gap is undefined", data.name)
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns}).assign(n_texts=len(data))
    own = np.asarray(data.genders)
    flipped = np.where(own == MALE, FEMALE, MALE)  # a twin has the other gender
    base = predict([data.texts[i] for i in idx], own[idx]) if logits is None else logits[torch.as_tensor(idx)]
    frames = _gap_rows("all", idx, base, predict([twins.texts[i] for i in idx], flipped[idx]), data, orientation)
    held = swapper.part("heldout") if swapper.heldout else None
    if held is not None:
        held_texts = [held.swap(data.texts[i]) for i in idx]
        pick = np.flatnonzero([h != data.texts[i] for h, i in zip(held_texts, idx)])
        if len(pick):
            held_logits = predict([held_texts[k] for k in pick], flipped[idx[pick]])
            frames += _gap_rows("heldout", idx[pick], base[torch.as_tensor(pick)], held_logits, data, orientation)
    edited = [control.edit(data.texts[i]) for i in idx]
    pick = np.flatnonzero([e != data.texts[i] for e, i in zip(edited, idx)])
    if len(pick):
        sub = base[torch.as_tensor(pick)]
        control_flip = (
            (sub.argmax(-1) != predict([edited[k] for k in pick], own[idx[pick]]).argmax(-1)).double().numpy()
        )
        gender_flip = frames[1]["value"].to_numpy()[pick]
        common = {"unit": "model", "n": 1, "example": idx[pick], "label": data.labels[idx[pick]],
                  "gender": data.genders[idx[pick]], "subset": "all"}  # fmt: skip
        frames += [pd.DataFrame({**common, "metric": "cf_control_flip", "value": control_flip}),
                   pd.DataFrame({**common, "metric": "cf_flip_excess", "value": gender_flip - control_flip})]  # fmt: skip
    return pd.concat(frames, ignore_index=True).assign(n_texts=len(data))


def _subset_of(examples: pd.DataFrame) -> pd.Series:
    """The swap-list subset of each row (tables written before held-out rows existed: ``all``)."""
    if "subset" not in examples:
        return pd.Series("all", index=examples.index)
    return examples["subset"].fillna("").replace("", "all")


def counterfactual_summary(examples: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """The metrics of :func:`counterfactual_metrics` from the rows of :func:`counterfactual_examples`."""
    n_texts = int(examples["n_texts"].iloc[0]) if len(examples) else 0
    rows = [metric_row("cf_unchanged_texts", float(n_texts - examples["example"].nunique()), n_texts)]
    if examples.empty:
        rows += [metric_row(m, np.nan, 0, subset="all") for m in ("cf_prob_gap", "cf_prob_abs_change", "cf_flip_rate")]
        return to_frame(rows)
    part = _subset_of(examples)

    def values(metric: str, subset: str = "all") -> pd.DataFrame:
        return examples[(examples["metric"] == metric) & (part == subset)].sort_values("example")

    def mean_row(metric: str, v: np.ndarray, subset: str) -> dict:
        if not len(v):
            return metric_row(metric, np.nan, 0, subset=subset)
        return metric_row(metric, bootstrap_ci(np.mean, v, n_boot=n_boot, seed=seed), len(v), subset=subset)

    for swap in ("all", "heldout"):
        gap, flips, skew = values("cf_prob_gap", swap), values("cf_flip_rate", swap), values(SKEW_METRIC, swap)
        if gap.empty:
            continue
        genders = gap["gender"].to_numpy()
        v = gap["value"].to_numpy(dtype=np.float64)
        per_example = {"cf_prob_gap": v, "cf_prob_abs_change": np.abs(v),
                       "cf_flip_rate": flips["value"].to_numpy(dtype=np.float64)}  # fmt: skip
        keeps = (("all", np.ones(len(gap), bool)), ("female", genders != MALE), ("male", genders == MALE))
        for subset, keep in keeps if swap == "all" else (("heldout", np.ones(len(gap), bool)),):
            if subset in ("all", "heldout") and len(skew):
                rows.append(mean_row(SKEW_METRIC, skew["value"].to_numpy(dtype=np.float64), subset))
            rows += [mean_row(metric, x[keep], subset) for metric, x in per_example.items()]
    control, excess = values("cf_control_flip"), values("cf_flip_excess")
    if len(control):
        rows.append(mean_row("cf_control_flip_rate", control["value"].to_numpy(dtype=np.float64), "all"))
        e = excess["value"].to_numpy(dtype=np.float64)
        rows.append(mean_row("cf_flip_excess", e, "all"))
        rows.append(metric_row("cf_flip_excess_p_value", sign_flip_test(e, seed=seed), len(e), subset="all"))
    return to_frame(rows)


def counterfactual_metrics(
    loaded: LoadedModel,
    data: TaskData,
    *,
    batch_size: int = 32,
    n_boot: int = 1000,
    seed: int = 0,
    max_length: int = 128,
    swapper: GenderSwapper | None = None,
    logits: Tensor | None = None,
    orientation: np.ndarray | None = None,
    control: NeutralEditor | None = None,
) -> pd.DataFrame:
    """Counterfactual gap, mean absolute change and prediction flip rate of a classifier on ``data``.

    Texts that the swapper leaves unchanged (no gendered word) carry no counterfactual signal: they are left out
    and counted in the row ``cf_unchanged_texts`` (``n`` = all texts). The other metrics are computed on the
    changed texts, for subset ``all`` and by the original text's gender (``female``, ``male``):

    - ``cf_prob_gap``: mean oriented gap ``P(y | female version) - P(y | male version)``;
    - ``cf_prob_abs_change``: mean ``|p(y | x') - p(y | x)|``;
    - ``cf_flip_rate``: share of pairs whose predicted class differs;
    - ``cf_skew_gap`` (with ``orientation``, subset ``all``): mean skew-oriented gap over the texts whose class has a
      skew in the training data (module docstring);
    - subset ``heldout``: ``cf_prob_gap``, ``cf_prob_abs_change``, ``cf_flip_rate`` and ``cf_skew_gap`` with only the
      held-out swap words changed (:mod:`pipeline.data.swap_split`): what a remedy trained on swaps did not see;
    - the flip-rate control (subset ``all``, texts with a gendered word and a control word): ``cf_control_flip_rate``
      (flips under a gender-neutral synonym edit), ``cf_flip_excess`` (gender flip rate minus it, same texts) and
      ``cf_flip_excess_p_value`` (sign-flip test of the per-text excess).

    Args:
        loaded: A model loaded with ``head="classifier"``.
        data: Test texts, labels and genders.
        batch_size: Texts per forward pass.
        n_boot: Bootstrap resamples of the text pairs.
        seed: Bootstrap seed.
        max_length: Token limit per text.
        swapper: Gender swapper; default :meth:`GenderSwapper.from_winobias`.
        logits: Precomputed logits of ``data.texts`` (n, n_classes), to avoid a second pass.
        orientation: :func:`skew_orientation` of the training data; None leaves ``cf_skew_gap`` out.
        control: The gender-neutral edit of the flip-rate control; default :meth:`NeutralEditor.default`.
    """
    examples = counterfactual_examples(
        loaded,
        data,
        batch_size=batch_size,
        max_length=max_length,
        swapper=swapper,
        logits=logits,
        orientation=orientation,
        control=control,
    )
    return counterfactual_summary(examples, n_boot=n_boot, seed=seed)
