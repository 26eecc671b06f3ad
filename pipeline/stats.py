"""Tests that decide: sign-flip p-values of mean effects, Benjamini-Hochberg q-values, paired bootstrap comparisons.

Every attribution table holds means over examples; these functions turn the per-example values behind a mean into a
p-value, a family of p-values into q-values, and two models evaluated on the same examples into a paired difference.

- :func:`sign_flip_test` (Fisher 1935; Good 2005, "Permutation, Parametric and Bootstrap Tests of Hypotheses",
  ch. 3): under H0 the per-example values ``x_i`` of a unit are symmetric about 0, so every sign pattern
  ``(e_1 x_1, ..., e_n x_n)`` with ``e_i = +-1`` is as likely as the observed one, and the p-value of the mean is
  the share of sign patterns whose ``|sum_i e_i x_i|`` reaches the observed ``|sum_i x_i|``. Why this and not the
  bootstrap: it is exact in finite samples under the symmetric null (the bootstrap is only asymptotic), needs no
  normality, and stays valid for the many exact zeros and the discrete values (accuracy changes of -1/0/+1) that
  ablation produces; for a null that is mean-zero but skewed it is asymptotically equivalent to the t-test. With
  ``2^n <= n_perm + 1`` all sign patterns are enumerated (exact p); otherwise ``n_perm`` random patterns give the
  Monte Carlo p ``(1 + b) / (n_perm + 1)`` (Phipson & Smyth 2010), whose floor ``1 / (n_perm + 1)`` would stop a
  unit among thousands (FFN neurons) from ever passing a multiple-testing correction. Hoeffding's inequality
  bounds the same tail exactly, ``P(|sum e_i x_i| >= t) <= 2 exp(-t^2 / (2 sum x_i^2))``, so when no random
  pattern reaches the observed sum (``b = 0``) the p-value is ``min(p_MC, p_Hoeffding)``, else ``p_MC``. This stays
  valid: for a level ``alpha >= 1 / (n_perm + 1)``, ``p <= alpha`` exactly when ``p_MC <= alpha``; below it,
  ``p <= alpha`` needs ``p_Hoeffding <= alpha``; each has probability at most ``alpha`` under H0.
- :func:`bh_qvalues`: Benjamini & Hochberg (1995) adjusted p-values (``scipy.stats.false_discovery_control``);
  rejecting ``q < alpha`` controls the false discovery rate at ``alpha`` (independent or positively dependent tests).
- :func:`paired_bootstrap`: the change of a statistic between two models scored on the same examples. Both are
  recomputed on the same resamples of the examples (Efron & Tibshirani 1993, ch. 13 and 16), so the interval
  reflects only the variation of the difference; the p-value is that of the percentile interval inverted
  (:func:`bootstrap_pvalue`).
- :func:`spearman_test`: rank correlation with a permutation p-value over ``n_perm`` random permutations of one
  series (Phipson & Smyth's ``(1 + b) / (n_perm + 1)``).
- :func:`normal_draws`: draws of estimates from their stored 95% intervals, for a parametric bootstrap when the
  per-example values are no longer available.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats

from pipeline.bootstrap import bootstrap_indices

__all__ = [
    "N_PERM",
    "Q_GROUPS",
    "PairedDelta",
    "bh_qvalues",
    "bootstrap_pvalue",
    "minimum_detectable",
    "normal_draws",
    "paired_bootstrap",
    "seeds_ttest",
    "sign_flip_test",
    "spearman_test",
    "summarise_draws",
    "with_q",
]

N_PERM = 9999  # default number of random sign patterns / permutations: p-values resolve to 1e-4
_CHUNK = 1024  # sign patterns per matrix product (bounds memory at _CHUNK x n_units floats)
Alternative = Literal["two-sided", "greater", "less"]


def _check_alternative(alternative: str) -> None:
    if alternative not in ("two-sided", "greater", "less"):
        raise ValueError(f"alternative={alternative!r}; use 'two-sided', 'greater' or 'less'.")


def _all_signs(n: int) -> np.ndarray:
    """Every sign pattern of length n, shape (2^n, n)."""
    return np.array(list(itertools.product((1.0, -1.0), repeat=n)))  # (2^n, n)


def _exceed(null: np.ndarray, observed: np.ndarray, tol: np.ndarray, alternative: str) -> np.ndarray:
    """Per unit, how many rows of ``null`` (k, n_units) are at least as extreme as ``observed`` (n_units,)."""
    if alternative == "two-sided":
        return (np.abs(null) >= np.abs(observed) - tol).sum(0)
    if alternative == "greater":
        return (null >= observed - tol).sum(0)
    return (null <= observed + tol).sum(0)


def _hoeffding(observed: np.ndarray, square_sum: np.ndarray, alternative: str) -> np.ndarray:
    """Hoeffding's bound on the sign-flip tail of the observed sums (1 where it says nothing)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        exponent = np.where(square_sum > 0, -(observed**2) / (2 * square_sum), 0.0)
    one_sided = np.exp(exponent)
    if alternative == "two-sided":
        return np.minimum(1.0, 2 * one_sided)
    toward = observed > 0 if alternative == "greater" else observed < 0
    return np.where(toward, one_sided, 1.0)


