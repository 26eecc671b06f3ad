"""Curves and scatters, re-exported by :mod:`pipeline.figures.plots`: cumulative ablation (one small panel per model),
whole-layer ablation, layer probes and control-task selectivity (bias against size and accuracy:
:mod:`pipeline.figures.scatter`).

Models not fit to be read (``flags``: untrained classifier head, collapsed predictions, no better than the majority
class) are drawn grey or dashed and named "(not fit)".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from pipeline.figures.style import (
    DOUBLE_COLUMN_IN,
    FIGURE_SIZES,
    FLAG_COLOUR,
    GREY,
    PALETTE,
    grown_height,
    label,
    styled,
)
from pipeline.variants import variant_sort_key

__all__ = ["cumulative_curve", "layer_effects", "probe_curves", "selectivity_curves"]

_ORDER_LOOK = {"most": ("#D55E00", "-", "most important first"), "least": ("#0072B2", "--", "least important first")}


def _variant_colours(variants: Iterable[str]) -> dict[str, str]:
    ordered = sorted(set(variants), key=variant_sort_key)
    return {v: PALETTE[i % len(PALETTE)] for i, v in enumerate(ordered)}


def _name(variant: str, flags: Mapping | None) -> str:
    return variant + (" (not fit)" if flags and variant in flags else "")


def _band(ax, x, rows: pd.DataFrame, colour: str, **line) -> None:
    ax.plot(x, rows["value"].to_numpy(), color=colour, lw=1, **line)
    if rows["ci_low"].notna().any():
        ax.fill_between(x, rows["ci_low"].to_numpy(), rows["ci_high"].to_numpy(), color=colour, alpha=0.2, lw=0)


_CUMULATIVE_METRICS = (("ablated_score", "ablated_accuracy"), ("bias", "accuracy"), ("delta_score", "delta_accuracy"))


@styled
def cumulative_curve(frame: pd.DataFrame, *, flags: Mapping[str, str] | None = None, ncols: int = 4) -> Figure:
    """Cumulative head-ablation curves, one small panel per model and metric (the bias score above, accuracy
    below; wrapping after ``ncols`` models), x = fraction of heads ablated, most important first (solid) and least
    important first (dashed) with CI bands, and the random-order baseline (mean and min-max band over the seeded
    random orders, rows whose ``order`` starts with ``random``) when the table has it; the legend says when it has
    not. Seeds averaged. Double column, 7.0 in wide, 2.3 in high per row of models (+2.1 in per further row)."""
    missing = [c for c in ("step", "order") if c not in frame]
    if missing:
        raise ValueError(f"the cumulative table lacks column(s) {missing}; it is written by the ablation stage.")
    rows = frame.dropna(subset=["step", "order"])
    rows = rows[rows["order"].astype(str) != ""]
    present = set(rows["metric"])
    metrics = next((list(pair) for pair in _CUMULATIVE_METRICS if set(pair) & present), sorted(present))
    metrics = [m for m in metrics if m in present]
    if not metrics:
        raise ValueError("the cumulative table has no curve rows (rows with a step and an order).")
    x_col = "fraction" if "fraction" in rows and rows["fraction"].notna().all() else "step"
    variants = sorted(set(rows["variant"]), key=variant_sort_key)
    ncols = max(1, min(ncols, len(variants)))
    groups = -(-len(variants) // ncols)
    fig = Figure(figsize=(DOUBLE_COLUMN_IN, grown_height("cumulative_curve", groups)), layout="constrained")
    axes = fig.subplots(groups * len(metrics), ncols, squeeze=False)
    random = rows["order"].astype(str).str.startswith("random")
    first_of = {}
    for i, variant in enumerate(variants):
        g, c = divmod(i, ncols)
        for j, metric in enumerate(metrics):
            ax = axes[g * len(metrics) + j, c]
            if metric in first_of:
                ax.sharey(first_of[metric])
            first_of.setdefault(metric, ax)
            part = rows[(rows["variant"] == variant) & (rows["metric"] == metric)]
            curves = part[~random.loc[part.index]].groupby(["order", x_col])[["value", "ci_low", "ci_high"]].mean()
            for order, curve in curves.reset_index().groupby("order"):
                colour, ls, _ = _ORDER_LOOK.get(str(order), ("#444444", ":", str(order)))
                _band(ax, curve[x_col].to_numpy(), curve, colour, ls=ls)
            shuffled = part[random.loc[part.index]]
            if len(shuffled):
                by_x = shuffled.groupby(x_col)["value"]
                x = by_x.mean().index.to_numpy()
                ax.plot(x, by_x.mean().to_numpy(), color=GREY, lw=0.8, ls="-.")
                ax.fill_between(x, by_x.min().to_numpy(), by_x.max().to_numpy(), color=GREY, alpha=0.25, lw=0)
            ax.set_title(
                _name(variant, flags) if j == 0 else "",
                fontsize=6,
                color=FLAG_COLOUR if flags and variant in flags else "black",
            )
            ax.set_ylabel(label(metric, part).replace(" with heads ablated", "") if c == 0 else "", fontsize=6)
            ax.set_xlabel(
                ("fraction ablated" if x_col == "fraction" else "heads ablated") if j == len(metrics) - 1 else "",
                fontsize=6,
            )
            ax.tick_params(labelsize=5)
            ax.locator_params(nbins=4)
    for ax in axes.ravel():
        if not ax.has_data():
            ax.set_visible(False)
    handles = [Line2D([], [], color=c, ls=s, lw=1, label=t) for c, s, t in _ORDER_LOOK.values()]
    if random.any():
        handles.append(Patch(fc=GREY, alpha=0.4, label=f"random order: mean, min-max of {_n_random(rows[random])}"))
    else:
        handles.append(Line2D([], [], ls="", label="(no random-order curves in the table)"))
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=6)
    return fig


def _n_random(rows: pd.DataFrame) -> str:
    keys = [c for c in ("order", "draw") if c in rows]
    n = rows.drop_duplicates(keys).shape[0]
    return f"{n} seeded orders"


@styled
def layer_effects(
    frame: pd.DataFrame,
    *,
    metrics: tuple[str, ...] = ("delta_score", "delta_accuracy"),
    flags: Mapping[str, str] | None = None,
) -> Figure:
    """Whole-layer ablation: the effect of removing every head of a layer, per model on normalised depth
    (layer + 1) / L with CIs, one panel per metric, zero line. Double column, 7.0 x 2.3 in."""
    rows = frame[(frame["unit"] == "layer") & frame["metric"].isin(metrics)]
    if rows.empty:
        raise ValueError(f"no layer rows for {list(metrics)}; whole-layer ablation writes them (ablation_modes).")
    present = [m for m in metrics if m in set(rows["metric"])]
    colours = _variant_colours(rows["variant"])
    fig = Figure(figsize=FIGURE_SIZES["layer_effects"], layout="constrained")
    for ax, metric in zip(fig.subplots(1, len(present), squeeze=False)[0], present):
        part = rows[rows["metric"] == metric]
        for k, (variant, group) in enumerate(sorted(part.groupby("variant"), key=lambda kv: variant_sort_key(kv[0]))):
            means = group.groupby("layer")[["value", "ci_low", "ci_high"]].mean()
            depth = (means.index.to_numpy() + 1) / (int(group["layer"].max()) + 1) + (k - len(colours) / 2) * 0.008
            err = np.abs(np.nan_to_num(np.stack([means["value"] - means["ci_low"], means["ci_high"] - means["value"]])))
            ax.errorbar(
                depth,
                means["value"],
                yerr=err,
                fmt="o",
                ms=3,
                lw=0.8,
                capsize=1.5,
                color=colours[variant],
                mfc="none" if flags and variant in flags else colours[variant],
            )
        ax.axhline(0, color="#888888", lw=0.5)
        ax.set_xlabel("depth (l+1)/L")
        ax.set_ylabel(label(metric, part).replace("when ablated", "when the layer is ablated"), fontsize=6)
        ax.set_xlim(0, 1.08)
    handles = [
        Line2D([], [], ls="", marker="o", color=c, mfc="none" if flags and v in flags else c, label=_name(v, flags))
        for v, c in colours.items()
    ]
    fig.legend(handles=handles, loc="outside right upper", fontsize=6)
    return fig


def _depth(rows: pd.DataFrame) -> pd.DataFrame:
    if "depth" not in rows or rows["depth"].isna().any():
        rows = rows.assign(depth=rows["layer"] / rows.groupby("variant")["layer"].transform("max"))
    return rows.assign(pooling="") if "pooling" not in rows else rows


@styled
def probe_curves(
    frame: pd.DataFrame, *, metric: str = "probe_accuracy", flags: Mapping[str, str] | None = None
) -> Figure:
    """Probe ``metric`` on normalised depth with CI bands: one panel per probed attribute (subset gender,
    label), colour = variant, line style = pooling, dotted = chance (``chance`` column); seeds averaged. Layer 0
    is the embeddings, so depth is layer / n_layers unless the table has a ``depth`` column. Double column,
    7.0 x 2.3 in."""
    rows = frame[(frame["unit"] == "layer") & (frame["metric"] == metric)]
    if rows.empty:
        raise ValueError(f"no layer rows for metric {metric!r}; metrics present: {sorted(set(frame['metric']))}.")
    rows = _depth(rows)
    subsets = sorted(set(rows["subset"]), key=lambda s: (s != "gender", s))
    colours, styles = _variant_colours(rows["variant"]), dict(zip(sorted(set(rows["pooling"])), ("-", "--", ":")))
    fig = Figure(figsize=FIGURE_SIZES["probe_curves"], layout="constrained")
    for ax, subset in zip(fig.subplots(1, len(subsets), squeeze=False)[0], subsets):
        part = rows[rows["subset"] == subset]
        lines = part.groupby(["variant", "pooling", "depth"])[["value", "ci_low", "ci_high"]].mean().reset_index()
        for (variant, pooling), line in lines.groupby(["variant", "pooling"]):
            _band(ax, line["depth"].to_numpy(), line, colours[variant], ls=styles[pooling], marker="o", ms=2)
        if "chance" in part and part["chance"].notna().any():
            ax.axhline(part["chance"].mean(), color="#888888", lw=0.6, ls=":", label="chance")
        ax.set_title(f"{subset} probe" if subset else "probe")
        ax.set_xlabel("normalised depth (0 = embeddings)")
        ax.set_ylabel(label(metric))
        ax.set_xlim(-0.02, 1.02)
    handles = [Line2D([], [], color=c, lw=1, label=_name(v, flags)) for v, c in colours.items()]
    handles += [Line2D([], [], color="#444444", ls=s, lw=1, label=p) for p, s in styles.items() if p]
    handles.append(Line2D([], [], color="#888888", ls=":", lw=0.6, label="chance"))
    fig.legend(handles=handles, loc="outside right upper")
    return fig


@styled
def selectivity_curves(frame: pd.DataFrame, *, flags: Mapping[str, str] | None = None) -> Figure:
    """Control tasks (Hewitt & Liang 2019): probe and control-task accuracy per layer (left) and their difference,
    the selectivity (right; 0 = the probe learns no more than a random relabelling), on normalised depth with CIs.
    Double column, 7.0 x 2.3 in."""
    rows = _depth(frame[frame["unit"] == "layer"])
    if not {"selectivity", "probe_accuracy"} & set(rows["metric"]):
        raise ValueError("the control table has no selectivity or probe_accuracy rows; the probes stage writes them.")
    colours = _variant_colours(rows["variant"])
    fig = Figure(figsize=FIGURE_SIZES["selectivity_curves"], layout="constrained")
    left, right = fig.subplots(1, 2)
    for (variant, metric), part in rows.groupby(["variant", "metric"]):
        line = part.groupby("depth")[["value", "ci_low", "ci_high"]].mean().reset_index()
        if metric in ("probe_accuracy", "control_accuracy"):
            _band(
                left,
                line["depth"].to_numpy(),
                line,
                colours[variant],
                marker="o",
                ms=2,
                ls="-" if metric == "probe_accuracy" else "--",
            )
        elif metric == "selectivity":
            _band(right, line["depth"].to_numpy(), line, colours[variant], marker="o", ms=2)
    right.axhline(0, color="#888888", lw=0.6, ls=":")
    left.set_ylabel("accuracy")
    right.set_ylabel("selectivity (probe - control)")
    for ax in (left, right):
        ax.set_xlabel("normalised depth (0 = embeddings)")
        ax.set_xlim(-0.02, 1.02)
    handles = [Line2D([], [], color=c, lw=1, label=_name(v, flags)) for v, c in colours.items()]
    handles += [
        Line2D([], [], color="#444444", lw=1, label="gender probe"),
        Line2D([], [], color="#444444", ls="--", lw=1, label="control task"),
    ]
    fig.legend(handles=handles, loc="outside right upper")
    return fig
