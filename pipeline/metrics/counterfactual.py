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
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor

from pipeline.data import MALE, GenderSwapper, TaskData, counterfactual
from pipeline.metrics._rows import metric_row, to_frame
from pipeline.metrics.bootstrap import bootstrap_ci
from pipeline.metrics.predict import check_classifier, classifier_logits
from pipeline.models import LoadedModel

__all__ = [
    "counterfactual_examples",
    "counterfactual_gap",
    "counterfactual_metrics",
    "counterfactual_summary",
    "true_class_prob_change",
]

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
) -> pd.DataFrame:
    """Per-example counterfactual values of a classifier on ``data``: one row per text that the swapper changes and
    per metric (``cf_prob_gap``: the oriented gap of the module docstring; ``cf_flip_rate``: 1 when the predicted
    class of the text and of its twin differ), with extra columns ``example`` (index in ``data``), ``label`` and
    ``gender`` (of the original text). Texts without a gendered word carry no counterfactual signal and have no rows.

    These are the values :func:`counterfactual_metrics` averages; stored per example, two models scored on the
    same texts can be compared with a paired bootstrap (:mod:`pipeline.runs.findings_variants`).

    Args:
        loaded: A model loaded with ``head="classifier"``.
        data: Test texts, labels and genders.
        batch_size: Texts per forward pass.
        max_length: Token limit per text.
        swapper: Gender swapper; default :meth:`GenderSwapper.from_winobias`.
        logits: Precomputed logits of ``data.texts`` (n, n_classes), to avoid a second pass.
    """
    check_classifier(loaded, "counterfactual_examples")
    twins = counterfactual(data, swapper)
    changed = np.array([a != b for a, b in zip(data.texts, twins.texts)], dtype=bool)
    if (~changed).any():
        log.info("counterfactual: %d of %d texts have no gendered word to swap; left out", (~changed).sum(), len(data))
    idx = np.flatnonzero(changed)
    columns = ["unit", "metric", "value", "n", "example", "label", "gender"]
    if not changed.any():
        log.warning("counterfactual: no text of %r has a gendered word to swap; the gap is undefined", data.name)
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns}).assign(n_texts=len(data))
    if logits is None:
        logits = classifier_logits(loaded, [data.texts[i] for i in idx], batch_size=batch_size, max_length=max_length)
    else:
        if logits.shape[0] != len(data):
            raise ValueError(
                f"logits has {logits.shape[0]} rows but data has {len(data)} texts; pass the logits of data.texts."
            )
        logits = logits[torch.as_tensor(idx)]
    logits_cf = classifier_logits(loaded, [twins.texts[i] for i in idx], batch_size=batch_size, max_length=max_length)
    labels = data.labels[idx]
    genders = data.genders[idx]
    with torch.no_grad():
        gap = true_class_prob_change(logits, logits_cf, torch.as_tensor(labels), torch.as_tensor(genders))
    flips = (logits.argmax(-1) != logits_cf.argmax(-1)).double().numpy()
    common = {"unit": "model", "n": 1, "example": idx, "label": labels, "gender": genders}
    frames = [
        pd.DataFrame({**common, "metric": metric, "value": values})
        for metric, values in (("cf_prob_gap", gap.double().numpy()), ("cf_flip_rate", flips))
    ]
    return pd.concat(frames, ignore_index=True).assign(n_texts=len(data))


def counterfactual_summary(examples: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """The metrics of :func:`counterfactual_metrics` from the rows of :func:`counterfactual_examples`."""
    n_texts = int(examples["n_texts"].iloc[0]) if len(examples) else 0
    rows = [metric_row("cf_unchanged_texts", float(n_texts - examples["example"].nunique()), n_texts)]
    if examples.empty:
        rows += [metric_row(m, np.nan, 0, subset="all") for m in ("cf_prob_gap", "cf_prob_abs_change", "cf_flip_rate")]
        return to_frame(rows)
    gap = examples[examples["metric"] == "cf_prob_gap"].sort_values("example")
    flips = examples[examples["metric"] == "cf_flip_rate"].sort_values("example")
    genders = gap["gender"].to_numpy()
    values = gap["value"].to_numpy(dtype=np.float64)
    per_example = {"cf_prob_gap": values, "cf_prob_abs_change": np.abs(values),
                   "cf_flip_rate": flips["value"].to_numpy(dtype=np.float64)}  # fmt: skip
    for subset, keep in (("all", np.ones(len(gap), bool)), ("female", genders != MALE), ("male", genders == MALE)):
        for metric, v in per_example.items():
            if not keep.any():
                rows.append(metric_row(metric, np.nan, 0, subset=subset))
                continue
            estimate = bootstrap_ci(np.mean, v[keep], n_boot=n_boot, seed=seed)
            rows.append(metric_row(metric, estimate, int(keep.sum()), subset=subset))
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
) -> pd.DataFrame:
    """Counterfactual gap, mean absolute change and prediction flip rate of a classifier on ``data``.

    Texts that the swapper leaves unchanged (no gendered word) carry no counterfactual signal: they are left out
    and counted in the row ``cf_unchanged_texts`` (``n`` = all texts). The other metrics are computed on the
    changed texts, for subset ``all`` and by the original text's gender (``female``, ``male``):

    - ``cf_prob_gap``: mean oriented gap ``P(y | female version) - P(y | male version)``;
    - ``cf_prob_abs_change``: mean ``|p(y | x') - p(y | x)|``;
    - ``cf_flip_rate``: share of pairs whose predicted class differs.

    Args:
        loaded: A model loaded with ``head="classifier"``.
        data: Test texts, labels and genders.
        batch_size: Texts per forward pass.
        n_boot: Bootstrap resamples of the text pairs.
        seed: Bootstrap seed.
        max_length: Token limit per text.
        swapper: Gender swapper; default :meth:`GenderSwapper.from_winobias`.
        logits: Precomputed logits of ``data.texts`` (n, n_classes), to avoid a second pass.
    """
    examples = counterfactual_examples(
        loaded, data, batch_size=batch_size, max_length=max_length, swapper=swapper, logits=logits
    )
    return counterfactual_summary(examples, n_boot=n_boot, seed=seed)