def sign_flip_test(
    values: np.ndarray,
    *,
    n_perm: int = N_PERM,
    seed: int = 0,
    alternative: Alternative = "two-sided",
) -> np.ndarray | float:
    """p-value of the mean of per-example values being 0, per unit, by sign flipping (module docstring).

    Args:
        values: per-example values, (n_ex,) for one unit or (n_units, n_ex); NaN entries are left out of their unit
            (they count as 0 in every sign pattern, so the unit's number of values is fixed).
        n_perm: random sign patterns when ``2^n_ex > n_perm + 1`` (else all patterns are enumerated).
        seed: seed of ``numpy.random.default_rng``; every unit is tested on the same patterns.
        alternative: ``two-sided`` (mean != 0), ``greater`` (mean > 0) or ``less`` (mean < 0).

    Returns:
        p-values in (0, 1], a float for one unit or an array (n_units,); NaN for a unit without finite values.

    Raises:
        ValueError: bad ``alternative`` or ``n_perm``, or ``values`` not 1-D/2-D.
    """
    _check_alternative(alternative)
    if not isinstance(n_perm, (int, np.integer)) or n_perm < 1:
        raise ValueError(f"n_perm={n_perm!r}; use a positive int (9999 is usual).")
    x = np.asarray(values, dtype=np.float64)
    if x.ndim not in (1, 2):
        raise ValueError(f"values has shape {x.shape}; give (n_ex,) or (n_units, n_ex).")
    single = x.ndim == 1
    x = np.atleast_2d(x)  # (n_units, n_ex)
    finite = np.isfinite(x)
    x = np.where(finite, x, 0.0)
    observed = x.sum(1)  # (n_units,): n_valid * mean, with n_valid fixed per unit
    tol = 1e-9 * np.abs(x).sum(1) + 1e-300  # (n_units,) float rounding of equal sums
    n = x.shape[1]
    if n and 2**n <= n_perm + 1:  # enumerate: the exact permutation distribution
        null = _all_signs(n) @ x.T  # (2^n, n_units)
        p = _exceed(null, observed, tol, alternative) / len(null)
    else:
        rng = np.random.default_rng(seed)
        count = np.zeros(len(x))
        for start in range(0, n_perm, _CHUNK):
            signs = rng.choice((-1.0, 1.0), size=(min(_CHUNK, n_perm - start), n))  # (k, n_ex)
            count += _exceed(signs @ x.T, observed, tol, alternative)  # (k, n_units) -> (n_units,)
        monte_carlo = (1 + count) / (n_perm + 1)
        tail = np.minimum(monte_carlo, _hoeffding(observed, (x**2).sum(1), alternative))
        p = np.where(count == 0, tail, monte_carlo)
    p = np.where(finite.any(1), p, np.nan)
    return float(p[0]) if single else p


