"""The look shared by every figure: paper sizes, colour-blind-safe colours, metric labels (with what an effect is
measured on and which sign means more bias), fonts, and the row selection that picks one variant / subset / mode /
pooling out of a tidy table (:mod:`pipeline.figures.plots`)."""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from contextlib import contextmanager

import matplotlib
import numpy as np
import pandas as pd

from pipeline.compress.registry import method_markers  # one marker per method family, from its record
from pipeline.metrics.registry import metric_facts
from pipeline.variants import variant_sort_key

__all__ = [
    "DOUBLE_COLUMN_IN",
    "DPI",
    "FIGURE_SIZES",
    "SINGLE_COLUMN_IN",
    "adds_bias",
    "bias_sign",
    "colourbar_label",
    "fair_reference",
    "label",
    "method_markers",
    "model_total",
    "score_name",
    "select",
    "shared_colourbar_label",
    "style",
    "styled",
    "tick_step",
]

SINGLE_COLUMN_IN = 3.35
DOUBLE_COLUMN_IN = 7.0
DPI = 300
FIGURE_SIZES: dict[str, tuple[float, float]] = {  # (width, height) in inches of one row / ten bars; see grown_height
    "head_heatmap": (SINGLE_COLUMN_IN, 2.6),
    "side_by_side_heatmaps": (DOUBLE_COLUMN_IN, 2.6),
    "cumulative_curve": (DOUBLE_COLUMN_IN, 2.3),
    "probe_curves": (DOUBLE_COLUMN_IN, 2.3),
    "bias_vs_compression": (DOUBLE_COLUMN_IN, 2.6),
    "token_attributions": (DOUBLE_COLUMN_IN, 2.0),
    "top_neurons": (SINGLE_COLUMN_IN, 2.6),
    "layer_effects": (DOUBLE_COLUMN_IN, 2.3),
    "selectivity_curves": (DOUBLE_COLUMN_IN, 2.3),
    "attention_pattern": (DOUBLE_COLUMN_IN, 3.0),
    "circuit_figure": (DOUBLE_COLUMN_IN, 2.8),
    "twin_attention": (DOUBLE_COLUMN_IN, 3.0),
    "lineage_effects": (SINGLE_COLUMN_IN, 2.6),
}
ROW_HEIGHT_IN = {"side_by_side_heatmaps": 1.9, "cumulative_curve": 2.1, "layer_effects": 1.7}  # per extra row
BAR_HEIGHT_IN = 0.13  # top_neurons: per bar beyond ten
SIGNED_CMAP, UNSIGNED_CMAP = "RdBu_r", "viridis"  # ColorBrewer RdBu is colour-blind safe
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
GREY, FLAG_COLOUR = "#9a9a9a", "#a0522d"  # models not fit to be read; the text that says so
ORDER_COLOURS = {"none": "#999999", "before": "#0072B2", "after": "#D55E00", "both": "#009E73", "ft": "#000000"}
ORDER_LABELS = {
    "none": "not fine-tuned",
    "before": "fine-tuned before",
    "after": "fine-tuned after",
    "both": "fine-tuned before + after",
    "ft": "fine-tuned teacher",
}
UNSIGNED_METRICS = frozenset({"grad_importance", "probe_accuracy", "probe_balanced_accuracy", "probe_auc"})
SCORE_NAMES = {
    "cf_gap": "cf gap",
    "cf_skew_gap": "skew gap",
    "cf_gap from twin": "cf gap (twin)",
    "cf_skew_gap from twin": "skew gap (twin)",
    "skew_class_prob": "skew P(true class)",
    "seat": "SEAT d",
    "prob": "P(true class)",
    "true_class_prob": "P(true class)",
    "loss": "task loss",
    "pronoun_gap": "pronoun gap",
}
METRIC_LABELS = {
    "delta_accuracy": "Δ accuracy when ablated",
    "delta_score": "Δ {score} when ablated",
    "ablated_score": "{score} with heads ablated",
    "ablated_accuracy": "accuracy with heads ablated",
    "token_ig": "integrated gradients ({score})",
    "grad_importance": "importance E|∂{score}/∂g|",
    "ig": "integrated gradients ({score})",
    "indirect_effect": "indirect effect on P(true class)",
    "atp_estimate": "AtP estimate ({score})",
    "probe_accuracy": "probe accuracy",
    "probe_balanced_accuracy": "probe balanced accuracy",
    "probe_auc": "probe ROC AUC",
    "selectivity": "selectivity (probe - control)",
}
# Which sign of a unit's effect adds to the model's bias, relative to the model's own score (its "total"):
# "same" = a unit adds bias when its effect has the sign of the total; "opposite" = when it has the other sign
# (removing it moves the score towards 0). The total is read from the model row named here.
_SIGN_RULES = {
    "delta_score": ("opposite", "intact_score"),
    "ig": ("same", "ig_total"),
    "indirect_effect": ("same", "total_effect"),
    "token_ig": ("same", None),
    "atp_estimate": ("same", "total_effect"),
}
_SIGN_WORDS = {
    "delta_score": "+ = removing it raises the {score}",
    "ig": "+ = it raises the {score}",
    "indirect_effect": "+ = it carries the shift to the female twin",
    "token_ig": "+ = it raises the {score}",
    "atp_estimate": "+ = it raises the {score}",
    "delta_accuracy": "- = the head helps the task",
    "grad_importance": "unsigned: higher = more influence",
    "probe_accuracy": "higher = more gender information",
}
_PREFERRED = {"subset": ("", "all", "gender"), "mode": ("single",), "pooling": ("cls", "mean"), "baseline": ("zero",)}
_RC = {
    "font.size": 7,
    "axes.titlesize": 8,
    "axes.labelsize": 7,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "figure.titlesize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "savefig.dpi": DPI,
    "svg.fonttype": "none",
    "svg.hashsalt": "bias-atlas",
    "pdf.fonttype": 42,
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


def grown_height(name: str, rows: int = 1, bars: int = 10) -> float:
    """Height (in) of figure ``name`` with ``rows`` rows of panels (or ``bars`` bars for ``top_neurons``)."""
    height = FIGURE_SIZES[name][1]
    if name == "top_neurons":
        return height + BAR_HEIGHT_IN * max(0, bars - 10)
    return height + ROW_HEIGHT_IN.get(name, height) * max(0, rows - 1)


def tick_step(n: int, span_in: float, label_in: float = 0.16) -> int:
    """A tick step for ``n`` integer positions over ``span_in`` inches so that labels (``label_in`` wide) never touch."""
    fits = max(1, int(span_in / label_in))
    return max(1, math.ceil(n / fits))


def _score_of(rows: pd.DataFrame | None) -> str:
    scores = sorted(set(rows["score"].dropna().astype(str))) if rows is not None and "score" in rows else []
    scores = [s for s in scores if s]
    return SCORE_NAMES.get(scores[0], scores[0]) if len(scores) == 1 else "score"


def label(metric: str, rows: pd.DataFrame | None = None) -> str:
    """Axis label of ``metric`` (bias metrics: their family's record); ``{score}`` is filled from the rows' ``score``
    column (cf_gap -> "cf gap")."""
    facts = metric_facts(metric)
    text = facts.label if facts is not None else METRIC_LABELS.get(metric, metric)
    return text.replace("{score}", _score_of(rows))


def fair_reference(metric: str) -> tuple[float | None, str]:
    """(the value of a fair model, how to read the axis) of a bias metric, from its family's record; (None, "")
    when unknown."""
    facts = metric_facts(metric)
    return (facts.fair, facts.reading) if facts is not None and facts.fair is not None else (None, "")


def model_total(frame: pd.DataFrame | None, metric: str) -> float | None:
    """The model's own score behind the unit effects of ``metric`` (mean over the rows' variants and seeds), e.g. the
    intact counterfactual gap behind ablation deltas; None when the frame has no such model row."""
    rule = _SIGN_RULES.get(metric)
    if frame is None or rule is None or rule[1] is None or "metric" not in frame:
        return None
    rows = frame[(frame["unit"] == "model") & (frame["metric"] == rule[1])]
    if "mode" in rows and (rows["mode"].fillna("") == "single").any():
        rows = rows[rows["mode"].fillna("") == "single"]
    values = rows["value"].dropna()
    return float(values.mean()) if len(values) else None


def bias_sign(metric: str, total: float | None) -> int | None:
    """The sign (+1 / -1) of a unit effect of ``metric`` that adds to the model's bias, given the model's own score
    ``total`` (:func:`model_total`); None when the metric has no such rule or the total is unknown or 0."""
    rule = _SIGN_RULES.get(metric)
    if rule is None or total is None or not np.isfinite(total) or total == 0:
        return None
    return int(np.sign(total)) * (1 if rule[0] == "same" else -1)


def adds_bias(metric: str, total: float | None) -> str:
    """The colour of a unit effect of ``metric`` that adds to the bias of a model whose own score is ``total``:
    ``"red (+)"``, ``"blue (-)"``, or ``""`` when :func:`bias_sign` has no answer."""
    sign = bias_sign(metric, total)
    return "" if sign is None else "red (+)" if sign > 0 else "blue (-)"


def score_name(metric: str, rows: pd.DataFrame | None = None) -> str:
    """What the model's own score behind ``metric`` is called ("cf gap", "skew gap", ...)."""
    return "cf gap" if metric == "indirect_effect" else _score_of(rows)  # patching's total effect is the gap


def colourbar_label(metric: str, rows: pd.DataFrame | None = None, total: float | None = None) -> str:
    """Two lines for a colour bar: what the effect is measured on, and which sign means more bias.

    With the model's own score ``total`` (e.g. its counterfactual gap, :func:`model_total`), the second line names the
    colour that adds to the bias (bias = |gap|): for ablation a head adds bias when removing it moves the score
    towards 0 (delta of the other sign); for IG and patching when its effect has the sign of the total.
    """
    first = label(metric, rows)
    words = _SIGN_WORDS.get(metric, "").replace("{score}", _score_of(rows))
    if adds_bias(metric, total):
        words = f"model {score_name(metric, rows)} {total:+.2g}: {adds_bias(metric, total)} adds bias"
    return f"{first}\n{words}" if words else first


def shared_colourbar_label(metric: str, rows: pd.DataFrame | None, totals: Mapping[str, float | None]) -> str:
    """The colour bar of several models' maps: what is measured, and the colour that adds bias when every model
    (``totals``: model -> its own score) agrees; otherwise that each map's title names its own."""
    colours = {name: adds_bias(metric, total) for name, total in totals.items()}
    if not any(colours.values()):
        return colourbar_label(metric, rows)
    if len(set(colours.values())) == 1:
        return f"{label(metric, rows)}\n{next(iter(colours.values()))} adds bias in every model"
    return f"{label(metric, rows)}\nthe colour that adds bias differs: see each title"


def select(
    frame: pd.DataFrame, unit: str, metric: str, variant: str | None = None, *, all_variants: bool = False, **choices
) -> pd.DataFrame:
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
