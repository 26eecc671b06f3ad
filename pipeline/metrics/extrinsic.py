"""Extrinsic bias of a classifier: per-class TPR/FPR gaps between genders, GAP_RMS, per-gender accuracy and F1.

De-Arteaga et al. (2019), "Bias in Bios: A Case Study of Semantic Representation Bias in a High-Stakes Setting",
FAT*. For class y and gender g, ``TPR(y, g) = P(pred = y | true = y, gender = g)`` and
``FPR(y, g) = P(pred = y | true != y, gender = g)``. The per-class gap is ``Gap_y = TPR(y, female) - TPR(y, male)``
(positive: the model recognises women of class y better), ``GAP_RMS = sqrt(mean_y Gap_y^2)`` over the classes where
the gap is defined, and their Figure 2 correlates ``Gap_y`` with the share of women in class y of the training
data (Pearson r). A class with no test examples of one gender has an undefined (NaN) gap; it is left out of
GAP_RMS and of the correlation, and the number left out is reported as the row ``gap_rms_excluded_classes``.

All aggregates carry percentile bootstrap intervals over test examples (:func:`~pipeline.bootstrap_ci`);
GAP_RMS carries the BCa interval, because its resamples sit above its value (a root mean square of noisy gaps).

Noise floor (issue #26). With a few test examples per class and gender, ``Gap_y`` is mostly sampling noise and
GAP_RMS, a root mean *square*, is positive even for a model whose predictions do not depend on gender. So GAP_RMS
comes with its *no-gap reference* (:func:`gap_rms_null`): the same statistic after permuting gender within each true
class, which keeps each class's examples and correct predictions and removes any gender effect. Rows:
``gap_rms_nogap`` (median of the permutation null, interval = its 2.5-97.5% range), ``gap_rms_p_value`` (share of the
null at or above the observed value, one-sided), ``gap_rms_corrected`` (``sqrt(max(0, GAP_RMS^2 - E_null[GAP_RMS^2]))``:
the method-of-moments estimate with the permutation estimate of the noise, interval = the same map of the GAP_RMS
interval), ``gap_rms_n_needed`` (the number of test examples at which the no-gap range would end at the corrected
estimate: ``n (upper end / corrected)^2``, since the null shrinks as 1/sqrt(n); NaN when the corrected estimate is
0), and per class ``tpr_gap_nogap`` (value 0, interval = the permutation range of that class's gap).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from pipeline.bootstrap import bootstrap_ci
from pipeline.data.task import FEMALE, MALE
from pipeline.metrics._rows import metric_row, to_frame

__all__ = [
    "accuracy",
    "extrinsic_metrics",
    "gap_rms",
    "gap_rms_null",
    "gap_share_correlation",
    "macro_f1",
    "noise_floor_rows",
    "tpr_gaps",
]

log = logging.getLogger(__name__)


def _check_inputs(y_true, y_pred, genders, n_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y_true, y_pred, genders = (np.asarray(a) for a in (y_true, y_pred, genders))
    if not (y_true.shape == y_pred.shape == genders.shape) or y_true.ndim != 1:
        raise ValueError(
            f"y_true, y_pred and genders must be 1-D and the same length; got shapes {y_true.shape}, "
            f"{y_pred.shape}, {genders.shape}."
        )
    if len(y_true) == 0:
        raise ValueError("no test examples: y_true is empty. Pass the test split's labels and predictions.")
    for name, arr in (("y_true", y_true), ("y_pred", y_pred)):
        if arr.dtype.kind not in "iu" or arr.min() < 0 or arr.max() >= n_classes:
            raise ValueError(f"{name} must hold class ids in 0..{n_classes - 1} (one per label name).")
    if not np.isin(genders, (MALE, FEMALE)).all():
        bad = sorted(set(genders.tolist()) - {MALE, FEMALE})[:5]
        raise ValueError(f"genders must be {MALE} (male) or {FEMALE} (female), got {bad}.")
    return y_true.astype(np.int64), y_pred.astype(np.int64), genders.astype(np.int64)


def _rates(y_true: np.ndarray, y_pred: np.ndarray, genders: np.ndarray, n_classes: int) -> np.ndarray:
    """TPR and FPR per gender and class, shape (2 rates, 2 genders, n_classes); NaN where undefined."""
    out = np.full((2, 2, n_classes), np.nan)
    for g in (MALE, FEMALE):
        sel = genders == g
        t, p = y_true[sel], y_pred[sel]
        pos = np.bincount(t, minlength=n_classes).astype(float)  # (C,) examples of class y
        tp = np.bincount(t[t == p], minlength=n_classes).astype(float)  # (C,) correct predictions of y
        pred = np.bincount(p, minlength=n_classes).astype(float)  # (C,) predictions of y
        neg = len(t) - pos
        with np.errstate(invalid="ignore", divide="ignore"):
            out[0, g] = np.where(pos > 0, tp / pos, np.nan)
            out[1, g] = np.where(neg > 0, (pred - tp) / neg, np.nan)
    return out


def tpr_gaps(y_true: Sequence[int], y_pred: Sequence[int], genders: Sequence[int], n_classes: int) -> pd.DataFrame:
    """Per-class true/false positive rates by gender and the TPR gap.

    Args:
        y_true: True class ids, shape (n,).
        y_pred: Predicted class ids, shape (n,).
        genders: ``MALE`` (0) / ``FEMALE`` (1), shape (n,).
        n_classes: Number of classes.

    Returns:
        One row per class id: ``class, n_female, n_male, tpr_female, tpr_male, fpr_female, fpr_male, gap`` with
        ``gap = tpr_female - tpr_male`` (NaN when the class has no test example of one gender).
    """
    y_true, y_pred, genders = _check_inputs(y_true, y_pred, genders, n_classes)
    rates = _rates(y_true, y_pred, genders, n_classes)
    return pd.DataFrame({
        "class": np.arange(n_classes),
        "n_female": np.bincount(y_true[genders == FEMALE], minlength=n_classes),
        "n_male": np.bincount(y_true[genders == MALE], minlength=n_classes),
        "tpr_female": rates[0, FEMALE], "tpr_male": rates[0, MALE],
        "fpr_female": rates[1, FEMALE], "fpr_male": rates[1, MALE],
        "gap": rates[0, FEMALE] - rates[0, MALE],
    })  # fmt: skip


def gap_rms(gaps: Sequence[float]) -> float:
    """``sqrt(mean_y Gap_y^2)`` over the defined (finite) gaps; NaN if none is defined."""
    gaps = np.asarray(gaps, dtype=float)
    gaps = gaps[np.isfinite(gaps)]
    return float(np.sqrt(np.mean(gaps**2))) if len(gaps) else float("nan")


def gap_rms_null(
    y_true: np.ndarray, y_pred: np.ndarray, genders: np.ndarray, n_classes: int, *, n_perm: int = 1000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """GAP_RMS (n_perm,) and the per-class gaps (n_perm, n_classes) with gender permuted within each true class: the
    statistic of a model with the same per-class accuracy and no gender effect, on the same examples."""
    rng = np.random.default_rng(seed)
    correct = (y_true == y_pred).astype(float)
    gaps = np.full((n_perm, n_classes), np.nan)
    for c in range(n_classes):
        members = np.flatnonzero(y_true == c)
        g = genders[members]
        n_f = int((g == FEMALE).sum())
        if n_f == 0 or n_f == len(g):
            continue
        female = rng.permuted(np.tile(g == FEMALE, (n_perm, 1)), axis=1)  # (n_perm, n_c)
        hits_f = female @ correct[members]
        gaps[:, c] = hits_f / n_f - (correct[members].sum() - hits_f) / (len(g) - n_f)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        rms = np.sqrt(np.nanmean(gaps**2, axis=1))
    return rms, gaps


def noise_floor_rows(y_true, y_pred, genders, label_names, gap_rms_estimate: tuple, *, n_perm: int = 1000,
                     seed: int = 0) -> list[dict]:  # fmt: skip
    """The no-gap reference rows of GAP_RMS and of each class's TPR gap (module docstring)."""
    n_classes = len(label_names)
    null, null_gaps = gap_rms_null(y_true, y_pred, genders, n_classes, n_perm=n_perm, seed=seed)
    value, low, high = gap_rms_estimate
    n = len(y_true)
    lo, mid, hi = np.nanpercentile(null, [2.5, 50, 97.5])
    noise = float(np.nanmean(null**2))

    def corrected(x: float) -> float:
        return float(np.sqrt(max(0.0, x**2 - noise))) if np.isfinite(x) else float("nan")

    est = corrected(value)
    rows = [
        metric_row("gap_rms_nogap", (mid, lo, hi), n),
        metric_row("gap_rms_p_value", (1 + np.sum(null >= value - 1e-12)) / (len(null) + 1), n),
        metric_row("gap_rms_corrected", (est, corrected(low), corrected(high)), n),
        metric_row("gap_rms_n_needed", float(np.ceil(n * (hi / est) ** 2)) if est > 0 else float("nan"), n),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        bounds = np.nanpercentile(null_gaps, [2.5, 97.5], axis=0)
    for c, name in enumerate(label_names):
        rows.append(metric_row("tpr_gap_nogap", (0.0, bounds[0, c], bounds[1, c]), int((y_true == c).sum()),
                               subset=str(name), unit="class"))  # fmt: skip
    return rows


def gap_share_correlation(gaps: Sequence[float], female_share: Sequence[float]) -> float:
    """Pearson r between ``Gap_y`` and the training share of women in class y, over classes where both are defined.

    NaN with fewer than three such classes or when either side is constant (r is then undefined).
    """
    gaps, share = np.asarray(gaps, dtype=float), np.asarray(female_share, dtype=float)
    ok = np.isfinite(gaps) & np.isfinite(share)
    if ok.sum() < 3 or np.ptp(gaps[ok]) == 0 or np.ptp(share[ok]) == 0:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(stats.pearsonr(gaps[ok], share[ok]).statistic)


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Share of correct predictions; NaN on no examples."""
    return float(np.mean(y_true == y_pred)) if len(y_true) else float("nan")


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    """Macro-averaged F1, equal to ``sklearn.metrics.f1_score(y_true, y_pred, average="macro", zero_division=0)``.

    As in scikit-learn, the average runs over the classes present in ``y_true`` or ``y_pred``. Computed from one
    confusion count (no per-call validation) because the bootstrap calls it thousands of times.
    """
    if len(y_true) == 0:
        return float("nan")
    tp = np.bincount(y_true[y_true == y_pred], minlength=n_classes).astype(float)  # (C,)
    support = np.bincount(y_true, minlength=n_classes).astype(float)  # (C,)
    predicted = np.bincount(y_pred, minlength=n_classes).astype(float)  # (C,)
    present = (support + predicted) > 0
    f1 = np.divide(2 * tp, support + predicted, out=np.zeros(n_classes), where=present)
    return float(f1[present].mean())


def extrinsic_metrics(
    y_true: Sequence[int],
    y_pred: Sequence[int],
    genders: Sequence[int],
    label_names: Sequence[str],
    train_female_share: Sequence[float] | None = None,
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """All extrinsic bias metrics of one classifier on one test set, as tidy rows.

    Rows with unit ``class`` (``subset`` = class name): ``tpr_female``, ``tpr_male``, ``fpr_female``, ``fpr_male``,
    ``tpr_gap`` and, with ``train_female_share``, ``train_female_share``. Rows with unit ``model``: ``accuracy`` and
    ``macro_f1`` (subsets ``all``, ``female``, ``male``), ``accuracy_gap`` (female - male), ``gap_rms``,
    ``gap_rms_excluded_classes`` (count of classes with an undefined gap) and ``gap_share_pearson_r`` (``n`` = the
    number of classes correlated).

    Args:
        y_true: True class ids, shape (n,).
        y_pred: Predicted class ids, shape (n,).
        genders: ``MALE`` (0) / ``FEMALE`` (1), shape (n,).
        label_names: Class names, indexed by class id.
        train_female_share: Share of women per class in the training data, shape (n_classes,)
            (``TaskData.female_share()`` of the train split); None skips the correlation.
        n_boot: Bootstrap resamples of the test examples.
        seed: Bootstrap seed.

    Returns:
        Tidy frame (``variant`` empty; :func:`~pipeline.metrics.bias_metrics` fills it).
    """
    n_classes = len(label_names)
    y_true, y_pred, genders = _check_inputs(y_true, y_pred, genders, n_classes)
    share = None
    if train_female_share is not None:
        share = np.asarray(train_female_share, dtype=float)
        if share.shape != (n_classes,):
            raise ValueError(
                f"train_female_share has shape {share.shape}; give one share per class ({n_classes},), e.g. "
                "split['train'].female_share()."
            )
    arrays = (y_true, y_pred, genders)
    boot = {"n_boot": n_boot, "seed": seed}
    per_class = tpr_gaps(y_true, y_pred, genders, n_classes)

    def class_stats(t, p, g):  # (5 * C,): tpr_f, tpr_m, fpr_f, fpr_m, gap
        r = _rates(t, p, g, n_classes)
        return np.concatenate([r[0, FEMALE], r[0, MALE], r[1, FEMALE], r[1, MALE], r[0, FEMALE] - r[0, MALE]])

    value, low, high = bootstrap_ci(class_stats, arrays, **boot)
    rows = []
    for k, metric in enumerate(("tpr_female", "tpr_male", "fpr_female", "fpr_male", "tpr_gap")):
        for c, name in enumerate(label_names):
            j = k * n_classes + c
            n = per_class.loc[c, "n_female"] + per_class.loc[c, "n_male"]
            rows.append(metric_row(metric, (value[j], low[j], high[j]), n, subset=str(name), unit="class"))
    if share is not None:
        rows += [metric_row("train_female_share", share[c], 0, subset=str(name), unit="class")
                 for c, name in enumerate(label_names)]  # fmt: skip

    n_female = int((genders == FEMALE).sum())
    n_male = len(genders) - n_female
    for subset, sel, n in (("all", None, len(y_true)), ("female", FEMALE, n_female), ("male", MALE, n_male)):

        def acc(t, p, g, sel=sel):
            keep = np.ones(len(t), bool) if sel is None else g == sel
            return accuracy(t[keep], p[keep])

        def f1(t, p, g, sel=sel):
            keep = np.ones(len(t), bool) if sel is None else g == sel
            return macro_f1(t[keep], p[keep], n_classes)

        rows.append(metric_row("accuracy", bootstrap_ci(acc, arrays, **boot), n, subset=subset))
        rows.append(metric_row("macro_f1", bootstrap_ci(f1, arrays, **boot), n, subset=subset))

    def acc_gap(t, p, g):
        return accuracy(t[g == FEMALE], p[g == FEMALE]) - accuracy(t[g == MALE], p[g == MALE])

    rows.append(metric_row("accuracy_gap", bootstrap_ci(acc_gap, arrays, **boot), len(y_true)))

    def rms(t, p, g):
        r = _rates(t, p, g, n_classes)
        return gap_rms(r[0, FEMALE] - r[0, MALE])

    estimate = bootstrap_ci(rms, arrays, **boot, method="bca")
    rows.append(metric_row("gap_rms", estimate, len(y_true)))
    rows += noise_floor_rows(y_true, y_pred, genders, label_names, estimate, n_perm=max(n_boot, 200), seed=seed)
    undefined = per_class.loc[~np.isfinite(per_class["gap"]), "class"].tolist()
    present = int(((per_class["n_female"] + per_class["n_male"]) > 0).sum())
    if undefined:
        log.warning(
            "GAP_RMS: %d of %d classes have no test example of one gender and are left out: %s",
            len(undefined),
            n_classes,
            [label_names[c] for c in undefined],
        )
    rows.append(metric_row("gap_rms_excluded_classes", float(len(undefined)), present))
    if share is not None:

        def corr(t, p, g):
            r = _rates(t, p, g, n_classes)
            return gap_share_correlation(r[0, FEMALE] - r[0, MALE], share)

        n_corr = int((np.isfinite(per_class["gap"]) & np.isfinite(share)).sum())
        rows.append(metric_row("gap_share_pearson_r", bootstrap_ci(corr, arrays, **boot), n_corr))
    for row in rows:  # a value undefined on this test set says why, so a NaN without a reason means damage
        if not np.isfinite(row["value"]):
            row["skipped"] = _undefined(row, per_class, label_names)
    return to_frame(rows)


def _undefined(row: dict, per_class: pd.DataFrame, label_names: Sequence[str]) -> str:
    """Why ``row``'s value is undefined on this test set (its ``skipped`` reason)."""
    if row["unit"] == "class" and row["subset"] in map(str, label_names):
        c = list(map(str, label_names)).index(row["subset"])
        counts = f"{per_class.loc[c, 'n_female']} female and {per_class.loc[c, 'n_male']} male test examples"
        return f"undefined on this test set: class {row['subset']} has {counts}"
    return "undefined on this test set (too few classes or examples with a defined gap)"