def bh_qvalues(p: Sequence[float] | np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg q-values of a family of p-values; NaN entries stay NaN and are not counted."""
    p = np.asarray(p, dtype=np.float64)
    q = np.full(p.shape, np.nan)
    finite = np.isfinite(p)
    if finite.any():
        q[finite] = stats.false_discovery_control(np.clip(p[finite], 0.0, 1.0), method="bh")
    return q


def bootstrap_pvalue(draws: np.ndarray, null: float = 0.0) -> np.ndarray | float:
    """Two-sided p-value of ``null`` from bootstrap draws (axis 0): the smallest alpha whose percentile interval
    excludes it, ``min(1, 2 min(1 + #(d <= null), 1 + #(d >= null)) / (B + 1))``; NaN draws are left out.

    Valid asymptotically (as the percentile interval it inverts); all draws equal to ``null`` give p = 1.
    """
    d = np.asarray(draws, dtype=np.float64)
    finite = np.isfinite(d)
    b = finite.sum(0)
    below = (np.where(finite, d, np.inf) <= null).sum(0)
    above = (np.where(finite, d, -np.inf) >= null).sum(0)
    p = np.minimum(1.0, 2 * (1 + np.minimum(below, above)) / (b + 1))
    p = np.where(b >= 2, p, np.nan)
    return float(p) if np.ndim(p) == 0 else p


@dataclass(frozen=True)
class PairedDelta:
    """The change of a statistic between two models on the same examples (entries: one per statistic).

    Attributes:
        delta: statistic(variant) - statistic(reference) on all examples.
        ci_low, ci_high: percentile bootstrap interval of the difference.
        p: two-sided bootstrap p-value of no change (:func:`bootstrap_pvalue`).
        n: number of paired examples.
        draws: the difference on every resample, (n_boot, n_stats), for pooling over seeds.
    """

    delta: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    p: np.ndarray
    n: int
    draws: np.ndarray


def _interval(draws: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    enough = np.isfinite(draws).sum(0) >= 2
    with np.errstate(all="ignore"):
        low = np.nanpercentile(np.where(enough, draws, 0.0), 100 * alpha / 2, axis=0)
        high = np.nanpercentile(np.where(enough, draws, 0.0), 100 * (1 - alpha / 2), axis=0)
    return np.where(enough, low, np.nan), np.where(enough, high, np.nan)


def summarise_draws(delta: np.ndarray, draws: np.ndarray, n: int, *, alpha: float = 0.05) -> PairedDelta:
    """A :class:`PairedDelta` from a point difference (n_stats,) and its bootstrap draws (n_boot, n_stats)."""
    draws = np.atleast_2d(np.asarray(draws, dtype=np.float64))
    low, high = _interval(draws, alpha)
    return PairedDelta(np.atleast_1d(np.asarray(delta, dtype=np.float64)), low, high,
                       np.atleast_1d(bootstrap_pvalue(draws)), n, draws)  # fmt: skip


def paired_bootstrap(
    stat: Callable[..., float | np.ndarray],
    variant: Sequence[np.ndarray],
    reference: Sequence[np.ndarray],
    *,
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
) -> PairedDelta:
    """Paired bootstrap of ``stat(*variant) - stat(*reference)`` over examples.

    Args:
        stat: the statistic of one model, called with its per-example arrays; a scalar or a 1-D array (several
            statistics at once). NaN marks a statistic undefined on a resample (left out of its interval).
        variant: per-example arrays of the compared model (e.g. labels, genders, predictions), equal lengths.
        reference: the reference model's arrays for the same examples in the same order.
        n_boot: resamples; the same seed gives the same resamples for every pair of models, so differences of
            several variants (or seeds) on one test set can be averaged draw by draw.
        seed: seed of :func:`pipeline.bootstrap.bootstrap_indices`.
        alpha: miscoverage of the percentile interval.

    Raises:
        ValueError: arrays of different lengths, no examples or ``n_boot`` < 2.
    """
    arrays = [np.asarray(a) for a in (*variant, *reference)]
    lengths = {len(a) for a in arrays}
    if len(lengths) != 1 or not lengths.pop() or len(variant) == 0 or len(reference) == 0:
        raise ValueError(
            "paired_bootstrap needs non-empty per-example arrays of one length for both models, in "
            "the same example order."
        )
    if n_boot < 2:
        raise ValueError(f"n_boot={n_boot!r}; use at least 2 resamples (2000 is usual).")
    k = len(variant)
    n = len(arrays[0])

    def diff(idx: np.ndarray) -> np.ndarray:
        return np.atleast_1d(np.asarray(stat(*(a[idx] for a in arrays[:k])), dtype=np.float64)
                             - np.asarray(stat(*(a[idx] for a in arrays[k:])), dtype=np.float64))  # fmt: skip

    delta = diff(np.arange(n))
    draws = np.stack([diff(idx) for idx in bootstrap_indices(n, n_boot, seed=seed)])  # (n_boot, n_stats)
    return summarise_draws(delta, draws, n, alpha=alpha)


def minimum_detectable(
    ci_low: float, ci_high: float, *, alpha: float = 0.05, power: float = 0.8, level: float = 0.95
) -> float:
    """The minimum detectable effect of an estimate with the ``level`` interval ``[ci_low, ci_high]``: the smallest
    true effect a two-sided test at ``alpha`` detects with probability ``power``, ``(z_{1-alpha/2} + z_power) * se``
    with ``se`` = the interval's width / ``2 z_{(1+level)/2}`` (normal approximation; Cohen 1988). NaN without an
    interval. A BH-corrected decision needs a smaller p than ``alpha``, so its real MDE is larger."""
    if not (np.isfinite(ci_low) and np.isfinite(ci_high)):
        return float("nan")
    se = (ci_high - ci_low) / (2 * stats.norm.ppf((1 + level) / 2))
    return float((stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)) * se)


def seeds_ttest(deltas: Sequence[float]) -> float:
    """Two-sided one-sample t-test of the per-seed differences being 0 (seeds as random draws of training); NaN
    with fewer than three finite differences (two give no usable spread)."""
    d = np.asarray(deltas, dtype=np.float64)
    d = d[np.isfinite(d)]
    if len(d) < 3:
        return float("nan")
    if np.ptp(d) == 0:
        return 1.0 if d[0] == 0 else 0.0
    return float(stats.ttest_1samp(d, 0.0).pvalue)


def spearman_test(a: np.ndarray, b: np.ndarray, *, n_perm: int = N_PERM, seed: int = 0) -> tuple[float, float]:
    """Spearman's rho of two paired series and its two-sided permutation p-value; (NaN, NaN) below 3 pairs or
    when a series is constant."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan"), float("nan")
    ra, rb = stats.rankdata(a), stats.rankdata(b)
    ra, rb = (ra - ra.mean()) / np.linalg.norm(ra - ra.mean()), (rb - rb.mean()) / np.linalg.norm(rb - rb.mean())
    rho = float(ra @ rb)
    rng = np.random.default_rng(seed)
    perms = np.argsort(rng.random((n_perm, len(rb))), axis=1)  # (n_perm, n) random permutations
    null = rb[perms] @ ra  # (n_perm,)
    p = (1 + (np.abs(null) >= abs(rho) - 1e-12).sum()) / (n_perm + 1)
    return rho, float(p)


def normal_draws(
    value: np.ndarray, low: np.ndarray, high: np.ndarray, *, n_boot: int, seed: int, level: float = 0.95
) -> np.ndarray:
    """Draws ``value + se z`` (n_boot, k) with ``se = (high - low) / (2 z_level)``, independent across entries: a
    parametric bootstrap of estimates known only through their intervals. Entries without an interval get se 0."""
    value = np.asarray(value, dtype=np.float64)
    se = (np.asarray(high, dtype=np.float64) - np.asarray(low, dtype=np.float64)) / (
        2 * stats.norm.ppf(0.5 + level / 2)
    )
    se = np.where(np.isfinite(se), np.abs(se), 0.0)
    return value + se * np.random.default_rng(seed).standard_normal((n_boot, len(value)))


# Columns that separate families of tests in a table: q-values are computed within each (one model, one method
# setting, one metric, one unit kind: heads and neurons apart). The findings correct again over the whole run.
Q_GROUPS: tuple[str, ...] = ("variant", "seed", "score", "mode", "baseline", "engine", "order", "metric", "unit")


def with_q(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with column ``q``: Benjamini-Hochberg q-values of ``p`` within each family of :data:`Q_GROUPS`
    (one model, one method setting, one metric, one unit kind). Without a ``p`` column, unchanged."""
    if "p" not in frame:
        return frame
    out = frame.copy()
    out["q"] = np.nan
    keys = [c for c in Q_GROUPS if c in out]
    tested = out[out["p"].notna()]
    for _, group in tested.groupby([out[c].astype(str) for c in keys], sort=False) if keys else [(None, tested)]:
        out.loc[group.index, "q"] = bh_qvalues(group["p"].to_numpy())
    return out
