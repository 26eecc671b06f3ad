"""Mitigation figures: the bias-accuracy frontier of a run's variants and the bias-aware pruning curves.

Pure matplotlib on the findings tables (``frontier`` of :mod:`pipeline.findings.mitigation`, ``pruning_curve``
of :mod:`attribution.pruning_curve`), in the look of :mod:`pipeline.figures.style`.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from pipeline.figures.style import DOUBLE_COLUMN_IN, PALETTE, fair_reference, label, method_markers, styled
from pipeline.findings.mitigation import abs_interval

__all__ = ["frontier_figure", "pruning_curve_figure"]

_ORDER_LOOK = {
    "bias": ("#D55E00", "-", "bias effect first"),
    "importance": ("#0072B2", "--", "least important first"),
    "random": ("#666666", ":", "random (mean)"),
}
_SIGNED = ("cf_prob_gap", "cf_skew_gap", "cf_gap", "accuracy_gap")


def _errors(value: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    err = np.stack([value - low, high - value])
    return np.where(np.isfinite(err), np.abs(err), 0.0)


def _mitigation_colours(mitigations: Sequence[str]) -> dict[str, str]:
    names = sorted(set(mitigations) - {"none"})
    return {"none": "#000000", **{m: PALETTE[i % len(PALETTE)] for i, m in enumerate(names)}}


@styled
def frontier_figure(frontier: pd.DataFrame, metrics: Sequence[str] | None = None) -> Figure:
    """Bias against accuracy, one point per variant (seeds pooled) with interval bars on both axes, one panel per bias
    metric; marker = compression family, colour = mitigation, hollow and faint = not fit to be read. The point-estimate
    Pareto front of the fit variants (column ``pareto_point``) is drawn as the staircase it bounds (for each accuracy,
    the smallest |bias| reached at that accuracy or above); the variants no other significantly dominates (column
    ``pareto``, intervals taken into account) are numbered and named. Signed metrics are drawn as |value|.

    Raises:
        ValueError: the frame holds none of ``metrics`` (default: every metric present).
    """
    metrics = [m for m in (metrics or list(dict.fromkeys(frontier["metric"]))) if m in set(frontier["metric"])]
    if not metrics:
        raise ValueError(f"no frontier rows to draw; metrics present: {sorted(set(frontier['metric']))}.")
    colours = _mitigation_colours(frontier["mitigation"])
    fig = Figure(figsize=(DOUBLE_COLUMN_IN, 2.8), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, metric in zip(axes, metrics):
        rows = frontier[frontier["metric"] == metric]
        y, y_low, y_high = (rows[c].to_numpy(float) for c in ("value", "ci_low", "ci_high"))
        signed = metric in _SIGNED
        if signed:
            y, y_low, y_high = abs_interval(y, y_low, y_high)
        x, x_low, x_high = (rows[c].to_numpy(float) for c in ("accuracy", "accuracy_low", "accuracy_high"))
        xerr, yerr = _errors(x, x_low, x_high), _errors(y, y_low, y_high)
        for i, (_, row) in enumerate(rows.iterrows()):
            fit, colour = bool(row["fit"]), colours[row["mitigation"]]
            ax.errorbar(
                x[i],
                y[i],
                xerr=xerr[:, [i]],
                yerr=yerr[:, [i]],
                marker=method_markers().get(row["compression"], "h"),
                color=colour,
                mfc=colour if fit else "none",
                ms=4,
                lw=0.7,
                capsize=1.2,
                alpha=1.0 if fit else 0.55,
            )
        front = rows["pareto"].to_numpy(bool)  # not significantly dominated: numbered and named
        point = rows["pareto_point"].to_numpy(bool) if "pareto_point" in rows else front
        if point.any():  # the point-estimate front as the boundary it is: each accuracy's best |bias| to its right
            order = np.argsort(x[point])
            ax.step(x[point][order], y[point][order], where="pre", color="#444444", lw=0.9, ls="--", zorder=3)
        if front.any():
            order = np.argsort(-x[front])  # most accurate first
            fx, fy, names = x[front][order], y[front][order], rows["variant"].to_numpy()[front][order]
            for k, (xi, yi) in enumerate(zip(fx, fy), start=1):  # numbers, not names: names of close points collide
                ax.annotate(str(k), (xi, yi), xytext=(2.5, 2.5), textcoords="offset points", fontsize=6,
                            fontweight="bold", color="#222222", zorder=4)  # fmt: skip
            caption = "Not significantly dominated: " + ", ".join(f"{k} {n}" for k, n in enumerate(names, start=1))
            ax.set_title("\n".join(textwrap.wrap(caption, 52, break_on_hyphens=False)), fontsize=5.5, loc="left")
        reference, reading = fair_reference(metric)
        if reference is not None:
            ax.axhline(reference, color="#666666", lw=0.6, ls=":")
        ax.set_xlabel("accuracy")
        ax.set_ylabel(("|" + label(metric) + "|" if signed else label(metric)) + (f"\n({reading})" if reading else ""))
        ax.margins(x=0.1, y=0.12)
    handles = [
        Line2D([], [], ls="", marker=method_markers().get(f, "h"), color="#444444", label=f)
        for f in sorted(set(frontier["compression"]))
    ]
    handles += [
        Line2D([], [], ls="", marker="o", color=c, label=f"mitigation: {m}")
        for m, c in colours.items()
        if m in set(frontier["mitigation"])
    ]
    handles.append(Line2D([], [], color="#444444", lw=0.8, ls="--", label="Pareto front, point estimates (fit)"))
    if not frontier["fit"].astype(bool).all():
        handles.append(
            Line2D([], [], ls="", marker="o", mfc="none", color="#444444", label="hollow: not fit to be read")
        )
    fig.legend(handles=handles, loc="outside right upper", fontsize=6)
    return fig


@styled
def pruning_curve_figure(curve: pd.DataFrame, *, bias_metric: str = "abs_cf_gap", max_rows: int = 4) -> Figure:
    """Bias (left) and accuracy (right) against the share of heads removed, one line per order (bias effect first,
    least important first, random mean with its range over orders), bands = bootstrap intervals; one row per model
    (variant, seed), at most ``max_rows``.

    Raises:
        ValueError: the frame holds no rows of ``bias_metric``.
    """
    if bias_metric not in set(curve["metric"]):
        raise ValueError(f"no {bias_metric!r} rows; metrics present: {sorted(set(curve['metric']))}.")
    models = list(dict.fromkeys(zip(curve["variant"], curve["seed"])))[:max_rows]
    fig = Figure(figsize=(DOUBLE_COLUMN_IN, 2.1 * len(models) + 0.3), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(models), 2, squeeze=False)
    for (variant, seed), row in zip(models, axes):
        mine = curve[(curve["variant"] == variant) & (curve["seed"] == seed)]
        for ax, metric in zip(row, (bias_metric, "accuracy")):
            for order, (colour, ls, name) in _ORDER_LOOK.items():
                rows = mine[(mine["metric"] == metric) & (mine["order"] == order)].sort_values("step")
                if rows.empty:
                    continue
                x = rows["fraction"].to_numpy(float)
                ax.plot(x, rows["value"], color=colour, ls=ls, lw=1, label=name)
                ax.fill_between(x, rows["ci_low"], rows["ci_high"], color=colour, alpha=0.15, lw=0)
                if order == "random" and "order_min" in rows:
                    ax.fill_between(
                        x, rows["order_min"], rows["order_max"], color=colour, alpha=0.08, lw=0, hatch="////"
                    )
            ax.set_title(f"{variant} s{seed}", fontsize=7)
            ax.set_xlabel("share of heads removed")
            ax.set_ylabel("mean |counterfactual gap|" if metric == "abs_cf_gap" else label(metric))
    axes[0, 1].legend(fontsize=6)
    return fig
