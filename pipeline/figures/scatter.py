"""Bias against size and accuracy, one point per variant (method by marker, fine-tuning order by colour), re-exported
by :mod:`pipeline.figures.plots`. Models not fit to be read (``flags``) are drawn grey and named "(not fit)"; labels are
placed so that none overlaps.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from pipeline.figures.style import (
    FIGURE_SIZES,
    FLAG_COLOUR,
    GREY,
    ORDER_COLOURS,
    ORDER_LABELS,
    fair_reference,
    label,
    method_markers,
    select,
    styled,
)
from pipeline.variants import Variant

__all__ = ["bias_vs_compression"]


def _model_metric(frame: pd.DataFrame, metric: str, subset: str | None) -> pd.DataFrame:
    rows = select(frame[frame["value"].notna()], "model", metric, all_variants=True, subset=subset)  # not skipped
    return rows.groupby(["variant", "seed"])[["value", "ci_low", "ci_high"]].mean()


def _accuracy(task: pd.DataFrame, bias: pd.DataFrame) -> pd.DataFrame:
    """Accuracy per (variant, seed), from the bias table (which has intervals) when the task table has none."""
    acc = _model_metric(task, "accuracy", None)
    if acc["ci_low"].notna().any() or "accuracy" not in set(bias["metric"]):
        return acc
    try:
        with_ci = _model_metric(bias, "accuracy", "all")
    except ValueError:
        return acc
    return with_ci.combine_first(acc)


def _err(point: pd.Series, key: str) -> np.ndarray:
    """Error-bar lengths (2, 1) below and above a point from its CI (0 where there is none)."""
    value, low, high = point[key, "value"], point[key, "ci_low"], point[key, "ci_high"]
    return np.abs(np.nan_to_num(np.array([[value - low], [high - value]])))


def _family(method: str) -> str:
    return next((f for f in method_markers() if method.startswith(f)), "other")


_OFFSETS = [
    (dx * r, dy * r) for r in (1, 2, 3, 4, 5) for dx, dy in ((4, 3), (4, -8), (-4, 3), (-4, -8), (0, 9), (0, -14))
]  # points; spiralling outwards


def _place_labels(fig: Figure, ax, points: list[tuple[float, float, str, str]]) -> int:
    """Write each label beside its point where it overlaps no label placed before and no other point (greedy over
    offsets spiralling outwards, with a leader line beyond the nearest ring); labels stay inside the axes.
    ``points``: (x, y, text, colour). Returns how many labels found no free place and were left out."""
    renderer = fig.canvas.get_renderer()
    box = ax.get_window_extent(renderer)
    markers = [ax.transData.transform((x, y)) for x, y, _, _ in points]
    placed, left_out = [], 0
    for x, y, text, colour in points:
        for dx, dy in _OFFSETS:
            far = abs(dx) > 4 or abs(dy) > 14
            artist = ax.annotate(
                text,
                (x, y),
                xytext=(dx, dy),
                textcoords="offset points",
                fontsize=5,
                color=colour,
                ha="left" if dx > 0 else "right" if dx < 0 else "center",
                va="center",
                arrowprops={"arrowstyle": "-", "lw": 0.3, "color": "#999999"} if far else None,
            )
            extent = artist.get_window_extent(renderer)
            inside = box.x0 <= extent.x0 and extent.x1 <= box.x1 and box.y0 <= extent.y0 and extent.y1 <= box.y1
            clear = not any(extent.overlaps(other) for other in placed) and not any(
                extent.x0 - 2 <= mx <= extent.x1 + 2 and extent.y0 - 2 <= my <= extent.y1 + 2 for mx, my in markers
            )
            if inside and clear:
                placed.append(extent)
                break
            artist.remove()
        else:
            left_out += 1
    return left_out


@styled
def bias_vs_compression(
    task: pd.DataFrame,
    bias: pd.DataFrame,
    *,
    bias_metric: str = "gap_rms",
    subset: str | None = None,
    flags: Mapping | None = None,
) -> Figure:
    """Bias against model size and against accuracy, one point per (variant, seed) with CI bars on both axes;
    marker = compression method, colour = fine-tuning order, open marker = trained on another training set than
    the original (``@balanced``; :meth:`Variant.parse`), grey = not fit to be read (``flags``: variant or
    (variant, seed) -> reason). A dotted line marks the value of a fair model; the y label says which way is
    fairer. Labels (one per variant) never overlap. Double column, 7.0 x 2.6 in."""
    flags = flags or {}
    size_metric = "size_mb" if "size_mb" in set(task["metric"]) else "params"
    points = pd.concat(
        {
            "size": _model_metric(task, size_metric, None),
            "acc": _accuracy(task, bias),
            "bias": _model_metric(bias, bias_metric, subset),
        },
        axis=1,
    ).dropna(subset=[("bias", "value")])
    if points.empty:
        raise ValueError(f"no variant has both task metrics and {bias_metric!r}; check the selected variants.")
    fig = Figure(figsize=FIGURE_SIZES["bias_vs_compression"], layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2, sharey=True)
    recipes = {v: Variant.parse(v) for v, _ in points.index}
    unfit = lambda v, s: flags.get((v, s)) or flags.get(v)
    for (variant, seed), p in points.iterrows():
        recipe = recipes[variant]
        colour = GREY if unfit(variant, seed) else ORDER_COLOURS[recipe.order]
        look = {
            "marker": method_markers().get(_family(recipe.method), "h"),
            "color": colour,
            "ms": 4,
            "lw": 0.7,
            "mfc": "none" if recipe.training_set else colour,
            "capsize": 1.2,
        }
        for ax, key in zip(axes, ("size", "acc")):
            ax.errorbar(p[key, "value"], p["bias", "value"], xerr=_err(p, key), yerr=_err(p, "bias"), **look)
    reference, reading = fair_reference(bias_metric)
    for ax in axes:
        if reference is not None:
            ax.axhline(reference, color="#666666", lw=0.6, ls=":")
        ax.margins(x=0.12, y=0.12)
    axes[0].set_xlabel("size (MB)" if size_metric == "size_mb" else "parameters")
    axes[1].set_xlabel("accuracy")
    axes[0].set_ylabel(label(bias_metric) + (f"\n({reading})" if reading else ""))
    families = sorted(
        {_family(r.method) for r in recipes.values()},
        key=lambda f: list(method_markers()).index(f) if f in method_markers() else len(method_markers()),
    )
    orders = sorted({r.order for r in recipes.values()}, key=list(ORDER_COLOURS).index)
    handles = [Line2D([], [], ls="", marker=method_markers().get(f, "h"), color="#444444", label=f) for f in families]
    handles += [Line2D([], [], ls="", marker="o", color=ORDER_COLOURS[o], label=ORDER_LABELS[o]) for o in orders]
    handles += [
        Line2D([], [], ls="", marker="o", mfc="none", color="#444444", label=f"trained on {name}")
        for name in sorted({r.training_set for r in recipes.values()} - {None})
    ]
    if any(unfit(v, s) for v, s in points.index):
        handles.append(Line2D([], [], ls="", marker="o", color=GREY, label="grey: not fit to be read"))
    if reference is not None:
        handles.append(Line2D([], [], color="#666666", ls=":", lw=0.6, label="fair model"))
    fig.legend(handles=handles, loc="outside right upper", fontsize=6)
    fig.canvas.draw()  # lay out first, so that labels are placed in their final positions
    fig.set_layout_engine("none")
    several_seeds = points.index.get_level_values("seed").nunique() > 1
    labelled = points if len(points) <= 16 else points.groupby(level="variant").head(1)
    left_out = 0
    for ax, key in zip(axes, ("size", "acc")):
        labels = [
            (
                p[key, "value"],
                p["bias", "value"],
                v
                + (f" s{s}" if several_seeds and len(labelled) == len(points) else "")
                + (" (not fit)" if unfit(v, s) else ""),
                FLAG_COLOUR if unfit(v, s) else "#444444",
            )
            for (v, s), p in labelled.iterrows()
        ]
        left_out = max(left_out, _place_labels(fig, ax, labels))
    if left_out:
        fig.text(
            0.99,
            0.01,
            f"{left_out} labels left out (no free place)",
            ha="right",
            va="bottom",
            fontsize=5,
            color="#666666",
        )
    return fig
