"""What the viewer (``app.py``) and ``bias-atlas figures`` show beside the raw tables, computed from them with pandas
only: which models are fit to be read, intervals as text, the overview as a readable table, the top units with
their uncertainty, one head's profile across methods, and wide versions of the long tables (whole-layer ablation,
homogeneity, control tasks, erasure).

Fitness (docs/FINDINGS.md section 2): a classifier is fit to be read when its head was trained, it beats the
majority-class baseline and its predictions do not collapse onto one class. The findings stage's ``fitness`` table
decides when the run has it; otherwise the same table is computed here from ``predictions`` (and ``task_metrics``
for untrained heads) with :func:`pipeline.findings.comparisons.fitness_table`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from pipeline.findings.model_status import flags_by_point
from pipeline.report.claims import is_p_column, p_text
from pipeline.runs.runfolder import variant_sort_key

__all__ = [
    "OVERVIEW_COLUMNS",
    "erasure_wide",
    "head_profile",
    "homogeneity_wide",
    "interval_text",
    "layer_ablation_wide",
    "overview_display",
    "p_columns_as_text",
    "units_table",
]

# Overview column -> (heading, how to read it), in display order: quality, bias, then size (the recipe columns
# follow; the variant and seed stay pinned on the left). Columns a table lacks, or that hold no value, are left out.
OVERVIEW_COLUMNS = {
    "accuracy": ("accuracy", "higher is better"),
    "macro_f1": ("macro-F1", "higher is better"),
    "gap_rms": ("GAP_RMS", "TPR gap, 0 = fair, lower is fairer"),
    "cf_gap": ("cf gap", "P(y|female) - P(y|male), 0 = fair"),
    "cf_flip_rate": ("cf flip rate", "share of predictions the gender swap changes, lower is fairer"),
    "seat_abs_d": ("mean |SEAT d|", "0 = no association"),
    "crows_stereo_pct": ("CrowS %", "50 = fair"),
    "stereoset_ss": ("StereoSet SS", "50 = fair"),
    "stereoset_icat": ("StereoSet ICAT", "100 = ideal"),
    "n_params": ("parameters", ""),
    "size_mb": ("size (MB)", ""),
}
_FAIRNESS = ("gap_rms", "cf_gap", "cf_flip_rate")  # extrinsic: meaningless for a model not fit to be read


def interval_text(value: float, low: float = np.nan, high: float = np.nan, digits: int = 3) -> str:
    """``value [low, high]`` with ``digits`` significant digits ("" for NaN; no brackets without an interval)."""
    if value is None or not np.isfinite(value):
        return ""
    point = f"{value:.{digits}g}"
    if low is None or high is None or not (np.isfinite(low) and np.isfinite(high)):
        return point
    return f"{point} [{low:.{digits}g}, {high:.{digits}g}]"


def _is_p_column(name: object, values: pd.Series) -> bool:
    if not is_p_column(name) or not pd.api.types.is_float_dtype(values):
        return False
    numbers = values.to_numpy(dtype=np.float64, na_value=np.nan)
    finite = numbers[np.isfinite(numbers)]
    return bool(((finite >= 0) & (finite <= 1)).all())


def p_columns_as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its p- and q-value columns (float columns named ``p``, ``q``, ``total_q``, ``p value``, ...
    holding values in [0, 1]) written by :func:`p_text`; other columns unchanged."""
    columns = [c for c in frame.columns if _is_p_column(c, frame[c])]
    return frame.assign(**{str(c): [p_text(v) for v in frame[c]] for c in columns}) if columns else frame


