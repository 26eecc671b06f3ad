"""Statistics over heads resampled over examples (RQ3, RQ4), from the per-example single-head effects the attribution
stores (``head_examples``: one row per head and example).

Every statistic over heads (Gini of |head means|, Spearman rank correlation and top-k overlap of two models' |head
means|) is recomputed on bootstrap resamples of the *examples* (Efron & Tibshirani 1993, ch. 6): the same resample for
every model whose examples are the same (the attribution draws them with one seed), so differences and correlations
between models are paired. Intervals are percentile intervals, widened to contain the estimate itself when
resampling biases the statistic (top-k overlap and Gini of noisy means shift under resampling), so an estimate never
lies outside its own interval.

Two references make the numbers readable:

- the *no-effect Gini*: the Gini of the same per-example noise with every head's mean set to 0 (each head's values
  centred), resampled the same way: what Gini the data would show if no head mattered;
- the *noise ceiling* of a teacher -> student correlation: the split-half reliability of each model's own ranking
  (Spearman of the head means of two random halves of the examples, Spearman-Brown corrected), combined as
  ``sqrt(r_teacher * r_student)``: the correlation two measurements of the *same* ranking would reach at this noise
  level. A student is "not reproduced" only when its correlation with the teacher is detectably below that ceiling.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as sstats

__all__ = [
    "ExampleEffects",
    "example_effects",
    "gini",
    "hull_interval",
    "pair_draws",
    "split_half_ceiling",
    "weights",
]

ExampleEffects = tuple[pd.MultiIndex, np.ndarray]  # (layer, head) index and effects (n_heads, n_examples)


def gini(x: np.ndarray) -> np.ndarray:
    """Gini of |x| along the last axis (0 = all equal); NaN where all are zero."""
    x = np.sort(np.abs(x), axis=-1)
    n, total = x.shape[-1], x.sum(-1)
    ranks = np.arange(1, n + 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total > 0, 2 * (x * ranks).sum(-1) / (n * total) - (n + 1) / n, np.nan)


def example_effects(frame: pd.DataFrame | None, method: str) -> dict[tuple[str, int], ExampleEffects]:
    """Per (variant, seed): the head index and the (heads, examples) matrix of ``method``'s per-example effects
    (examples in the order of their ``example`` ids); empty without the table or its rows."""
    if frame is None or frame.empty or "example" not in frame:
        return {}
    rows = frame[(frame.get("method", method) == method) & (frame["unit"] == "head")]
    out = {}
    for (variant, seed), group in rows.groupby(["variant", "seed"]):
        wide = group.pivot_table(index=["layer", "head"], columns="example", values="value", aggfunc="first")
        wide = wide.sort_index().sort_index(axis=1)
        if wide.isna().any().any():
            continue  # a head without every example: not resampled (the parametric fallback applies)
        out[(str(variant), int(seed))] = (wide.index, wide.to_numpy(dtype=float))
    return out


def weights(n_examples: int, n_boot: int, seed: int) -> np.ndarray:
    """Bootstrap weights (n_boot, n_examples): multinomial counts / n, one row per resample of the examples."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_examples, np.full(n_examples, 1.0 / n_examples), size=n_boot) / n_examples


def hull_interval(draws: np.ndarray, point: float) -> tuple[float, float]:
    """The 2.5-97.5% percentile interval of ``draws``, widened to contain ``point`` (NaN with < 2 finite draws)."""
    finite = draws[np.isfinite(draws)]
    if len(finite) < 2 or not np.isfinite(point):
        return float("nan"), float("nan")
    low, high = np.percentile(finite, [2.5, 97.5])
    return float(min(low, point)), float(max(high, point))


def _spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman correlation of each row of ``a`` with the same row of ``b`` (both (n, m))."""
    ra = sstats.rankdata(a, axis=-1)
    rb = sstats.rankdata(b, axis=-1)
    ra, rb = ra - ra.mean(-1, keepdims=True), rb - rb.mean(-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (ra * rb).sum(-1) / np.sqrt((ra**2).sum(-1) * (rb**2).sum(-1))


def _overlap_rows(a: np.ndarray, b: np.ndarray, k: int) -> np.ndarray:
    top_a, top_b = np.argsort(-a, -1)[..., :k], np.argsort(-b, -1)[..., :k]
    return np.array([len(set(x) & set(y)) / k for x, y in zip(np.atleast_2d(top_a), np.atleast_2d(top_b))])


def pair_draws(xa: np.ndarray, xb: np.ndarray, w: np.ndarray, k: int) -> dict[str, tuple[float, np.ndarray]]:
    """Spearman and top-k overlap of |head means| of two aligned effect matrices (same heads in the same order, same
    examples), the point estimates and their draws over the resamples ``w`` (paired: one resample for both)."""
    ma, mb = np.abs(xa.mean(1)), np.abs(xb.mean(1))
    da, db = np.abs(w @ xa.T), np.abs(w @ xb.T)  # (n_boot, n_heads)
    return {
        "spearman": (float(_spearman_rows(ma[None], mb[None])[0]), _spearman_rows(da, db)),
        "topk_overlap": (float(_overlap_rows(ma[None], mb[None], k)[0]), _overlap_rows(da, db, k)),
    }


def _reliability(x: np.ndarray, w: np.ndarray, halves: np.ndarray) -> np.ndarray:
    """Spearman-Brown corrected split-half reliability of the |head means| of ``x`` (heads, examples), one per row of
    the example weights ``w`` and the half split ``halves`` (boolean, True = first half; both (n, examples))."""
    wa, wb = w * halves, w * ~halves
    with np.errstate(divide="ignore", invalid="ignore"):
        first = np.abs((wa @ x.T) / wa.sum(1, keepdims=True))
        second = np.abs((wb @ x.T) / wb.sum(1, keepdims=True))
    rho = _spearman_rows(first, second)
    return np.where(rho > -1, 2 * rho / (1 + rho), np.nan)


def split_half_ceiling(xa: np.ndarray, xb: np.ndarray, w: np.ndarray, seed: int) -> tuple[float, np.ndarray]:
    """The noise ceiling ``sqrt(r_a * r_b)`` of a correlation between two models' head rankings (module docstring),
    both on the same examples: the point (mean over 200 random half splits of all examples) and one draw per
    resample in ``w`` (a random half split of the example ids, each half weighted by that resample)."""
    n = xa.shape[1]
    rng = np.random.default_rng(seed)

    def halves(count: int) -> np.ndarray:
        out = np.zeros((count, n), dtype=bool)
        for row in out:
            row[rng.permutation(n)[: n // 2]] = True
        return out

    def ceiling(weights: np.ndarray, split: np.ndarray) -> np.ndarray:
        ra, rb = _reliability(xa, weights, split), _reliability(xb, weights, split)
        return np.sqrt(np.clip(ra, 0, None) * np.clip(rb, 0, None))

    point = float(np.nanmean(ceiling(np.full((200, n), 1.0 / n), halves(200))))
    return point, ceiling(w, halves(len(w)))
