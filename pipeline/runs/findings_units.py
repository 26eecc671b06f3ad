"""Findings about units: which heads and neurons carry the bias (RQ2), and whether IG rows are complete.

A unit *carries bias* by a causal method (single-head ablation, activation patching; DESIGN.md section 8) when it is
significant, ``q < alpha`` (Benjamini-Hochberg over the units of one model and method, recomputed here from the
``p`` column so that tables merged from shards or runs are corrected as a whole), and material, ``|effect| >=
min_share * |total|``, where the total is the model's whole effect (``intact_score`` of the ablation: the bias score
the head's removal moves; ``total_effect`` of patching). The materiality floor separates a head that carries part of
the bias from one whose contribution is real but negligible: with enough examples a sign-flip test finds effects of
1e-4 of the total (second-order leaks through random weights), and "carries bias" should not mean that.

Gradient importance and integrated gradients are correlational (first order or path-integrated); their significance
is reported beside the causal methods but never decides. IG rows whose completeness error ``delta_rel`` exceeds
``completeness_tol`` (1%: sum of attributions vs F(x) - F(baseline), Sundararajan et al. 2017) are marked incomplete
and left out of every finding.

Tables written before p-values were stored have no ``p`` column: their p-values are then approximated from the
interval (normal approximation; column ``p_method`` says which).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats as sstats

from attribution.tables import with_q
from pipeline.schema import tidy

__all__ = ["UNIT_METHODS", "UnitMethod", "bias_units", "completeness_table", "head_effects", "n_layers_of"]

_Z = sstats.norm.ppf(0.975)


@dataclass(frozen=True)
class UnitMethod:
    """A per-unit attribution method as the findings read it.

    Attributes:
        name: short name in the findings tables.
        table: run-folder table holding it.
        metric: the effect metric that carries ``p`` (tested against 0).
        rank_metric: the metric whose |value| ranks units for agreement (gradient: the importance E|dS/dg|).
        causal: an intervention (decides "carries bias") rather than an attribution.
        total: the model-row metric with the whole effect (materiality), or None.
        where: extra column filters (ablation: single-head mode).
    """

    name: str
    table: str
    metric: str
    rank_metric: str
    causal: bool
    total: str | None
    where: dict = field(default_factory=dict)


UNIT_METHODS: tuple[UnitMethod, ...] = (
    UnitMethod("ablation", "head_ablation", "delta_score", "delta_score", True, "intact_score", {"mode": "single"}),
    UnitMethod("patching", "patching", "indirect_effect", "indirect_effect", True, "total_effect"),
    UnitMethod("gradient", "head_importance", "grad", "grad_importance", False, None),
    UnitMethod("ig", "head_ig", "ig", "ig", False, "ig_total"),
    UnitMethod("neuron_ig", "neuron_ig", "ig", "ig", False, "ig_total"),
)
_KEEP_NEURONS = 20  # per model: the significant neurons plus this many largest ones are kept


def _filtered(frame: pd.DataFrame, method: UnitMethod) -> pd.DataFrame:
    for column, value in method.where.items():
        if column in frame:
            frame = frame[frame[column] == value]
    return frame


def n_layers_of(tables: dict[str, pd.DataFrame]) -> dict[str, int]:
    """Number of layers of each variant, from the layers its head / layer rows cover in any attribution table."""
    out: dict[str, int] = {}
    for method in UNIT_METHODS:
        frame = tables.get(method.table)
        if frame is None:
            continue
        rows = frame[frame["layer"] >= 0]
        for variant, layers in rows.groupby("variant")["layer"].max().items():
            out[str(variant)] = max(out.get(str(variant), 0), int(layers) + 1)
    return out


def _approx_p(frame: pd.DataFrame) -> pd.Series:
    se = (frame["ci_high"] - frame["ci_low"]) / (2 * _Z)
    return pd.Series(np.where(se > 0, 2 * sstats.norm.sf(np.abs(frame["value"]) / se), np.nan), index=frame.index)


def _ig_complete(frame: pd.DataFrame, tol: float) -> pd.Series:
    if "delta_rel" not in frame:
        return pd.Series(True, index=frame.index)
    return frame["delta_rel"].isna() | (frame["delta_rel"] <= tol)


def head_effects(tables: dict[str, pd.DataFrame], method: UnitMethod, *, cfg, rank: bool = False) -> pd.DataFrame:
    """Unit rows of ``method`` with ``p`` (stored or approximated) and ``q`` recomputed over each model's units, the
    total effect, its share, and flags; empty when the table is absent. ``rank=True`` reads ``rank_metric``."""
    frame = tables.get(method.table)
    if frame is None or "metric" not in frame:
        return pd.DataFrame()
    frame = _filtered(frame, method)
    metric = method.rank_metric if rank else method.metric
    units = frame[(frame["unit"].isin(("head", "neuron"))) & (frame["metric"] == metric)].copy()
    if units.empty:
        return units
    stored = units["p"] if "p" in units else pd.Series(np.nan, index=units.index)
    units["p_method"] = np.where(stored.notna(), "stored", "interval")
    units["p"] = stored.fillna(_approx_p(units))
    if rank:
        units["p"] = np.nan  # a magnitude (gradient importance) has no zero-centred test
    units = with_q(units)
    totals = frame[(frame["unit"] == "model") & (frame["metric"] == method.total)] if method.total else frame[:0]
    total = totals.groupby(["variant", "seed"])["value"].first()
    key = pd.MultiIndex.from_arrays([units["variant"], units["seed"]])
    units["total"] = total.reindex(key).to_numpy() if len(total) else np.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        units["share"] = np.abs(units["value"]) / np.abs(units["total"])
    units["complete"] = _ig_complete(units, cfg.completeness_tol) if method.table.endswith("_ig") else True
    units["method"] = method.name
    return units


def bias_units(tables: dict[str, pd.DataFrame], cfg) -> pd.DataFrame:
    """Every head of every per-unit method (and the significant or largest neurons) with ``p``, ``q``, ``share`` of
    the total effect, normalised ``depth`` = (layer + 1) / layers, and the flags ``significant`` (q < alpha),
    ``material`` (share >= min_share), ``carries`` (causal, significant and material) and ``complete`` (IG)."""
    depth = n_layers_of(tables)
    frames = []
    for method in UNIT_METHODS:
        units = head_effects(tables, method, cfg=cfg)
        if units.empty:
            continue
        units["causal"] = method.causal
        units["significant"] = units["q"] < cfg.alpha
        units["material"] = units["share"] >= cfg.min_share
        units["carries"] = units["causal"] & units["significant"] & units["material"] & units["complete"]
        if method.name == "neuron_ig":
            top = units.assign(key=units["value"].abs()).sort_values("key", ascending=False)
            keep = top.groupby(["variant", "seed"]).head(_KEEP_NEURONS).index.union(units.index[units["significant"]])
            units = units.loc[keep]
        frames.append(units)
    if not frames:
        return pd.DataFrame()
    out = pd.concat(frames, ignore_index=True)
    out["depth"] = (out["layer"] + 1) / out["variant"].map(depth).astype(float)
    keep = ["variant", "seed", "unit", "layer", "head", "metric", "subset", "value", "ci_low", "ci_high", "n",
            "method", "score", "p", "q", "p_method", "total", "share", "depth", "causal", "significant", "material",
            "carries", "complete"]  # fmt: skip
    return tidy(out[[c for c in keep if c in out]])


def completeness_table(tables: dict[str, pd.DataFrame], cfg) -> pd.DataFrame:
    """Per IG table, variant and seed: the largest relative completeness error ``delta_rel`` (``value``), the mean
    absolute error ``delta``, and ``complete`` (every example within ``completeness_tol``); token IG counts the
    examples over the tolerance (``n_incomplete``)."""
    out = []
    for name in ("head_ig", "neuron_ig", "token_ig"):
        frame = tables.get(name)
        if frame is None or "delta_rel" not in frame:
            continue
        rows = frame[frame["metric"].isin(("ig", "ig_total", "token_ig")) & frame["delta_rel"].notna()]
        for (variant, seed), group in rows.groupby(["variant", "seed"], sort=True):
            rel = group["delta_rel"]
            if name == "token_ig":
                per_example = group.groupby("example")["delta_rel"].max()
                worst, bad = per_example.max(), int((per_example > cfg.completeness_tol).sum())
            else:
                worst, bad = rel.max(), int(rel.max() > cfg.completeness_tol)
            out.append({"variant": variant, "seed": seed, "metric": "delta_rel", "subset": name,
                        "value": float(worst) if np.isfinite(worst) else np.nan,
                        "delta": float(group["delta"].abs().mean()), "n_incomplete": bad,
                        "complete": bool(bad == 0), "n": int(group["n"].max())})  # fmt: skip
    return tidy(out) if out else pd.DataFrame()
