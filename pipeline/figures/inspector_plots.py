"""The Head inspector's figures, re-exported by :mod:`pipeline.figures.plots`: the twin-difference attention
(:func:`twin_attention`: one head's attention on a text minus on its gender-swapped twin, beside a layer x head
summary of that difference; :mod:`pipeline.viewer.twin_attention`) and a head's signed lineage
(:func:`lineage_effects`: its effect in the teacher and its counterparts; :mod:`pipeline.viewer.viewer_lineage`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import Normalize, TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from pipeline.figures.style import (
    DOUBLE_COLUMN_IN,
    FIGURE_SIZES,
    FLAG_COLOUR,
    GREY,
    PALETTE,
    SIGNED_CMAP,
    UNSIGNED_CMAP,
    styled,
    tick_step,
)

__all__ = ["SUMMARY_LABEL", "lineage_effects", "twin_attention"]

SUMMARY_LABEL = "mean row L1 of\nattention(text) − attention(twin)"


@styled
def twin_attention(
    tokens: Sequence[str],
    difference: np.ndarray,
    summary: np.ndarray,
    *,
    selected: tuple[int, int],
    marked: Sequence[int] = (),
    title: str = "",
) -> Figure:
    """Left: the signed difference ``difference`` (seq, seq) of one head (rows = query, columns = key tokens; red:
    the text attends more, blue: the twin does), the gendered tokens (positions ``marked``) starred and in brown.
    Right: ``summary`` (layers, heads), the mean over query rows of the L1 distance of the two rows (0 to 2), pruned
    heads (NaN) grey, head ``selected`` (layer, head) boxed. Double column, 7.0 x 3.0 in.

    Args:
        tokens: the tokens, written ``text/twin`` where the two differ.
        difference: attention(text) − attention(twin) of the selected head.
        summary: the per-head summary of the difference.
        selected: (layer, head) of the left panel.
        marked: positions of the tokens that differ between text and twin.
        title: figure title (the model and head).
    """
    if difference.ndim != 2 or summary.ndim != 2:
        raise ValueError(
            f"difference must be (seq, seq) and summary (layers, heads): {difference.shape}, {summary.shape}"
        )
    fig = Figure(figsize=FIGURE_SIZES["twin_attention"], layout="constrained")
    left, right = fig.subplots(1, 2, width_ratios=[3, 2])
    limit = float(np.nanmax(np.abs(difference), initial=0.0)) or 1.0  # all NaN: a pruned head
    image = left.imshow(
        difference, cmap=SIGNED_CMAP, norm=TwoSlopeNorm(0.0, -limit, limit), aspect="auto", interpolation="nearest"
    )
    n, marked = len(tokens), set(marked)
    step = tick_step(n, DOUBLE_COLUMN_IN * 0.45, 0.1)
    ticks = sorted(marked | {i for i in range(0, n, step) if all(abs(i - m) >= step for m in marked)})
    names = [("*" if i in marked else "") + tokens[i][:14] for i in ticks]
    left.set_xticks(ticks, names, rotation=90, fontsize=5)
    left.set_yticks(ticks, names, fontsize=5)
    for labels in (left.get_xticklabels(), left.get_yticklabels()):
        for i, text in zip(ticks, labels):
            if i in marked:
                text.set_color(FLAG_COLOUR)
    left.set_xlabel("attended token (key)", fontsize=6)
    left.set_ylabel("query token", fontsize=6)
    left.set_title(f"layer {selected[0]}, head {selected[1]}; *: gendered word", fontsize=6)
    left.spines[:].set_visible(False)
    fig.colorbar(image, ax=left, shrink=0.8).set_label("attention(text) − attention(twin)", fontsize=6)
    cmap = colormaps[UNSIGNED_CMAP].with_extremes(bad=GREY)  # pruned heads
    top = float(np.nanmax(summary)) if np.isfinite(summary).any() else 0.0
    grid = right.imshow(summary, cmap=cmap, norm=Normalize(0.0, top or 1.0), aspect="auto", interpolation="nearest")
    layers, heads = summary.shape
    right.set_xticks(range(heads), [str(h) for h in range(heads)], fontsize=5)
    right.set_yticks(range(layers), [str(layer) for layer in range(layers)], fontsize=5)
    right.set_xlabel("head", fontsize=6)
    right.set_ylabel("layer", fontsize=6)
    right.set_title("every head", fontsize=6)
    right.add_patch(
        Rectangle((selected[1] - 0.5, selected[0] - 0.5), 1, 1, fill=False, edgecolor=FLAG_COLOUR, linewidth=1.2)
    )
    fig.colorbar(grid, ax=right, shrink=0.8).set_label(SUMMARY_LABEL, fontsize=6)
    if title:
        fig.suptitle(title, fontsize=7)
    return fig


@styled
def lineage_effects(
    labels: Sequence[str],
    values: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    directions: Sequence[str],
    *,
    title: str = "",
) -> Figure:
    """One head's effect in the teacher and its counterparts: a dot per (model, layer, method) with its 95% interval,
    vermilion when it adds bias, blue when it reduces it, grey without a direction. Single column, 3.35 x 2.6 in.

    Args:
        labels: one per row (model, layer, method).
        values, low, high: the effect and its interval.
        directions: ``adds`` / ``reduces`` / "" per row (findings ``bias_units``).
        title: figure title (the head).
    """
    if not len(labels):
        raise ValueError("labels is empty; pass at least one effect.")
    fig = Figure(figsize=FIGURE_SIZES["lineage_effects"], layout="constrained")
    ax = fig.subplots()
    colours = {"adds": PALETTE[1], "reduces": PALETTE[0]}
    y = np.arange(len(labels))[::-1]
    for i, (v, lo, hi, d) in enumerate(zip(values, low, high, directions)):
        colour = colours.get(d, GREY)
        ax.errorbar(v, y[i], xerr=[[max(v - lo, 0.0)], [max(hi - v, 0.0)]] if np.isfinite([lo, hi]).all() else None,
                    fmt="o", color=colour, markersize=3, capsize=2, linewidth=0.8)  # fmt: skip
    ax.axvline(0.0, color=GREY, linewidth=0.6, linestyle=":")
    step = tick_step(len(labels), FIGURE_SIZES["lineage_effects"][1] - 0.8, 0.1)
    ax.set_yticks(y[::step], [labels[i][:40] for i in range(0, len(labels), step)], fontsize=5)
    ax.set_xlabel("effect (95% interval); vermilion adds bias, blue reduces it", fontsize=6)
    if title:
        ax.set_title(title, fontsize=7)
    return fig
