"""From per-example results to tidy rows: means with percentile-bootstrap intervals and significance over examples.

Every attribution value in a table is a mean over examples, with a bootstrap confidence interval from
:func:`pipeline.bootstrap.bootstrap_ci` (resampling examples; all conditions of one table share the same
resamples, so their intervals are comparable). Whole-set scores (SEAT) are resampled within each of the four
sets and recomputed on every resample. Head rows carry the head's *original* index (``Anatomy.head_ids``), so a
pruned model's rows line up with its teacher's.

Effects (changes, indirect effects, signed gradients, attributions) also carry a p-value of "the mean effect is 0"
(column ``p``): Hall's skewness-corrected bootstrap-t test of :func:`pipeline.mean_test.mean_zero_test` on the
per-example values (null: the mean is 0, whatever the shape of the values; calibration measured there), or, for a whole-set score with no per-example values, the bootstrap
p-value of the same resamples as the interval (:func:`pipeline.stats.bootstrap_pvalue`). :func:`with_q` adds the
Benjamini-Hochberg q-value over the units of one model, method and metric (column ``q``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from attribution.engine import GridResult
from pipeline.anatomy import Anatomy
from pipeline.bootstrap import bootstrap_ci
from pipeline.mean_test import mean_zero_test
from pipeline.stats import Q_GROUPS, bootstrap_pvalue, with_q

__all__ = [
    "Q_GROUPS",
    "example_rows",
    "head_unit",
    "local_head",
    "mean_ci",
    "mean_ci_p",
    "rows",
    "set_ci",
    "set_ci_p",
    "with_q",
]


def _numpy(values: Tensor | np.ndarray) -> np.ndarray:
    return values.detach().double().cpu().numpy() if isinstance(values, Tensor) else np.asarray(values, float)


def mean_ci(values: Tensor | np.ndarray, *, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over examples of each condition and its interval; ``values`` is (n_cond, n_ex), NaN ignored."""
    arr = _numpy(values)
    value, low, high = bootstrap_ci(lambda v: np.nanmean(v, axis=0), arr.T, n_boot=n_boot, seed=seed)
    return np.atleast_1d(value), np.atleast_1d(low), np.atleast_1d(high)


def mean_ci_p(
    values: Tensor | np.ndarray, *, n_boot: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`mean_ci` plus the p-value of each condition's mean being 0 (:func:`pipeline.mean_test.mean_zero_test`,
    same seed)."""
    arr = _numpy(values)
    return (*mean_ci(arr, n_boot=n_boot, seed=seed), np.atleast_1d(mean_zero_test(arr, seed=seed)))


def set_ci_p(
    result: GridResult, minus: GridResult | None = None, *, n_boot: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Whole-set score of each condition (minus ``minus``'s single condition) with a within-set bootstrap interval
    and the bootstrap p-value of the value being 0 (from the same resamples; NaN without resamples)."""
    draws: list[np.ndarray] = []

    def stat(idx: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            out = result.on(torch.as_tensor(idx))
            if minus is not None:
                out = out - minus.on(torch.as_tensor(idx))
        draws.append(out.double().cpu().numpy())
        return draws[-1]

    groups = result.meta.groups.cpu().numpy()
    value, low, high = bootstrap_ci(stat, len(groups), n_boot=n_boot, seed=seed, strata=groups)
    value = np.atleast_1d(value)
    p = bootstrap_pvalue(np.stack(draws[1:])) if n_boot >= 2 else np.full(value.shape, np.nan)  # draws[0]: all data
    return value, np.atleast_1d(low), np.atleast_1d(high), np.atleast_1d(p)


def set_ci(
    result: GridResult, minus: GridResult | None = None, *, n_boot: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Whole-set score of each condition (minus ``minus``'s single condition) with a within-set bootstrap."""
    return set_ci_p(result, minus, n_boot=n_boot, seed=seed)[:3]


def head_unit(anatomy: Anatomy, layer: int, head: int) -> dict:
    """Row keys of local head ``head`` of ``layer``: unit ``head`` with its original head id."""
    return {"unit": "head", "layer": layer, "head": anatomy.head_ids[layer][head]}


def local_head(anatomy: Anatomy, layer: int, head_id: int) -> int:
    """Local index (gate position) of the head with original id ``head_id`` in ``layer``."""
    anatomy.check_layer(layer)
    ids = anatomy.head_ids[layer]
    if head_id not in ids:
        raise IndexError(f"head {head_id} is not in layer {layer}: its heads are {list(ids)} (pruned model?).")
    return ids.index(head_id)


def example_rows(units: list[dict], metric: str, values: Tensor | np.ndarray) -> pd.DataFrame:
    """The per-example values behind a mean, long: one row per (unit, example) with ``value`` (``values`` is
    (n_units, n_ex), examples in data order), so that statistics over units can be resampled over examples."""
    arr = _numpy(values)
    n_units, n_ex = arr.shape
    frame = pd.DataFrame([units[i] for i in range(n_units) for _ in range(n_ex)])
    return frame.assign(metric=metric, example=np.tile(np.arange(n_ex), n_units), value=arr.reshape(-1))


def rows(units: list[dict], metric: str, estimate: tuple[np.ndarray, ...], n: int, **extra) -> list[dict]:
    """One tidy row per unit with ``value, ci_low, ci_high`` (and ``p`` when ``estimate`` has a fourth entry, as
    from :func:`mean_ci_p`) from ``estimate``; ``extra`` columns are added."""
    value, low, high = estimate[:3]
    p = estimate[3] if len(estimate) > 3 else None
    out = [
        {**unit, "metric": metric, "value": float(v), "ci_low": float(lo), "ci_high": float(hi), "n": n, **extra}
        for unit, v, lo, hi in zip(units, value, low, high, strict=True)
    ]
    if p is not None:
        for row, pv in zip(out, p, strict=True):
            row["p"] = float(pv)
    return out
