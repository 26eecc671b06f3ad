"""Findings about mitigations (docs/DESIGN.md section 9, RQ6): what each remedy changes against its unmitigated twin, and
where every variant sits on the bias-accuracy frontier.

``mitigation``. Each mitigated variant is compared with its twin, the same recipe without that one mitigation
(:func:`pipeline.variants.mitigation_twins`: ``X@cda``, ``X@balanced``, ``X@reweighed`` vs ``X``, ``distil_mixup`` vs
``distil``, ``biasprune<k>h`` vs ``prune<k>h`` (importance pruning of as many heads), ``<base>_erase`` vs
``<base>``), same order and training set, seed s with seed s. The statistics are those of the RQ1 comparisons
(:mod:`pipeline.findings.comparisons`): a paired bootstrap over the test examples for accuracy, the accuracy gap,
GAP_RMS, the per-class TPR gaps, the counterfactual gap and flip rate; interval comparisons for the intrinsic
metrics; the ``pooled``
row over seeds; BH q-values within each metric and level over all pairs. Extra columns: ``mitigation``, ``twin``.
A negative delta of a bias metric is less bias (for signed metrics such as ``cf_prob_gap``, compare |value|:
``value_variant`` and ``value_reference`` hold both).

``frontier``. Per variant (seeds pooled: means of the values and of the interval bounds) and per bias metric of
:data:`FRONTIER_METRICS`: the bias ``value`` with its interval, ``accuracy`` with ``accuracy_low`` /
``accuracy_high``, the ``compression`` family and the ``mitigation`` (``none`` or ``+``-joined), ``fit`` (every seed
fit to be read), ``pareto_point``: on the point-estimate front of the fit variants (no other fit variant has at
least its accuracy and at most its |bias|, one of them strictly), and ``pareto``: not *significantly* dominated
(:func:`pareto_mask_intervals`: no other fit variant is at least as good on both axes and better on one with
non-overlapping 95% intervals, a conservative test). The counterfactual panel is the skew-oriented gap on the
held-out swap words (fair to remedies trained on swaps), or the signed gap for runs without it.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from pipeline.findings.comparisons import bias_rows, compared_metrics, finish_comparisons, paired_rows
from pipeline.findings.fitness import empty_table, head_trained
from pipeline.metrics.registry import intrinsic_prefixes
from pipeline.schema import tidy
from pipeline.variants import Variant, mitigation_twins, variant_sort_key

__all__ = [
    "FRONTIER_METRICS",
    "abs_interval",
    "frontier_table",
    "mitigation_pairs",
    "mitigation_table",
    "pareto_mask",
    "pareto_mask_intervals",
    "recipe_parts",
]

# (metric, subset); the signed gap only for runs without the skew-oriented one
FRONTIER_METRICS: tuple[tuple[str, str], ...] = (("gap_rms", ""), ("cf_skew_gap", "heldout"), ("cf_prob_gap", "all"))


def mitigation_pairs(variants: Iterable[str]) -> list[tuple[str, str, str]]:
    """``(variant, mitigation, twin)`` for every mitigated variant among ``variants`` whose twin is present."""
    present = set(variants)
    out = []
    for variant in sorted(present, key=variant_sort_key):
        for mitigation, candidates in mitigation_twins(variant):
            twin = next((c for c in candidates if c in present), None)
            if twin is not None:
                out.append((variant, mitigation, twin))
    return out


def recipe_parts(name: str) -> tuple[str, str]:
    """``(compression family, mitigations)`` of a variant: the family of its fully unmitigated recipe
    (``erase-ft_before`` -> teacher, ``biasprune4h`` -> prune) and its mitigations (``none`` or ``+``-joined)."""
    mitigations, current = [], name
    while twins := mitigation_twins(current):
        mitigations.append(twins[0][0])
        current = twins[0][1][-1]
    try:
        family = Variant.parse(current).family
    except ValueError:
        family = "?"
    return family, "+".join(sorted(set(mitigations))) or "none"


def mitigation_table(
    preds: pd.DataFrame | None,
    bias: pd.DataFrame | None,
    fitness: pd.DataFrame | None,
    label_names: list[str],
    cfg,
    task: pd.DataFrame | None = None,
    cf: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The ``mitigation`` table (module docstring); task-level rows only where both heads were trained; ``cf``:
    the ``counterfactual_examples`` table, for paired counterfactual comparisons."""
    untrained = {v for (v, _), ok in head_trained(task).items() if not ok}
    variants = set(preds["variant"]) if preds is not None else set()
    variants |= set(bias["variant"]) if bias is not None else set()
    metrics = compared_metrics(bias) if bias is not None else None
    rows: list[dict] = []
    for variant, mitigation, twin in mitigation_pairs(variants):
        extra = {"mitigation": mitigation, "twin": twin}
        readable = not ({variant, twin} & untrained)
        if preds is not None and readable and {variant, twin} <= set(preds["variant"]):
            rows += [{**r, **extra} for r in paired_rows(preds, label_names, variant, twin, cfg)]
        if metrics is None:
            continue
        for (metric, key), _ in metrics.groupby(["metric", "key"], sort=True):
            if readable or metric.startswith(intrinsic_prefixes()):
                rows += [{**r, **extra} for r in bias_rows(bias, cf, variant, metric, key, twin, cfg)]
    return finish_comparisons(rows, fitness)


