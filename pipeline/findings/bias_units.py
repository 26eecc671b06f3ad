"""Findings about units: which heads and neurons carry the bias (RQ2), which suppress it, and whether IG rows are
complete (docs/FINDINGS.md, "Bias-carrying units").

The target is the model's bias on the attributed examples (by default the skew-oriented counterfactual gap, whose
mean does not cancel across classes; :mod:`pipeline.metrics.counterfactual`): the ``total`` of each causal method
(``intact_score`` of the ablation: the bias the intact model shows; ``total_effect`` of patching). A unit is located
only where that total is *detectable*: its p-value (the mean-zero test of :mod:`pipeline.mean_test`) passes
Benjamini-Hochberg over the models of the run at ``alpha``; elsewhere there is no bias to locate and nothing is
flagged (``total_detectable`` False).

Direction. A unit *adds* bias when removing it moves the bias towards 0 (ablation: the effect has the sign opposite
to the total) or when it mediates it (patching, IG, gradients: the effect has the total's sign); it *reduces* bias
(suppresses it) in the other case. A unit *carries bias* when it is causal (ablation, patching), significant, adds
bias, material (``|effect| >= min_share * |total|``) and complete (IG); a significant, material unit that reduces bias
is a *suppressor* (``suppresses``), reported as its own finding: it matters for pruning.

Error rate over the whole run. Every causal unit row of the run (all models and causal methods) is one family per
unit kind (heads, neurons): ``q`` is Benjamini-Hochberg over that union, recomputed here from the ``p`` column, so the
false discovery rate of "carries bias" is controlled over the run, not per model. Gradient importance and integrated
gradients are correlational (first order or path-integrated): their ``q`` stays per model and method and never
decides. IG rows whose completeness error ``delta_rel`` exceeds ``completeness_tol`` (1%: sum of attributions vs
F(x) - F(baseline), Sundararajan et al. 2017) are marked incomplete and left out of every finding.

Shares are of a detectable total only (NaN elsewhere). Single-unit effects need not add up to the total (units
interact): :func:`additivity` gives, per model and method, the sum of the single-head effects over the total, which the
report prints instead of shares when it is far from 1.

Tables written before p-values were stored have no ``p`` column: their p-values are then approximated from the
interval (normal approximation; column ``p_method`` says which).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sstats

from pipeline.method_registry import UnitFacts, methods
from pipeline.schema import tidy
from pipeline.stats import bh_qvalues, with_q

__all__ = [
    "UnitMethod",
    "additivity",
    "bias_units",
    "completeness_table",
    "head_effects",
    "model_totals",
    "n_layers_of",
    "unit_methods",
]

_Z = sstats.norm.ppf(0.975)


@dataclass(frozen=True)
class UnitMethod:
    """A per-unit attribution method as the findings read it: its table and :class:`pipeline.method_registry.UnitFacts`
    (``name``, ``metric``, ``rank_metric``, ``causal``, ``total``, ``adds_sign``, ``where``)."""

    table: str
    facts: UnitFacts

    def __getattr__(self, name: str):
        return getattr(self.facts, name)


def unit_methods() -> tuple[UnitMethod, ...]:
    """Every registered attribution method whose units the findings read (plug-ins included), in run order."""
    return tuple(UnitMethod(m.table, m.unit) for m in methods() if m.unit is not None)


_KEEP_NEURONS = 20  # per model: the significant neurons plus this many largest ones are kept


def _filtered(frame: pd.DataFrame, method: UnitMethod) -> pd.DataFrame:
    for column, value in method.where.items():
        if column in frame:
            frame = frame[frame[column] == value]
    return frame


def n_layers_of(tables: dict[str, pd.DataFrame]) -> dict[str, int]:
    """Number of layers of each variant, from the layers its head / layer rows cover in any attribution table."""
    out: dict[str, int] = {}
    for method in unit_methods():
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
    totals = model_totals(frame, method)
    key = pd.MultiIndex.from_arrays([units["variant"], units["seed"]])
    for column in ("total", "total_low", "total_high", "total_p"):
        units[column] = totals[column].reindex(key).to_numpy() if len(totals) else np.nan
    sign = np.sign(units["value"]) * np.sign(units["total"]) * method.adds_sign
    units["direction"] = np.where(sign > 0, "adds", np.where(sign < 0, "reduces", ""))
    with np.errstate(divide="ignore", invalid="ignore"):
        units["share"] = np.abs(units["value"]) / np.abs(units["total"])
    units["complete"] = _ig_complete(units, cfg.completeness_tol) if method.table.endswith("_ig") else True
    units["method"] = method.name
    return units


def model_totals(frame: pd.DataFrame, method: UnitMethod) -> pd.DataFrame:
    """Per (variant, seed): the model's bias ``total`` under ``method`` with its interval and p-value (NaN where the
    table stores none); empty without a total metric."""
    columns = ["total", "total_low", "total_high", "total_p"]
    if not method.total or "metric" not in frame:
        return pd.DataFrame(columns=columns)
    rows = frame[(frame["unit"] == "model") & (frame["metric"] == method.total)]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    first = rows.groupby(["variant", "seed"]).first()
    out = pd.DataFrame(index=first.index)
    out["total"] = first["value"]
    for column, stored in (("total_low", "ci_low"), ("total_high", "ci_high"), ("total_p", "p")):
        out[column] = first.get(stored, np.nan)
    return out


def _detectable(units: pd.DataFrame, alpha: float) -> pd.Series:
    """Whether each row's model total is detectably non-zero: BH over the run's totals of the same method (one p per
    model), or, for tables without a total p, an interval that excludes 0; False when neither is known."""
    models = units.drop_duplicates(["method", "variant", "seed"])[["method", "variant", "seed", "total_p"]].copy()
    models["total_q"] = np.nan
    for _, group in models[models["total_p"].notna()].groupby("method"):
        models.loc[group.index, "total_q"] = bh_qvalues(group["total_p"].to_numpy())
    q = units.merge(models[["method", "variant", "seed", "total_q"]], on=["method", "variant", "seed"], how="left")
    q.index = units.index
    by_interval = (units["total_low"] > 0) | (units["total_high"] < 0)
    return pd.Series(np.where(q["total_q"].notna(), q["total_q"] < alpha, by_interval), index=units.index), q["total_q"]


def _run_level_q(units: pd.DataFrame) -> pd.Series:
    """q-values of the causal rows over the whole run, one family per unit kind; correlational rows keep theirs."""
    q = units["q"].copy()
    causal = units["causal"] & units["p"].notna()
    for _, group in units[causal].groupby("unit"):
        q.loc[group.index] = bh_qvalues(group["p"].to_numpy())
    return q


def bias_units(tables: dict[str, pd.DataFrame], cfg) -> pd.DataFrame:
    """Every head of every per-unit method (and the significant or largest neurons) with ``p``, ``q`` (run-level for
    the causal methods), the model's ``total`` bias and whether it is detectable, ``direction`` (adds / reduces),
    ``share`` of a detectable total, normalised ``depth`` = (layer + 1) / layers, and the flags ``significant``
    (q < alpha), ``material`` (share >= min_share), ``carries`` (causal, significant, material, adds bias, on a
    detectable total, complete) and ``suppresses`` (the same, reducing bias)."""
    depth = n_layers_of(tables)
    frames = []
    for method in unit_methods():
        units = head_effects(tables, method, cfg=cfg)
        if units.empty:
            continue
        units["causal"] = method.causal
        frames.append(units)
    if not frames:
        return pd.DataFrame()
    out = pd.concat(frames, ignore_index=True)
    out["q"] = _run_level_q(out)
    out["total_detectable"], out["total_q"] = _detectable(out, cfg.alpha)
    out.loc[~out["total_detectable"], "share"] = np.nan
    out["significant"] = out["q"] < cfg.alpha
    out["material"] = out["share"] >= cfg.min_share
    located = out["causal"] & out["significant"] & out["material"] & out["complete"] & out["total_detectable"]
    out["carries"] = located & (out["direction"] == "adds")
    out["suppresses"] = located & (out["direction"] == "reduces")
    neurons = out["method"] == "neuron_ig"
    if neurons.any():
        top = out[neurons].assign(key=out["value"].abs()).sort_values("key", ascending=False)
        keep = top.groupby(["variant", "seed"]).head(_KEEP_NEURONS).index.union(out.index[neurons & out["significant"]])
        out = out.loc[out.index[~neurons].union(keep)]
    out["depth"] = (out["layer"] + 1) / out["variant"].map(depth).astype(float)
    keep = ["variant", "seed", "unit", "layer", "head", "metric", "subset", "value", "ci_low", "ci_high", "n",
            "method", "score", "p", "q", "p_method", "total", "total_low", "total_high", "total_p", "total_q",
            "total_detectable", "direction", "share", "depth", "causal", "significant", "material", "carries",
            "suppresses", "complete"]  # fmt: skip
    return tidy(out[[c for c in keep if c in out]].reset_index(drop=True))


def additivity(units: pd.DataFrame) -> pd.DataFrame:
    """Per (variant, seed, method) of the causal head rows: the sum of the single-head effects, the model's total,
    and their ratio (``sum_over_total``; 1 when single effects add up to the whole, signs as stored: ablation
    effects are oriented against the total, so their ratio is ``-sum / total``)."""
    heads = units[(units["unit"] == "head") & units["causal"]]
    if heads.empty:
        return pd.DataFrame(columns=["variant", "seed", "method", "sum", "total", "sum_over_total"])
    signs = {m.name: m.adds_sign for m in unit_methods()}
    out = heads.groupby(["variant", "seed", "method"], as_index=False).agg(
        sum=("value", "sum"), total=("total", "first")
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        out["sum_over_total"] = out["method"].map(signs) * out["sum"] / out["total"]
    return out


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
