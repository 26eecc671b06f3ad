"""Matplotlib figures of run-folder tables, shared by the viewer (``app.py``) and ``bias-atlas figures``.

Every function takes tidy frames (:mod:`pipeline.schema`) and returns a :class:`matplotlib.figure.Figure` sized
for a two-column paper (single column 3.35 in, double column 7.0 in; :data:`FIGURE_SIZES`), drawn inside
:func:`style` (7-8 pt fonts, constrained layout; :func:`pipeline.runs.figures.figure_bytes` encodes PNG at 300 dpi). Signed effects (ablation deltas, IG, indirect
effects) use a diverging, colour-blind-safe map centred at zero; unsigned ones (gradient importance, probe
accuracy) use viridis; categorical colours are Okabe & Ito's (2008) colour-blind-safe palette.

What is drawn follows DESIGN.md section 6: head ablation and gradient importance (Michel et al. 2019), integrated
gradients (Sundararajan et al. 2017), activation patching (Vig et al. 2020), layer probes (Hewitt & Liang 2019),
and the comparison of models on normalised depth (layer + 1) / n_layers (Leteno et al. 2023).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize, TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from attribution.plot_style import (
    DOUBLE_COLUMN_IN,
    DPI,
    FIGURE_SIZES,
    METHOD_MARKERS,
    ORDER_COLOURS,
    ORDER_LABELS,
    PALETTE,
    SIGNED_CMAP,
    SINGLE_COLUMN_IN,
    UNSIGNED_CMAP,
    UNSIGNED_METRICS,
    label,
    select,
    style,
    styled,
)
from pipeline.variants import Variant, variant_sort_key

__all__ = [
    "DOUBLE_COLUMN_IN", "DPI", "FIGURE_SIZES", "SINGLE_COLUMN_IN", "bias_vs_compression", "cumulative_curve",
    "depth_difference", "depth_profile", "head_heatmap", "head_matrix", "probe_curves", "side_by_side_heatmaps",
    "style", "token_attributions", "top_neurons",
]

def head_matrix(frame: pd.DataFrame, metric: str, *, variant: str | None = None, **choices) -> np.ndarray:
    """Layer x head matrix of ``metric`` (mean over seeds; NaN for heads without a row, e.g. pruned ones).

    ``choices`` pick one ``subset`` / ``mode`` / ``pooling`` when several are present (defaults: subset ''
    or all or gender, mode single, pooling cls).
    """
    rows = select(frame, "head", metric, variant, **choices)
    means = rows.groupby(["layer", "head"])["value"].mean()
    matrix = np.full((int(rows["layer"].max()) + 1, int(rows["head"].max()) + 1), np.nan)  # (layer, head)
    matrix[means.index.get_level_values(0), means.index.get_level_values(1)] = means.to_numpy()
    return matrix


def _norm(values: np.ndarray, metric: str, signed: bool | None, vlim: float | None) -> tuple[Normalize, str]:
    """Colour scaling: symmetric and centred at zero for signed metrics, min..max for unsigned ones."""
    signed = metric not in UNSIGNED_METRICS if signed is None else signed
    finite = values[np.isfinite(values)]
    if signed:
        limit = vlim if vlim is not None else float(np.abs(finite).max()) if finite.size else 1.0
        limit = max(limit, 1e-12)
        return TwoSlopeNorm(vcenter=0.0, vmin=-limit, vmax=limit), SIGNED_CMAP
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    return Normalize(vmin=low, vmax=vlim if vlim is not None else max(high, low + 1e-12)), UNSIGNED_CMAP


def _draw_heads(ax, matrix: np.ndarray, norm: Normalize, cmap: str):
    image = ax.imshow(matrix, cmap=matplotlib.colormaps[cmap].with_extremes(bad="#e0e0e0"), norm=norm,
                      aspect="auto", interpolation="nearest")
    n_layers, n_heads = matrix.shape
    ax.set_xticks(range(0, n_heads, 1 if n_heads <= 12 else 2))
    ax.set_yticks(range(0, n_layers, 1 if n_layers <= 12 else 2))
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.spines[:].set_visible(False)
    return image


def _seeds_note(frame: pd.DataFrame) -> str:
    n = frame["seed"].nunique()
    return f" (mean of {n} seeds)" if n > 1 else ""


@styled
def head_heatmap(frame: pd.DataFrame, metric: str, *, variant: str | None = None, signed: bool | None = None,
                 vlim: float | None = None, title: str | None = None, **choices) -> Figure:
    """Layer x head heatmap of ``metric`` for one variant (single column, 3.35 x 2.6 in).

    Args:
        frame: a head table (``head_ablation``, ``head_importance``, ``head_ig``, ``patching``, ``probes_heads``).
        metric: e.g. ``delta_score``, ``grad_importance``, ``ig``, ``indirect_effect``, ``probe_accuracy``.
        variant: which variant (needed when the frame holds several).
        signed: diverging map centred at 0 (default: all metrics but :data:`UNSIGNED_METRICS`).
        vlim: colour limit (default: the largest absolute value, or the maximum for unsigned metrics).
        title: default ``"<variant>"``.
        **choices: ``subset=``, ``mode=``, ``pooling=`` when several are present.
    """
    rows = select(frame, "head", metric, variant, **choices)
    matrix = head_matrix(rows, metric)
    norm, cmap = _norm(matrix, metric, signed, vlim)
    fig = Figure(figsize=FIGURE_SIZES["head_heatmap"], layout="constrained")
    ax = fig.add_subplot()
    fig.colorbar(_draw_heads(ax, matrix, norm, cmap), ax=ax).set_label(label(metric, rows))
    ax.set_title(title or f"{rows['variant'].iloc[0]}{_seeds_note(rows)}")
    return fig


def depth_profile(matrix: np.ndarray, *, absolute: bool = False) -> pd.Series:
    """Per-layer mean over heads of a (layer, head) matrix, indexed by normalised depth (layer + 1) / n_layers."""
    values = np.abs(matrix) if absolute else matrix
    n_layers = matrix.shape[0]
    return pd.Series(np.nanmean(values, axis=1), index=(np.arange(n_layers) + 1) / n_layers, name="value")


def depth_difference(profile: pd.Series, reference: pd.Series) -> pd.Series:
    """``profile - reference`` on the coarser of the two depth grids, the finer one linearly interpolated.

    With a 12-layer reference and a 6-layer student the grid is the student's (1/6 .. 1), where the
    reference's layers 1, 3, ..., 11 lie exactly (DistilBERT layer i is initialised from BERT layer 2i).
    """
    grid = profile.index if len(profile) <= len(reference) else reference.index
    at = lambda s: np.interp(grid, s.index.to_numpy(), s.to_numpy())
    return pd.Series(at(profile) - at(reference), index=grid, name="difference")


@styled
def side_by_side_heatmaps(frames_by_variant: Mapping[str, pd.DataFrame], metric: str, *, signed: bool | None = None,
                          absolute: bool = False, **choices) -> Figure:
    """Heatmaps of several variants on one colour scale, their per-layer means on normalised depth, and each
    variant minus the first on a common depth grid (:func:`depth_difference`). Double column, 7.0 x 2.6 in.

    Args:
        frames_by_variant: variant name -> its head table (the first is the reference, e.g. the teacher).
        metric: the head metric to compare.
        signed: as in :func:`head_heatmap`.
        absolute: average absolute values over heads in the depth panels (signed effects may cancel).
        **choices: ``subset=``, ``mode=``, ``pooling=`` when several are present.
    """
    if not frames_by_variant:
        raise ValueError("frames_by_variant is empty; pass at least one variant's head table.")
    matrices = {name: head_matrix(f, metric, variant=name if name in set(f["variant"]) else None, **choices)
                for name, f in frames_by_variant.items()}
    norm, cmap = _norm(np.concatenate([m.ravel() for m in matrices.values()]), metric, signed, None)
    fig = Figure(figsize=FIGURE_SIZES["side_by_side_heatmaps"], layout="constrained")
    grid = fig.add_gridspec(2, len(matrices) + 1, width_ratios=[1.0] * len(matrices) + [1.2])
    heat_axes = []
    for i, (name, matrix) in enumerate(matrices.items()):
        ax = fig.add_subplot(grid[:, i])
        image = _draw_heads(ax, matrix, norm, cmap)
        ax.set_title(name, fontsize=7)
        if i:
            ax.set_ylabel("")
        heat_axes.append(ax)
    fig.colorbar(image, ax=heat_axes, shrink=0.8).set_label(
        label(metric, pd.concat(list(frames_by_variant.values()))))
    top, bottom = fig.add_subplot(grid[0, -1]), fig.add_subplot(grid[1, -1])
    profiles = {name: depth_profile(m, absolute=absolute) for name, m in matrices.items()}
    reference = next(iter(profiles))
    for i, (name, profile) in enumerate(profiles.items()):
        colour = PALETTE[i % len(PALETTE)]
        top.plot(profile.index, profile.to_numpy(), marker="o", ms=2.5, lw=1, color=colour, label=name)
        if name != reference:
            diff = depth_difference(profile, profiles[reference])
            bottom.plot(diff.index, diff.to_numpy(), marker="o", ms=2.5, lw=1, color=colour)
    for ax in (top, bottom):
        ax.axhline(0, color="#888888", lw=0.5)
        ax.set_xlim(0, 1.02)
    top.set_ylabel(("mean |·|" if absolute else "mean") + " per layer")
    top.tick_params(labelbottom=False)
    top.legend(loc="best", fontsize=6, handlelength=1.2)
    bottom.set_ylabel(f"minus {reference}" if len(reference) < 14 else "minus reference")
    bottom.set_xlabel("normalised depth (layer+1)/L")
    return fig


def _variant_colours(variants: Iterable[str]) -> dict[str, str]:
    ordered = sorted(set(variants), key=variant_sort_key)
    return {v: PALETTE[i % len(PALETTE)] for i, v in enumerate(ordered)}


def _band(ax, x, rows: pd.DataFrame, colour: str, **line) -> None:
    ax.plot(x, rows["value"].to_numpy(), color=colour, lw=1, **line)
    if rows["ci_low"].notna().any():
        ax.fill_between(x, rows["ci_low"].to_numpy(), rows["ci_high"].to_numpy(), color=colour, alpha=0.2, lw=0)


_CUMULATIVE_METRICS = (("ablated_score", "ablated_accuracy"), ("bias", "accuracy"), ("delta_score", "delta_accuracy"))


@styled
def cumulative_curve(frame: pd.DataFrame) -> Figure:
    """Cumulative head-ablation curves with CI bands: one panel per metric (the bias score and accuracy with the
    heads removed), x = fraction of heads ablated (or their number), colour = variant, solid = most important
    first, dashed = least important first; seeds averaged. Double column, 7.0 x 2.3 in."""
    missing = [c for c in ("step", "order") if c not in frame]
    if missing:
        raise ValueError(f"the cumulative table lacks column(s) {missing}; it is written by the ablation stage.")
    rows = frame.dropna(subset=["step", "order"])
    present = set(rows["metric"])
    metrics = next((list(pair) for pair in _CUMULATIVE_METRICS if set(pair) & present), sorted(present))
    metrics = [m for m in metrics if m in present]
    if not metrics:
        raise ValueError("the cumulative table has no curve rows (rows with a step and an order).")
    x_col = "fraction" if "fraction" in rows and rows["fraction"].notna().all() else "step"
    colours = _variant_colours(rows["variant"])
    fig = Figure(figsize=FIGURE_SIZES["cumulative_curve"], layout="constrained")
    for ax, metric in zip(fig.subplots(1, len(metrics), squeeze=False)[0], metrics):
        part = rows[rows["metric"] == metric]
        curves = part.groupby(["variant", "order", x_col])[["value", "ci_low", "ci_high"]].mean().reset_index()
        for (variant, order), curve in curves.groupby(["variant", "order"]):
            _band(ax, curve[x_col].to_numpy(), curve, colours[variant], ls="--" if order == "least" else "-")
        ax.set_xlabel("fraction of heads ablated" if x_col == "fraction" else "heads ablated")
        ax.set_ylabel(label(metric, part))
    handles = [Line2D([], [], color=c, lw=1, label=v) for v, c in colours.items()]
    handles += [Line2D([], [], color="#444444", ls=s, lw=1, label=f"{o} important first")
                for o, s in (("most", "-"), ("least", "--"))]
    fig.legend(handles=handles, loc="outside right upper")
    return fig


@styled
def probe_curves(frame: pd.DataFrame, *, metric: str = "probe_accuracy") -> Figure:
    """Probe ``metric`` on normalised depth with CI bands: one panel per probed attribute (subset gender,
    label), colour = variant, line style = pooling, dotted = chance (``chance`` column); seeds averaged. Layer 0
    is the embeddings, so depth is layer / n_layers unless the table has a ``depth`` column. Double column,
    7.0 x 2.3 in."""
    rows = frame[(frame["unit"] == "layer") & (frame["metric"] == metric)]
    if rows.empty:
        raise ValueError(f"no layer rows for metric {metric!r}; metrics present: {sorted(set(frame['metric']))}.")
    if "depth" not in rows or rows["depth"].isna().any():
        rows = rows.assign(depth=rows["layer"] / rows.groupby("variant")["layer"].transform("max"))
    if "pooling" not in rows:
        rows = rows.assign(pooling="")
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
    handles = [Line2D([], [], color=c, lw=1, label=v) for v, c in colours.items()]
    handles += [Line2D([], [], color="#444444", ls=s, lw=1, label=p) for p, s in styles.items() if p]
    fig.legend(handles=handles, loc="outside right upper")
    return fig


def _model_metric(frame: pd.DataFrame, metric: str, subset: str | None) -> pd.DataFrame:
    rows = select(frame[frame["value"].notna()], "model", metric, all_variants=True, subset=subset)  # not skipped
    return rows.groupby(["variant", "seed"])[["value", "ci_low", "ci_high"]].mean()


def _err(point: pd.Series, key: str) -> np.ndarray:
    """Error-bar lengths (2, 1) below and above a point from its CI (0 where there is none)."""
    value, low, high = point[key, "value"], point[key, "ci_low"], point[key, "ci_high"]
    return np.nan_to_num(np.array([[value - low], [high - value]]))


def _family(method: str) -> str:
    return next((f for f in METHOD_MARKERS if method.startswith(f)), "other")


@styled
def bias_vs_compression(task: pd.DataFrame, bias: pd.DataFrame, *, bias_metric: str = "gap_rms",
                        subset: str | None = None) -> Figure:
    """Bias against model size and against accuracy, one point per (variant, seed) with CI bars; marker =
    compression method, colour = fine-tuning order, open marker = trained on another training set than the original
    (``@balanced``; :meth:`Variant.parse`). Double column, 7.0 x 2.6 in."""
    size_metric = "size_mb" if "size_mb" in set(task["metric"]) else "params"
    points = pd.concat({"size": _model_metric(task, size_metric, None), "acc": _model_metric(task, "accuracy", None),
                        "bias": _model_metric(bias, bias_metric, subset)}, axis=1).dropna(subset=[("bias", "value")])
    if points.empty:
        raise ValueError(f"no variant has both task metrics and {bias_metric!r}; check the selected variants.")
    fig = Figure(figsize=FIGURE_SIZES["bias_vs_compression"], layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    several_seeds = points.index.get_level_values("seed").nunique() > 1
    recipes = {v: Variant.parse(v) for v, _ in points.index}
    for (variant, seed), p in points.iterrows():
        recipe, colour = recipes[variant], ORDER_COLOURS[recipes[variant].order]
        look = {"marker": METHOD_MARKERS.get(_family(recipe.method), "h"), "color": colour, "ms": 4, "lw": 0.7,
                "mfc": "none" if recipe.training_set else colour}
        for ax, key in zip(axes, ("size", "acc")):
            ax.errorbar(p[key, "value"], p["bias", "value"], xerr=_err(p, key), yerr=_err(p, "bias"), **look)
        axes[0].annotate(f"{variant} s{seed}" if several_seeds else variant, (p["size", "value"], p["bias", "value"]),
                         fontsize=5, xytext=(3, 2), textcoords="offset points", color="#444444")
    axes[0].set_xlabel("size (MB)" if size_metric == "size_mb" else "parameters")
    axes[1].set_xlabel("accuracy")
    axes[0].set_ylabel(label(bias_metric))
    families = sorted({_family(r.method) for r in recipes.values()}, key=list(METHOD_MARKERS).index)
    orders = sorted({r.order for r in recipes.values()}, key=list(ORDER_COLOURS).index)
    handles = [Line2D([], [], ls="", marker=METHOD_MARKERS.get(f, "h"), color="#444444", label=f) for f in families]
    handles += [Line2D([], [], ls="", marker="o", color=ORDER_COLOURS[o], label=ORDER_LABELS[o]) for o in orders]
    handles += [Line2D([], [], ls="", marker="o", mfc="none", color="#444444", label=f"trained on {name}")
                for name in sorted({r.training_set for r in recipes.values()} - {None})]
    fig.legend(handles=handles, loc="outside right upper")
    return fig


def _only_metric(frame: pd.DataFrame, unit: str) -> str:
    metrics = sorted(set(frame.loc[frame["unit"] == unit, "metric"]))
    if len(metrics) != 1:
        raise ValueError(f"the {unit} rows hold metrics {metrics}; pass metric= to choose one.")
    return metrics[0]


def _token_text(token: str) -> tuple[str, bool]:
    """Display text of a WordPiece token and whether it continues the previous word (``##``)."""
    return (token[2:], True) if token.startswith("##") else (token, False)


@styled
def token_attributions(frame: pd.DataFrame, example: int, *, variant: str | None = None, seed: int | None = None,
                       metric: str | None = None) -> Figure:
    """One example's tokens as text, each on a background coloured by its attribution (diverging, centred at
    zero); ``##`` pieces join their word, padding is dropped, tokens that do not fit are counted. Double column,
    7.0 x 2.0 in.

    Args:
        frame: the ``token_ig`` table (unit token; columns example, position, token; label, gender, pred shown
            when present).
        example: the example id.
        variant, seed: which model (seed defaults to the smallest present).
        metric: the attribution metric (default: the only one of unit token).
    """
    metric = metric or _only_metric(frame, "token")
    rows = select(frame[frame["example"] == example], "token", metric, variant)
    seed = int(rows["seed"].min()) if seed is None else seed
    rows = rows[(rows["seed"] == seed) & (rows["token"] != "[PAD]")].sort_values("position")
    if rows.empty:
        raise ValueError(f"example {example} has no tokens for seed {seed}; seeds: {sorted(set(frame['seed']))}.")
    norm, cmap_name = _norm(rows["value"].to_numpy(), metric, True, None)
    cmap = matplotlib.colormaps[cmap_name]
    width, height = FIGURE_SIZES["token_attributions"]
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    renderer = fig.canvas.get_renderer()
    first = rows.iloc[0]
    info = "  ·  ".join(f"{c} {first[c]}" for c in ("label", "pred", "gender") if c in rows)
    fig.text(0.01, 0.95, f"{first['variant']} seed {seed}, example {example}   {info}", va="top", fontsize=8)
    x, y, line_h, left, right, shown = 0.01, 0.8, 0.1, 0.01, 0.99, 0
    for token, value in zip(rows["token"].astype(str), rows["value"]):
        text, joined = _token_text(token)
        colour = cmap(norm(value))
        dark = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2] < 0.5
        artist = fig.text(x, y, text, va="top", fontsize=7, color="white" if dark else "black",
                          bbox={"boxstyle": "square,pad=0.12", "fc": colour, "ec": "none"})
        w = artist.get_window_extent(renderer).width / (width * fig.dpi)
        if x + w > right and x > left:
            x, y = left, y - line_h
            if y < 0.4:
                artist.remove()
                break
            artist.set_position((x, y))
        x += w + (0.0 if joined else 0.006)
        shown += 1
    if shown < len(rows):
        fig.text(right, 0.34, f"(+{len(rows) - shown} tokens not shown)", ha="right", fontsize=7, color="#666666")
    cax = fig.add_axes((0.3, 0.24, 0.4, 0.05))
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), cax=cax, orientation="horizontal")
    cax.set_xlabel(f"token attribution: {label(metric, rows)}", fontsize=7, labelpad=1)
    return fig


