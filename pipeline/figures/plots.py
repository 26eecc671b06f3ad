"""Matplotlib figures of run-folder tables, shared by the viewer (``app.py``) and ``bias-atlas figures``.

Every function takes tidy frames (:mod:`pipeline.schema`) and returns a :class:`matplotlib.figure.Figure` sized
for a two-column paper (single column 3.35 in, double column 7.0 in; :data:`FIGURE_SIZES`, growing with the number
of models or bars), drawn inside :func:`style` (7-8 pt fonts, constrained layout;
:func:`pipeline.figures.run_figures.figure_bytes` encodes PNG at 300 dpi). Signed effects (ablation deltas, IG, indirect
effects) use a diverging, colour-blind-safe map centred at zero, and their colour bar says what the effect is
measured on and which colour adds to the model's bias; unsigned ones (gradient importance, probe accuracy) use
viridis; categorical colours are Okabe & Ito's (2008) colour-blind-safe palette. Models not fit to be read are
named on every figure that shows them (``flag`` / ``flags`` arguments).

What is drawn follows docs/DESIGN.md section 6: head ablation and gradient importance (Michel et al. 2019), integrated
gradients (Sundararajan et al. 2017), activation patching (Vig et al. 2020), layer probes and control tasks (Hewitt
& Liang 2019), and the comparison of models on normalised depth (layer + 1) / n_layers (Leteno et al. 2023).
The functions live in :mod:`pipeline.figures.head_maps`, :mod:`pipeline.figures.curve_plots` and
:mod:`pipeline.figures.unit_plots`; this module is the one to import.
"""

from __future__ import annotations

from pipeline.figures.circuit_plot import circuit_figure
from pipeline.figures.curve_plots import cumulative_curve, layer_effects, probe_curves, selectivity_curves
from pipeline.figures.head_maps import (
    attention_pattern,
    depth_difference,
    depth_profile,
    head_heatmap,
    head_matrix,
    head_significance,
    side_by_side_heatmaps,
)
from pipeline.figures.inspector_plots import lineage_effects, twin_attention
from pipeline.figures.scatter import bias_vs_compression
from pipeline.figures.style import (
    DOUBLE_COLUMN_IN,
    DPI,
    FIGURE_SIZES,
    ORDER_COLOURS,
    ORDER_LABELS,
    PALETTE,
    SIGNED_CMAP,
    SINGLE_COLUMN_IN,
    UNSIGNED_CMAP,
    UNSIGNED_METRICS,
    colourbar_label,
    grown_height,
    label,
    method_markers,
    select,
    style,
    styled,
)
from pipeline.figures.unit_plots import describe_value, token_attributions, token_pieces, top_neurons

__all__ = [
    "DOUBLE_COLUMN_IN",
    "DPI",
    "FIGURE_SIZES",
    "ORDER_COLOURS",
    "ORDER_LABELS",
    "PALETTE",
    "SIGNED_CMAP",
    "SINGLE_COLUMN_IN",
    "UNSIGNED_CMAP",
    "UNSIGNED_METRICS",
    "attention_pattern",
    "bias_vs_compression",
    "circuit_figure",
    "colourbar_label",
    "cumulative_curve",
    "depth_difference",
    "depth_profile",
    "describe_value",
    "grown_height",
    "head_heatmap",
    "head_matrix",
    "head_significance",
    "label",
    "layer_effects",
    "lineage_effects",
    "method_markers",
    "probe_curves",
    "select",
    "selectivity_curves",
    "side_by_side_heatmaps",
    "style",
    "styled",
    "token_attributions",
    "token_pieces",
    "top_neurons",
    "twin_attention",
]