# ---- overview -----------------------------------------------------------------------------------------------------
def overview_display(table: pd.DataFrame, status: pd.DataFrame | None = None) -> pd.DataFrame:
    """The overview (:func:`pipeline.runs.runfolder.overview_table`) as text: one column per metric holding
    ``value [low, high]``, columns without any value dropped, a ``fit to read`` column (✓, or ✗ and why) and the
    extrinsic fairness values of models not fit to be read in parentheses (not interpretable)."""
    out = table[["variant", "seed"]].copy()
    flags = flags_by_point(status) if status is not None and len(status) else {}
    if status is not None and len(status):
        out["fit to read"] = [
            "✗ " + flags[(v, int(s))] if (v, int(s)) in flags else "✓" for v, s in zip(out["variant"], out["seed"])
        ]
    for column, (heading, _) in OVERVIEW_COLUMNS.items():
        if column not in table or table[column].isna().all():
            continue
        low, high = table.get(f"{column}_lo"), table.get(f"{column}_hi")
        digits = 4 if column in ("n_params",) else 3
        texts = [
            interval_text(v, np.nan if low is None else lo, np.nan if high is None else hi, digits)
            for v, lo, hi in zip(
                table[column],
                low if low is not None else [np.nan] * len(table),
                high if high is not None else [np.nan] * len(table),
            )
        ]
        if column == "n_params":
            texts = [f"{v / 1e6:.2f} M" if np.isfinite(v) else "" for v in table[column]]
        if column in _FAIRNESS and flags:
            texts = [
                f"({t})" if t and (v, int(s)) in flags else t for t, v, s in zip(texts, table["variant"], table["seed"])
            ]
        out[heading] = texts
    for column in ("method", "order", "training_set"):
        if column in table and table[column].nunique() > (1 if column == "training_set" else 0):
            out[column] = table[column]
    return out.reset_index(drop=True)


