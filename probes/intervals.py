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

__all__ = ["N_BOOT", "fold_metrics", "resample_weights", "summarise", "summarised_row"]

N_BOOT = 1000  # resamples behind each interval
_METRICS = ("probe_accuracy", "probe_balanced_accuracy", "probe_auc")


def resample_weights(
    folds: Sequence[tuple[np.ndarray, np.ndarray]], *, n_boot: int = N_BOOT, seed: int = 0
) -> list[np.ndarray]:
    """Per fold, how often each test row is drawn in each weighting, shape (n_test, 1 + n_boot): column 0 is all
    ones (the data as they are), columns 1.. are multinomial draws of ``n_test`` rows with replacement."""
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 0:
        raise ValueError(f"n_boot={n_boot!r}: give a non-negative integer (1000 is usual; 0 skips the intervals).")
    rng = np.random.default_rng(seed)
    out = []
    for _, test in folds:
        m = len(test)
        draws = rng.multinomial(m, np.full(m, 1.0 / m), size=n_boot).T  # (m, n_boot)
        # float32 is exact here: the counts, their sums and halves stay far below 2**24; it halves the memory traffic
        out.append(np.ascontiguousarray(np.hstack([np.ones((m, 1)), draws]), dtype=np.float32))  # (m, 1 + n_boot)
    return out


def _nanmean(values: np.ndarray) -> np.ndarray:
    """Mean over axis 0 ignoring NaN; NaN (without a warning) where a column is all NaN."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(values, axis=0)


def _weighted_auc(positive: np.ndarray, score: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUC (ties count one half) under row weights ``w`` (m, B): one AUC per column of ``w``.

    Rows sorted by score; a positive row wins against the negative weight strictly below its score and half of
    the negative weight at its score: ``AUC = sum_pos w_i (N_<(s_i) + N_=(s_i) / 2) / (W_pos W_neg)``.
    """
    order = np.argsort(score, kind="stable")
    s, pos = score[order], positive[order]
    ws = w[order]  # (m, B)
    neg = np.where(pos[:, None], ws.dtype.type(0), ws)  # (m, B): negative weight per row
    below = np.cumsum(neg, axis=0) - neg  # (m, B): negative weight of the rows sorted before this one
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])  # first row of each run of equal scores
    if len(starts) < len(s):  # ties: count all of a run's negatives as tied, none as below
        run = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(s)]))  # (m,): run of each row
        tied = np.add.reduceat(neg, starts, axis=0)[run]  # (m, B)
        below = below[starts][run]  # negatives below the run's first row
    else:
        tied = neg
    wins = (ws[pos] * (below[pos] + 0.5 * tied[pos])).sum(0)  # (B,)
    total = ws[pos].sum(0) * neg.sum(0)  # (B,)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, wins.astype(np.float64) / total, np.nan)


def fold_metrics(
    y: np.ndarray, proba: np.ndarray, classes: np.ndarray, w: np.ndarray, metrics: Sequence[str] = _METRICS
) -> dict[str, np.ndarray]:
    """The metrics of one fold's test rows under each weighting, each of shape (B,).

    Args:
        y: true labels of the test rows, shape (m,).
        proba: the fold probe's class probabilities, shape (m, n_classes), columns in ``classes`` order.
        classes: the probe's classes, shape (n_classes,).
        w: row weights, shape (m, B) (see :func:`resample_weights`).
        metrics: which of ``probe_accuracy``, ``probe_balanced_accuracy``, ``probe_auc``.

    With ``w`` all ones these equal :func:`probes.linear.fold_scores`. Balanced accuracy averages the recall of
    the classes that have weight in the resample; the AUC averages one-vs-rest AUCs over classes with positives
    and negatives among the test rows, leaving out a class whose resample draws no positive or no negative.
    """
    correct = (classes[proba.argmax(1)] == y).astype(w.dtype)  # (m,)
    out: dict[str, np.ndarray] = {}
    if "probe_accuracy" in metrics:
        out["probe_accuracy"] = (correct @ w).astype(np.float64) / w.sum(0)  # exact: integer sums
    if "probe_balanced_accuracy" in metrics:
        recalls = []
        for c in np.unique(y):
            rows = y == c
            with np.errstate(invalid="ignore", divide="ignore"):
                recalls.append((correct[rows] @ w[rows]).astype(np.float64) / w[rows].sum(0))
        out["probe_balanced_accuracy"] = _nanmean(np.stack(recalls))
    if "probe_auc" in metrics:
        usable = [j for j, c in enumerate(classes) if 0 < (y == c).sum() < len(y)]
        if len(classes) == 2 and len(usable) == 2:
            usable = usable[1:]  # for two classes both one-vs-rest AUCs are the same number
        aucs = [_weighted_auc(y == classes[j], proba[:, j], w) for j in usable]  # n_usable x (B,)
        out["probe_auc"] = _nanmean(np.stack(aucs)) if aucs else np.full(w.shape[1], np.nan)
    return out


def summarise(per_fold: Sequence[np.ndarray], level: float = 0.95) -> tuple[float, float, float]:
    """(value, ci_low, ci_high) from per-fold metrics under the weightings of :func:`resample_weights`.

    ``per_fold`` holds one array (1 + n_boot,) per fold. ``value`` is the mean over folds of entry 0 (the data as
    they are); the interval is the percentile interval of the fold mean over entries 1.. (NaN without resamples).
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


def summarised_row(keys: dict, metric: str, target: str, per_fold: Sequence[np.ndarray], n: int, chance: float) -> dict:
    """One tidy row: ``keys`` (unit, layer, pooling...), the metric's :func:`summarise` of ``per_fold`` with its
    interval, the probed ``target`` as ``subset``, the ``n`` examples and the metric's ``chance`` level."""
    value, low, high = summarise(per_fold)
    return {
        **keys,
        "metric": metric,
        "subset": target,
        "value": value,
        "ci_low": low,
        "ci_high": high,
        "n": n,
        "chance": chance,
    }
