"""Which models are fit to be read, as the readers show it: one status per (variant, seed) (untrained, collapsed,
weak, fit, unknown) from the findings' ``fitness`` table, or computed from the predictions when the findings have
not run, and the short reason each reader prints beside a model that is not fit."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from pipeline.findings.fitness import fitness_table
from pipeline.runs.findings_config import FindingsConfig

__all__ = ["STATUS_ORDER", "STATUS_WORDS", "flags_by_point", "flags_by_variant", "model_status"]

STATUS_ORDER = ("untrained", "collapsed", "weak", "fit", "unknown")  # worst first
STATUS_WORDS = {
    "untrained": "classifier head never trained",
    "collapsed": "predictions collapse onto one class",
    "weak": "no better than the majority class",
    "fit": "fit to be read",
    "unknown": "not checked",
}


def _status_rows(fitness: pd.DataFrame, cfg: FindingsConfig) -> pd.DataFrame:
    wide = fitness.pivot_table(index=["variant", "seed"], columns="metric", values="value", aggfunc="first")
    first = fitness.drop_duplicates(["variant", "seed"]).set_index(["variant", "seed"])
    p = fitness[fitness["metric"] == "accuracy_over_baseline"].set_index(["variant", "seed"]).get("p")
    out = pd.DataFrame(index=wide.index)
    out["fit"] = first["fit"].astype(bool)
    out["reason"] = first["reason"].fillna("").astype(str)
    for column in ("accuracy", "majority_baseline", "top_prediction_share"):
        out[column] = wide.get(column, np.nan)
    out["p_over_baseline"] = p.reindex(out.index) if p is not None else np.nan
    collapsed = out["top_prediction_share"] > cfg.collapse_share
    untrained = out["reason"].str.contains("never trained")
    out["status"] = np.where(
        out["fit"], "fit", np.where(untrained, "untrained", np.where(collapsed, "collapsed", "weak"))
    )
    return out.reset_index()


def model_status(
    fitness: pd.DataFrame | None,
    task: pd.DataFrame | None = None,
    predictions: pd.DataFrame | None = None,
    cfg: FindingsConfig | None = None,
) -> pd.DataFrame:
    """One row per (variant, seed): ``fit``, ``status`` (untrained / collapsed / weak / fit / unknown), ``reason``,
    accuracy, majority baseline, share of the most frequent prediction and the one-sided p of beating the baseline.

    Uses the findings ``fitness`` table when given; else computes it from ``predictions`` (and ``task`` for heads
    never trained); else only the untrained heads of ``task`` are known. Empty when none is given.
    """
    cfg = cfg or FindingsConfig()
    if (fitness is None or fitness.empty) and predictions is not None and len(predictions):
        needed = {"example", "label", "pred"}
        if needed <= set(predictions):
            fitness = fitness_table(predictions.dropna(subset=list(needed)), task, cfg)
    if fitness is not None and len(fitness):
        return _status_rows(fitness, cfg)
    columns = ["variant", "seed", "fit", "status", "reason"]
    if task is None:
        return pd.DataFrame(columns=columns)
    trained = task[(task["unit"] == "model") & (task["metric"] == "head_trained")]
    out = pd.DataFrame({"variant": trained["variant"], "seed": trained["seed"], "fit": trained["value"] > 0.5})
    out["status"] = np.where(out["fit"], "unknown", "untrained")
    out["reason"] = np.where(out["fit"], "", "classifier head never trained")
    return out.reset_index(drop=True)


def _short(row) -> str:
    if row["status"] == "collapsed":
        return f"collapsed ({row['top_prediction_share']:.0%} in one class)"
    return {"weak": "≤ majority class", "untrained": "untrained head"}.get(row["status"], row["status"])


def flags_by_point(status: pd.DataFrame) -> dict[tuple[str, int], str]:
    """(variant, seed) -> why that model is not fit to be read (models that are fit are absent)."""
    bad = status[~status["fit"].astype(bool)] if len(status) else status
    return {(str(r["variant"]), int(r["seed"])): _short(r) for _, r in bad.iterrows()}


def flags_by_variant(status: pd.DataFrame, variants: Sequence[str] | None = None) -> dict[str, str]:
    """variant -> why it is not fit to be read, worst status over its seeds ("2 of 2 seeds: collapsed ..."); variants
    fit in every seed are absent. ``variants``: restrict to these."""
    out = {}
    if status is None or status.empty:
        return out
    for variant, group in status.groupby("variant"):
        if variants is not None and variant not in variants:
            continue
        bad = group[~group["fit"].astype(bool)]
        if len(bad):
            worst = bad.iloc[np.argmin([STATUS_ORDER.index(s) for s in bad["status"]])]
            out[str(variant)] = _short(worst) + (f" ({len(bad)} of {len(group)} seeds)" if len(group) > 1 else "")
    return out