# ---- units --------------------------------------------------------------------------------------------------------
def units_table(
    frame: pd.DataFrame,
    metric: str,
    *,
    unit: str = "head",
    k: int = 20,
    alpha: float = 0.05,
    carries: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The ``k`` units of each (variant, seed) with the largest |value| of ``metric``: layer, head (or neuron), the
    value with its interval, p, q, ``significant`` (q < alpha), ``carries bias`` (from the findings ``bias_units``
    rows in ``carries``) and n. Sortable as it is; one row per unit and seed."""
    rows = frame[(frame["unit"] == unit) & (frame["metric"] == metric)]
    if "mode" in rows and (rows["mode"].fillna("") == "single").any():
        rows = rows[rows["mode"].fillna("") == "single"]
    rows = rows.assign(magnitude=rows["value"].abs()).sort_values("magnitude", ascending=False, kind="stable")
    top = rows.groupby(["variant", "seed"], sort=False).head(k)
    out = pd.DataFrame(
        {
            "variant": top["variant"],
            "seed": top["seed"],
            "layer": top["layer"],
            "neuron" if unit == "neuron" else "head": top["head"],
            "value": top["value"],
            "interval": [interval_text(v, lo, hi) for v, lo, hi in zip(top["value"], top["ci_low"], top["ci_high"])],
            "ci_low": top["ci_low"],
            "ci_high": top["ci_high"],
        }
    )
    for column in ("p", "q"):
        out[column] = top.get(column, np.nan)
    out["significant"] = out["q"] < alpha if out["q"].notna().any() else pd.NA
    if carries is not None and len(carries):
        hit = carries[carries["unit"] == unit].groupby(["variant", "seed", "layer", "head"])["carries"].any()
        keys = list(zip(top["variant"], top["seed"], top["layer"], top["head"]))
        out["carries bias"] = [bool(hit.get(key, False)) for key in keys]
    out["n"] = top.get("n", np.nan)
    order = sorted(
        range(len(out)),
        key=lambda i: (variant_sort_key(str(out["variant"].iloc[i])), out["seed"].iloc[i], -abs(out["value"].iloc[i])),
    )
    return out.iloc[order].reset_index(drop=True)


def head_profile(
    tables: Mapping[str, pd.DataFrame | None],
    sources: Mapping[str, tuple[str, str]],
    variant: str,
    layer: int,
    head: int,
    *,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Every measured value of one head of ``variant`` (per seed): one row per (method label, seed) with the value
    and interval, p, q, significant, carries bias and n. ``sources``: label -> (table, metric), e.g. the viewer's
    head maps plus the per-head gender probe; ``tables`` must hold ``bias_units`` to fill "carries bias"."""
    units = tables.get("bias_units")
    out = []
    for label, (name, metric) in sources.items():
        frame = tables.get(name)
        if frame is None:
            continue
        rows = frame[
            (frame["variant"] == variant)
            & (frame["unit"] == "head")
            & (frame["metric"] == metric)
            & (frame["layer"] == layer)
            & (frame["head"] == head)
        ]
        if "mode" in rows and (rows["mode"].fillna("") == "single").any():
            rows = rows[rows["mode"].fillna("") == "single"]
        for _, r in rows.iterrows():
            q = r.get("q", np.nan)
            carried = None
            if units is not None:
                hit = units[
                    (units["variant"] == variant)
                    & (units["seed"] == r["seed"])
                    & (units["unit"] == "head")
                    & (units["layer"] == layer)
                    & (units["head"] == head)
                    & (units["metric"] == metric)
                ]
                carried = bool(hit["carries"].any()) if len(hit) else None
            pooling = r.get("pooling")
            out.append(
                {
                    "measure": label + (f" ({pooling} pooling)" if isinstance(pooling, str) and pooling else ""),
                    "seed": int(r["seed"]),
                    "value": r["value"],
                    "interval": interval_text(r["value"], r["ci_low"], r["ci_high"]),
                    "p": r.get("p", np.nan),
                    "q": q,
                    "significant": bool(q < alpha) if pd.notna(q) else None,
                    "carries bias": carried,
                    "n": r.get("n", np.nan),
                    "table": name,
                }
            )
    return pd.DataFrame(out)


# ---- wide tables --------------------------------------------------------------------------------------------------
def layer_ablation_wide(frame: pd.DataFrame) -> pd.DataFrame:
    """Whole-layer ablation (unit layer rows of ``head_ablation``) as one row per (variant, seed, layer) with the
    normalised depth and one ``value [low, high]`` column per metric (Δ bias score, Δ accuracy)."""
    rows = frame[(frame["unit"] == "layer") & frame["metric"].isin(("delta_score", "delta_accuracy"))]
    if rows.empty:
        return pd.DataFrame()
    rows = rows.assign(
        text=[interval_text(v, lo, hi) for v, lo, hi in zip(rows["value"], rows["ci_low"], rows["ci_high"])]
    )
    wide = rows.pivot_table(index=["variant", "seed", "layer"], columns="metric", values="text", aggfunc="first")
    wide = wide.rename(
        columns={"delta_score": "Δ bias score when removed", "delta_accuracy": "Δ accuracy when removed"}
    )
    wide = wide.reset_index()
    n_layers = wide.groupby("variant")["layer"].transform("max") + 1
    wide.insert(3, "depth (l+1)/L", ((wide["layer"] + 1) / n_layers).round(3))
    return _by_variant(wide, "seed", "layer")


def homogeneity_wide(comparison: pd.DataFrame) -> pd.DataFrame:
    """The ``comparison`` table's model rows as one row per (variant, seed): Gini and normalised entropy of |head
    effects| (Gini 0 = every head equal, 1 = one head holds it all; entropy 1 = spread evenly, 0 = one head), the
    seed agreement (Spearman, top-k overlap) and the teacher-student alignment."""
    rows = comparison[comparison["unit"] == "model"]
    if rows.empty:
        return pd.DataFrame()
    wide = rows.pivot_table(index=["variant", "seed"], columns="metric", values="value", aggfunc="mean").round(3)
    names = {
        "gini": "Gini",
        "entropy": "entropy",
        "seed_spearman": "seed Spearman",
        "seed_topk_overlap": "seed top-k overlap",
        "align_share_spearman": "teacher alignment (layer shares, Spearman)",
    }
    wide = wide[[c for c in names if c in wide]].rename(columns=names).reset_index()
    return _by_variant(wide, "seed")


def erasure_wide(erasure: pd.DataFrame) -> pd.DataFrame:
    """LEACE erasure as one row per (variant, seed, erased layer, metric, subset): before, after and the change."""
    if erasure.empty or "condition" not in erasure:
        return pd.DataFrame()
    keys = ["variant", "seed", "erased_layer" if "erased_layer" in erasure else "layer", "metric", "subset"]
    rows = erasure[erasure["value"].notna()]
    rows = rows.assign(
        text=[interval_text(v, lo, hi) for v, lo, hi in zip(rows["value"], rows["ci_low"], rows["ci_high"])]
    )
    text = rows.pivot_table(index=keys, columns="condition", values="text", aggfunc="first")
    value = rows.pivot_table(index=keys, columns="condition", values="value", aggfunc="first")
    out = text.reindex(columns=["before", "after"])
    if {"before", "after"} <= set(value):
        out["change"] = (value["after"] - value["before"]).round(4)
    return _by_variant(out.reset_index(), *keys[1:])


def _by_variant(frame: pd.DataFrame, *then: str) -> pd.DataFrame:
    order = sorted(
        range(len(frame)),
        key=lambda i: (
            variant_sort_key(str(frame["variant"].iloc[i])),
            *(str(frame[c].iloc[i]).zfill(6) for c in then),
        ),
    )
    return frame.iloc[order].reset_index(drop=True)