@styled
def top_neurons(frame: pd.DataFrame, k: int = 10, *, variant: str | None = None, metric: str = "ig") -> Figure:
    """The ``k`` FFN neurons with the largest absolute effect (mean over seeds), as bars with CIs, labelled
    ``L<layer> n<index>``; red = positive, blue = negative. Single column, 3.35 x 2.6 in."""
    if k < 1:
        raise ValueError(f"k={k!r}: give the number of neurons to show (>= 1).")
    rows = select(frame, "neuron", metric, variant)
    means = rows.groupby(["layer", "head"])[["value", "ci_low", "ci_high"]].mean()
    top = means.loc[means["value"].abs().sort_values(ascending=False, kind="stable").index[:k]][::-1]
    cmap = matplotlib.colormaps[SIGNED_CMAP]
    fig = Figure(figsize=FIGURE_SIZES["top_neurons"], layout="constrained")
    ax = fig.add_subplot()
    y = np.arange(len(top))
    errors = np.abs(np.stack([top["value"] - top["ci_low"], top["ci_high"] - top["value"]]))
    ax.barh(y, top["value"], xerr=errors if np.isfinite(errors).any() else None, height=0.7,
            color=[cmap(0.85) if v >= 0 else cmap(0.15) for v in top["value"]], error_kw={"lw": 0.6, "capsize": 1.5})
    ax.set_yticks(y, [f"L{layer} n{neuron}" for layer, neuron in top.index])
    ax.axvline(0, color="#888888", lw=0.5)
    ax.set_xlabel(label(metric))
    ax.set_title(f"{rows['variant'].iloc[0]}: top {len(top)} neurons{_seeds_note(rows)}")
    return fig
