"""Percentile (and BCa) bootstrap confidence intervals over examples, shared by every aggregate metric.

Efron & Tibshirani (1993), "An Introduction to the Bootstrap", ch. 13 (percentile interval): resample the
examples with replacement ``n_boot`` times, recompute the statistic on each resample, and take the ``alpha/2`` and
``1 - alpha/2`` quantiles of the resampled statistics. The point value is the statistic on the original data.
The percentile interval assumes the resamples are centred on the value; a statistic such as GAP_RMS (a root mean
square of noisy gaps, biased upwards) is not, so ``method="bca"`` moves the quantile levels by the measured shift and
skew (:func:`bca_levels`; one jackknife pass of ``n`` extra evaluations).

Why numpy rather than :func:`scipy.stats.bootstrap`: our statistics are not vectorisable reductions (per-class
TPR gaps, per-target StereoSet means, correlations across classes), several arrays must be resampled with the same
indices, some resamples leave a statistic undefined (a class with no women drawn) and must be dropped rather than
poison the interval, and the SEAT effect size needs resampling within strata (X and Y separately). One index draw
from ``numpy.random.default_rng(seed)`` covers all of these and is reproducible.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["bca_levels", "bootstrap_ci", "bootstrap_indices"]


def bca_levels(value: np.ndarray, draws: np.ndarray, jackknife: np.ndarray | None, alpha: float) -> np.ndarray:
    """The percentile levels of the BCa interval (Efron 1987; Efron & Tibshirani 1993, ch. 14), (2, k).

    ``z0 = Phi^-1(share of draws below the value, ties half)`` corrects the shift of the resamples, the acceleration
    ``a = sum d^3 / (6 (sum d^2)^1.5)`` with ``d`` = jackknife mean minus each leave-one-out value corrects the
    skew; the levels are ``Phi(z0 + (z0 + z) / (1 - a (z0 + z)))`` for ``z`` at ``alpha/2`` and ``1 - alpha/2``.
    NaN draws are left out; an entry without a finite value gets NaN levels.
    """
    from scipy.stats import norm

    value = np.asarray(value, dtype=np.float64)  # (k,)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        finite = np.isfinite(draws).sum(0)
        below = (np.where(np.isfinite(draws), draws, np.inf) < value).sum(0)
        ties = (draws == value).sum(0)
        z0 = norm.ppf(np.clip((below + ties / 2) / np.maximum(finite, 1), 1e-6, 1 - 1e-6))
        a = np.zeros_like(value)
        if jackknife is not None:
            jack = np.asarray(jackknife, dtype=np.float64).reshape(len(jackknife), -1)
            d = np.nanmean(jack, axis=0) - jack
            a = np.nan_to_num(np.nansum(d**3, axis=0) / (6 * np.nansum(d**2, axis=0) ** 1.5))
        z = norm.ppf(np.array([alpha / 2, 1 - alpha / 2]))[:, None]  # (2, 1)
        levels = norm.cdf(z0 + (z0 + z) / (1 - a * (z0 + z)))
    return np.where(np.isfinite(value), levels, np.nan)


def bootstrap_indices(n: int, n_boot: int, *, seed: int = 0, strata: np.ndarray | None = None) -> np.ndarray:
    """Resampling indices, shape (n_boot, n): each row draws ``n`` indices with replacement.

    With ``strata`` (one int label per example) each stratum is resampled within itself, so every resample keeps
    the stratum sizes (used for SEAT, where X and Y are resampled separately).
    """
    rng = np.random.default_rng(seed)
    if strata is None:
        return rng.integers(0, n, size=(n_boot, n))
    strata = np.asarray(strata)
    if strata.shape != (n,):
        raise ValueError(f"strata has shape {strata.shape}; give one label per example, shape ({n},).")
    out = np.empty((n_boot, n), dtype=np.int64)
    for label in np.unique(strata):
        members = np.flatnonzero(strata == label)  # (n_label,)
        out[:, members] = members[rng.integers(0, len(members), size=(n_boot, len(members)))]
    return out


def _as_arrays(data: int | np.ndarray | Sequence) -> tuple[int, tuple[np.ndarray, ...] | None]:
    """``(n, arrays)``; ``arrays`` is None in index mode (``data`` is the number of examples)."""
    if isinstance(data, (int, np.integer)):
        if data < 1:
            raise ValueError(f"bootstrap_ci: n_examples={data}; need at least one example.")
        return int(data), None
    arrays = (np.asarray(data),) if isinstance(data, np.ndarray) else tuple(np.asarray(a) for a in data)
    if not arrays:
        raise ValueError("bootstrap_ci: no arrays given; pass the number of examples or the per-example arrays.")
    lengths = {len(a) for a in arrays}
    if len(lengths) != 1:
        raise ValueError(f"bootstrap_ci: arrays have different lengths {sorted(lengths)}; give one row per example.")
    n = lengths.pop()
    if n < 1:
        raise ValueError("bootstrap_ci: the arrays are empty; need at least one example.")
    return n, arrays


def bootstrap_ci(
    stat_fn: Callable[..., float | np.ndarray],
    data: int | np.ndarray | Sequence[np.ndarray],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    strata: np.ndarray | None = None,
    method: str = "percentile",
) -> tuple:
    """Statistic and its percentile (or BCa) bootstrap interval.

    Args:
        stat_fn: The statistic. In index mode (``data`` an int) it is called with an int index array of shape
            (n,) and must return the statistic on those examples; otherwise it is called with the resampled arrays,
            ``stat_fn(*arrays)``. It may return a scalar or a 1-D array (one interval per entry); NaN marks a
            statistic that is undefined on a resample, and such resamples are left out of that entry's interval.
        data: ``n_examples`` (int), one array, or a sequence of arrays of equal length resampled with the same
            indices (paired).
        n_boot: Number of resamples; 0 gives NaN bounds.
        seed: Seed of ``numpy.random.default_rng``; the same seed gives the same interval.
        alpha: Miscoverage: the interval is the ``[alpha/2, 1 - alpha/2]`` percentile range.
        strata: Optional int label per example; resampling then happens within each stratum.
        method: ``percentile``, or ``bca`` (bias-corrected and accelerated, Efron 1987; :func:`bca_bounds`) for a
            statistic whose resamples are shifted against its value, such as GAP_RMS near its noise floor.

    Returns:
        ``(value, low, high)``: floats for a scalar statistic, arrays for a vector one. Bounds are NaN when fewer
        than two resamples gave a finite statistic.

    Raises:
        ValueError: bad ``n_boot``/``alpha``, empty data or arrays of different lengths.
    """
    if not isinstance(n_boot, (int, np.integer)) or n_boot < 0:
        raise ValueError(f"n_boot={n_boot!r}; use a non-negative int (1000 is usual, 0 skips the interval).")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha={alpha!r}; use a miscoverage in (0, 1), e.g. 0.05 for a 95% interval.")
    if method not in ("percentile", "bca"):
        raise ValueError(f"method={method!r}; use 'percentile' or 'bca'.")
    n, arrays = _as_arrays(data)

    def call(idx: np.ndarray) -> np.ndarray:
        out = stat_fn(idx) if arrays is None else stat_fn(*(a[idx] for a in arrays))
        return np.asarray(out, dtype=np.float64)

    value = call(np.arange(n))
    if value.ndim > 1:
        raise ValueError(f"bootstrap_ci: stat_fn returned shape {value.shape}; return a scalar or a 1-D array.")
    if n_boot == 0:
        low = high = np.full(value.shape, np.nan)
    else:
        stats = np.stack([call(idx) for idx in bootstrap_indices(n, n_boot, seed=seed, strata=strata)])  # (n_boot, *)
        finite = np.isfinite(stats).sum(axis=0)
        levels = np.array([alpha / 2, 1 - alpha / 2])
        if method == "bca":
            jack = np.stack([call(np.delete(np.arange(n), i)) for i in range(n)]) if n > 1 else None
            levels = bca_levels(np.atleast_1d(value), stats.reshape(len(stats), -1), jack, alpha)  # (2, k)
        with warnings.catch_warnings():  # all-NaN entries are handled just below
            warnings.simplefilter("ignore", RuntimeWarning)
            flat = stats.reshape(len(stats), -1)
            bounds = np.array([[np.nanpercentile(flat[:, j], 100 * lv) if np.isfinite(lv) else np.nan
                                for j, lv in enumerate(np.broadcast_to(side, (flat.shape[1],)))]
                               for side in levels])  # fmt: skip
            low, high = bounds[0].reshape(value.shape), bounds[1].reshape(value.shape)
        low, high = np.where(finite >= 2, low, np.nan), np.where(finite >= 2, high, np.nan)
    if value.ndim == 0:
        return float(value), float(low), float(high)
    return value, np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
