"""The look shared by every figure: paper sizes, colour-blind-safe colours, metric labels, fonts, and the row
selection that picks one variant / subset / mode / pooling out of a tidy table (:mod:`attribution.plots`)."""

from __future__ import annotations

import functools
from contextlib import contextmanager

import matplotlib
import pandas as pd

from pipeline.variants import variant_sort_key

__all__ = ["DOUBLE_COLUMN_IN", "DPI", "FIGURE_SIZES", "SINGLE_COLUMN_IN", "label", "select", "style", "styled"]

SINGLE_COLUMN_IN = 3.35
DOUBLE_COLUMN_IN = 7.0
DPI = 300
FIGURE_SIZES: dict[str, tuple[float, float]] = {  # (width, height) in inches; PNG pixels = inches * DPI
    "head_heatmap": (SINGLE_COLUMN_IN, 2.6),
    "side_by_side_heatmaps": (DOUBLE_COLUMN_IN, 2.6),
    "cumulative_curve": (DOUBLE_COLUMN_IN, 2.3),
    "probe_curves": (DOUBLE_COLUMN_IN, 2.3),
    "bias_vs_compression": (DOUBLE_COLUMN_IN, 2.6),
    "token_attributions": (DOUBLE_COLUMN_IN, 2.0),
    "top_neurons": (SINGLE_COLUMN_IN, 2.6),
}
SIGNED_CMAP, UNSIGNED_CMAP = "RdBu_r", "viridis"  # ColorBrewer RdBu is colour-blind safe
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
ORDER_COLOURS = {"none": "#999999", "before": "#0072B2", "after": "#D55E00", "both": "#009E73", "ft": "#000000"}
ORDER_LABELS = {"none": "not fine-tuned", "before": "fine-tuned before", "after": "fine-tuned after",
                "both": "fine-tuned before + after", "ft": "fine-tuned teacher"}
METHOD_MARKERS = {"teacher": "*", "distil": "o", "tiny": "s", "prune": "^", "sparse": "v", "int8": "D", "hub": "X"}
UNSIGNED_METRICS = frozenset({"grad_importance", "probe_accuracy", "probe_balanced_accuracy", "probe_auc"})
METRIC_LABELS = {
    "delta_accuracy": "Δ accuracy when ablated",
    "delta_score": "Δ {score} when ablated", "ablated_score": "{score} with heads ablated",
    "ablated_accuracy": "accuracy with heads ablated", "token_ig": "integrated gradients ({score})",
    "grad_importance": "importance E|∂L/∂g|", "ig": "integrated gradients", "indirect_effect": "indirect effect",
    "probe_accuracy": "probe accuracy", "probe_balanced_accuracy": "probe balanced accuracy",
    "probe_auc": "probe ROC AUC", "selectivity": "selectivity (probe - control)", "gap_rms": "GAP_RMS (TPR gap)",
    "cf_prob_gap": "counterfactual gap", "cf_prob_abs_change": "|counterfactual change|",
}
_PREFERRED = {"subset": ("", "all", "gender"), "mode": ("single",), "pooling": ("cls", "mean"), "baseline": ("zero",)}
_RC = {
    "font.size": 7, "axes.titlesize": 8, "axes.labelsize": 7, "xtick.labelsize": 7, "ytick.labelsize": 7,
    "legend.fontsize": 7, "figure.titlesize": 8, "axes.spines.top": False, "axes.spines.right": False,
    "savefig.dpi": DPI, "svg.fonttype": "none", "svg.hashsalt": "bias-atlas", "pdf.fonttype": 42,
    "legend.frameon": False,
}


@contextmanager
def style():
    """Matplotlib settings of every figure here (fonts 7-8 pt, 300 dpi, editable text in SVG/PDF)."""
    with matplotlib.rc_context(_RC):
        yield


def styled(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with style():
            return fn(*args, **kwargs)

    return wrapper


def label(metric: str, rows: pd.DataFrame | None = None) -> str:
    """Axis label of ``metric``; ``{score}`` is filled from the rows' ``score`` column (e.g. cf_gap)."""
    scores = sorted(set(rows["score"].dropna())) if rows is not None and "score" in rows else []
    return METRIC_LABELS.get(metric, metric).replace("{score}", scores[0] if len(scores) == 1 else "score")


def select(frame: pd.DataFrame, unit: str, metric: str, variant: str | None = None, *, all_variants: bool = False,
            **choices) -> pd.DataFrame:
    """Rows of ``unit``/``metric`` for one variant (or all) and one subset / mode / pooling (all seeds kept)."""
    rows = frame[(frame["unit"] == unit) & (frame["metric"] == metric)]
    if rows.empty:
        present = sorted(set(frame.loc[frame["unit"] == unit, "metric"]))
        raise ValueError(f"no {unit} rows for metric {metric!r}; metrics present for unit {unit!r}: {present}.")
    variants = sorted(set(rows["variant"]), key=variant_sort_key)
    if variant is None and len(variants) > 1 and not all_variants:
        raise ValueError(f"the rows hold variants {variants}; pass variant= to choose one.")
    if variant is not None:
        rows = rows[rows["variant"] == variant]
        if rows.empty:
            raise ValueError(f"variant {variant!r} has no {metric!r} rows; variants present: {variants}.")
    for col, preferred in _PREFERRED.items():
        if col not in rows:
            continue
        values = rows[col].fillna("").astype(str)
        present = sorted(set(values))
        want = choices.get(col)
        if want is None and len(present) > 1:
            want = next((p for p in preferred if p in present), None)
            if want is None:
                raise ValueError(f"the {metric!r} rows hold {col} values {present}; pass {col}= to choose one.")
        if want is not None:
            rows = rows[values == str(want)]
            if rows.empty:
                raise ValueError(f"{col}={want!r} is not in the {metric!r} rows; {col} values present: {present}.")
    return rows
