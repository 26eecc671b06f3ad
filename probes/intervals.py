"""Intervals of cross-validated probe metrics that stay inside the metrics' range.

A probe's score is the mean over the ``k`` outer folds of the fold's metric (accuracy, balanced accuracy, macro
one-vs-rest AUC). Its interval is a **percentile bootstrap over test examples, stratified by fold** (Efron &
Tibshirani 1993, ch. 13): a resample draws, within each fold's test rows, as many rows with replacement
(multinomial counts), recomputes each fold's metric on the weighted rows with that fold's fitted probe, and
averages over folds; the interval is the 2.5 and 97.5 percentiles over resamples.

Why not the t interval over fold means (``mean +- t_{k-1} sd / sqrt(k)``) used before: with few folds it is wide
and unbounded (``0.875 [-0.713, 2.463]`` with 2 folds), since it rests on ``k - 1`` degrees of freedom. Why not a
Wilson score interval on the pooled predictions: it covers accuracy only. The bootstrap uses all ``n`` test
predictions, covers every metric with one scheme, stays in [0, 1] (every resample's metric does), and gives paired
intervals for differences on the same resamples (selectivity = probe - control accuracy stays in [-1, 1]). It
measures how the score varies with the test sample for the fitted probes, not the variation from refitting them.
One set of resamples serves every layer and head of a table, so their intervals are comparable.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

__all__ = ["N_BOOT", "fold_metrics", "resample_weights", "summarise"]

N_BOOT = 1000  # resamples behind each interval
_METRICS = ("probe_accuracy", "probe_balanced_accuracy", "probe_auc")


def resample_weights(folds: Sequence[tuple[np.ndarray, np.ndarray]], *, n_boot: int = N_BOOT,
                     seed: int = 0) -> list[np.ndarray]:
    """Per fold, the counts of each test row in each resample, shape (1 + n_boot, n_test); row 0 is all ones
    (the data as they are), rows 1.. are multinomial draws of ``n_test`` rows with replacement."""
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 0:
        raise ValueError(f"n_boot={n_boot!r}: give a non-negative integer (1000 is usual; 0 skips the intervals).")
    rng = np.random.default_rng(seed)
    out = []
    for _, test in folds:
        m = len(test)
        draws = rng.multinomial(m, np.full(m, 1.0 / m), size=n_boot).astype(np.float64)  # (n_boot, m)
        out.append(np.vstack([np.ones((1, m)), draws]))  # (1 + n_boot, m)
    return out


def _nanmean(values: np.ndarray) -> np.ndarray:
    """Mean over axis 0 ignoring NaN; NaN (without a warning) where a column is all NaN."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(values, axis=0)


def _weighted_auc(positive: np.ndarray, score: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUC (ties count one half) under row weights ``w`` (B, m): one AUC per row of ``w``."""
    order = np.argsort(score, kind="stable")
    s, pos = score[order], positive[order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])  # first row of each run of equal scores
    ws = w[:, order]  # (B, m)
    w_pos = np.add.reduceat(ws * pos, starts, axis=1)  # (B, U): positive weight per distinct score
    w_neg = np.add.reduceat(ws * ~pos, starts, axis=1)  # (B, U)
    below = np.cumsum(w_neg, axis=1) - w_neg  # negative weight strictly below each score
    total = w_pos.sum(1) * w_neg.sum(1)  # (B,)
    wins = (w_pos * (below + 0.5 * w_neg)).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, wins / total, np.nan)


def fold_metrics(y: np.ndarray, proba: np.ndarray, classes: np.ndarray, w: np.ndarray,
                 metrics: Sequence[str] = _METRICS) -> dict[str, np.ndarray]:
    """The metrics of one fold's test rows under each weighting, each of shape (B,).

    Args:
        y: true labels of the test rows, shape (m,).
        proba: the fold probe's class probabilities, shape (m, n_classes), columns in ``classes`` order.
        classes: the probe's classes, shape (n_classes,).
        w: row weights, shape (B, m) (see :func:`resample_weights`).
        metrics: which of ``probe_accuracy``, ``probe_balanced_accuracy``, ``probe_auc``.

    With ``w`` all ones these equal :func:`probes.linear.fold_scores`. Balanced accuracy averages the recall of
    the classes that have weight in the resample; the AUC averages one-vs-rest AUCs over classes with positives
    and negatives among the test rows, leaving out a class whose resample draws no positive or no negative.
    """
    correct = (classes[proba.argmax(1)] == y).astype(np.float64)  # (m,)
    out: dict[str, np.ndarray] = {}
    if "probe_accuracy" in metrics:
        out["probe_accuracy"] = w @ correct / w.sum(1)
    if "probe_balanced_accuracy" in metrics:
        recalls = []
        for c in np.unique(y):
            rows = y == c
            with np.errstate(invalid="ignore", divide="ignore"):
                recalls.append(w[:, rows] @ correct[rows] / w[:, rows].sum(1))
        out["probe_balanced_accuracy"] = _nanmean(np.stack(recalls))
    if "probe_auc" in metrics:
        usable = [j for j, c in enumerate(classes) if 0 < (y == c).sum() < len(y)]
        if len(classes) == 2 and len(usable) == 2:
            usable = usable[1:]  # for two classes both one-vs-rest AUCs are the same number
        aucs = [_weighted_auc(y == classes[j], proba[:, j], w) for j in usable]  # n_usable x (B,)
        out["probe_auc"] = _nanmean(np.stack(aucs)) if aucs else np.full(len(w), np.nan)
    return out


def summarise(per_fold: Sequence[np.ndarray], level: float = 0.95) -> tuple[float, float, float]:
    """(value, ci_low, ci_high) from per-fold metrics under the weightings of :func:`resample_weights`.

    ``value`` is the mean over folds of row 0 (the data as they are); the interval is the percentile interval
    of the fold mean over rows 1.. (NaN without resamples).
    """
    stacked = np.stack(per_fold)  # (k, 1 + n_boot)
    value = float(stacked[:, 0].mean())
    if stacked.shape[1] < 2:
        return value, np.nan, np.nan
    means = _nanmean(stacked[:, 1:])  # (n_boot,)
    if np.isnan(means).all():
        return value, np.nan, np.nan
    tail = (1 - level) / 2 * 100
    low, high = np.nanpercentile(means, [tail, 100 - tail])
    return value, float(low), float(high)