def pareto_mask(accuracy: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """True where no other point has accuracy >= and |bias| <= with one strict (NaN points are never on it)."""
    acc, b = np.asarray(accuracy, float), np.abs(np.asarray(bias, float))
    ok = np.isfinite(acc) & np.isfinite(b)
    out = np.zeros(len(acc), dtype=bool)
    for i in np.flatnonzero(ok):
        better = ok & (acc >= acc[i]) & (b <= b[i]) & ((acc > acc[i]) | (b < b[i]))
        out[i] = not better.any()
    return out


def abs_interval(value, low, high) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """|value| with the interval of |x| (0 at the bottom when the interval holds 0)."""
    value, low, high = (np.asarray(a, float) for a in (value, low, high))
    a_low, a_high = np.abs(low), np.abs(high)
    return np.abs(value), np.where((low < 0) & (high > 0), 0.0, np.minimum(a_low, a_high)), np.maximum(a_low, a_high)


def pareto_mask_intervals(accuracy, accuracy_low, accuracy_high, bias, bias_low, bias_high) -> np.ndarray:
    """True where no other point significantly dominates: none has accuracy >= and |bias| <= (point estimates)
    with, on at least one axis, its whole interval better than this point's (accuracy interval above, |bias|
    interval below). Points without finite values are never on it; without intervals this is :func:`pareto_mask`."""
    acc, a_lo, a_hi = (np.asarray(x, float) for x in (accuracy, accuracy_low, accuracy_high))
    b, b_lo, b_hi = abs_interval(bias, bias_low, bias_high)
    a_lo, a_hi = np.where(np.isfinite(a_lo), a_lo, acc), np.where(np.isfinite(a_hi), a_hi, acc)
    b_lo, b_hi = np.where(np.isfinite(b_lo), b_lo, b), np.where(np.isfinite(b_hi), b_hi, b)
    ok = np.isfinite(acc) & np.isfinite(b)
    out = np.zeros(len(acc), dtype=bool)
    for i in np.flatnonzero(ok):
        clear = (a_lo > a_hi[i]) | (b_hi < b_lo[i])
        point = (acc > acc[i]) | (b < b[i])
        out[i] = not (ok & (acc >= acc[i]) & (b <= b[i]) & clear & point).any()
    return out


def _pooled(model: pd.DataFrame, metric: str, subset: str) -> pd.DataFrame:
    rows = model[(model["metric"] == metric) & (model["subset"].fillna("") == subset)]
    rows = rows[np.isfinite(rows["value"])]
    return rows.groupby("variant").agg(
        value=("value", "mean"),
        ci_low=("ci_low", "mean"),
        ci_high=("ci_high", "mean"),
        n=("n", "max"),
        n_seeds=("seed", "nunique"),
    )


def frontier_table(bias: pd.DataFrame, fitness: pd.DataFrame | None) -> pd.DataFrame:
    """The ``frontier`` table (module docstring) from the ``bias_metrics`` rows (accuracy and the bias metrics)."""
    model = bias[bias["unit"] == "model"]
    accuracy = _pooled(model, "accuracy", "all")
    fit = (
        {}
        if fitness is None or fitness.empty
        else fitness.drop_duplicates(["variant", "seed"]).groupby("variant")["fit"].all().to_dict()
    )
    rows = []
    for metric, subset in FRONTIER_METRICS:
        if metric == "cf_prob_gap" and any(r["metric"] == "cf_skew_gap" for r in rows):
            continue
        ys = _pooled(model, metric, subset).join(accuracy.add_prefix("accuracy_"), how="inner")
        if ys.empty:
            continue
        ys = ys.assign(fit=[bool(fit.get(v, False)) for v in ys.index])  # unknown fitness is never readable
        on = ys["fit"].to_numpy()
        point, front = np.zeros(len(ys), bool), np.zeros(len(ys), bool)
        point[on] = pareto_mask(ys.loc[ys["fit"], "accuracy_value"], ys.loc[ys["fit"], "value"])
        front[on] = pareto_mask_intervals(*(ys.loc[ys["fit"], c] for c in ("accuracy_value", "accuracy_ci_low",
                                            "accuracy_ci_high", "value", "ci_low", "ci_high")))  # fmt: skip
        for (variant, row), on_front, on_point in zip(ys.iterrows(), front, point):
            compression, mitigation = recipe_parts(str(variant))
            rows.append({"variant": variant, "seed": -1, "metric": metric, "subset": subset, "value": row["value"],
                         "ci_low": row["ci_low"], "ci_high": row["ci_high"], "n": int(row["n"]),
                         "accuracy": row["accuracy_value"], "accuracy_low": row["accuracy_ci_low"],
                         "accuracy_high": row["accuracy_ci_high"], "n_seeds": int(row["n_seeds"]),
                         "compression": compression, "mitigation": mitigation, "fit": bool(row["fit"]),
                         "pareto": bool(on_front), "pareto_point": bool(on_point)})  # fmt: skip
    return tidy(rows) if rows else empty_table()
