"""Layer x head maps (:func:`head_heatmap`, :func:`side_by_side_heatmaps`) and one head's attention pattern
(:func:`attention_pattern`), re-exported by :mod:`pipeline.figures.plots`.

Uncertainty is drawn on the map: with a ``q`` column (Benjamini-Hochberg q-values of the per-unit tests), a dot marks
heads with q < alpha in every seed, a ring those with q < alpha in some seeds, and the other heads are faded; a
square marks heads that carry bias in the findings' ``bias_units`` table (significant and material).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.colors import Normalize, TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from pipeline.figures.style import (
    DOUBLE_COLUMN_IN,
    FIGURE_SIZES,
    FLAG_COLOUR,
    PALETTE,
    SIGNED_CMAP,
    UNSIGNED_CMAP,
    UNSIGNED_METRICS,
    adds_bias,
    colourbar_label,
    grown_height,
    model_total,
    score_name,
    select,
    shared_colourbar_label,
    styled,
    tick_step,
)

__all__ = [
    "attention_pattern",
    "depth_difference",
    "depth_profile",
    "head_heatmap",
    "head_matrix",
    "head_significance",
    "side_by_side_heatmaps",
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


def head_significance(
    rows: pd.DataFrame, shape: tuple[int, int], alpha: float = 0.05, carries: pd.DataFrame | None = None
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(share of seeds with q < alpha, carries bias in some seed) per (layer, head); None where the rows have no
    q-values / no ``carries`` rows are given. ``carries``: findings ``bias_units`` rows (columns layer, head,
    carries) of the same variant and method."""
    share = None
    if "q" in rows and rows["q"].notna().any():
        sig = rows.assign(sig=(rows["q"] < alpha).astype(float)).groupby(["layer", "head"])["sig"].mean()
        share = np.full(shape, np.nan)
        share[sig.index.get_level_values(0), sig.index.get_level_values(1)] = sig.to_numpy()
    carried = None
    if carries is not None and len(carries):
        hit = carries[carries["unit"] == "head"].groupby(["layer", "head"])["carries"].any()
        hit = hit[hit.index.get_level_values(0) < shape[0]]
        carried = np.zeros(shape, dtype=bool)
        carried[hit.index.get_level_values(0), hit.index.get_level_values(1)] = hit.to_numpy(dtype=bool)
    return share, carried


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


def _draw_heads(
    ax,
    matrix: np.ndarray,
    norm: Normalize,
    cmap: str,
    panel_in: tuple[float, float],
    share: np.ndarray | None = None,
    carried: np.ndarray | None = None,
):
    image = ax.imshow(
        matrix,
        cmap=matplotlib.colormaps[cmap].with_extremes(bad="#e0e0e0"),
        norm=norm,
        aspect="auto",
        interpolation="nearest",
    )
    n_layers, n_heads = matrix.shape
    ax.set_xticks(range(0, n_heads, tick_step(n_heads, panel_in[0])))
    ax.set_yticks(range(0, n_layers, tick_step(n_layers, panel_in[1], 0.13)))
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.spines[:].set_visible(False)
    cell_pt = min(panel_in[0] * 72 / n_heads, panel_in[1] * 72 / n_layers)
    size = float(np.clip(0.3 * cell_pt, 1.5, 5.0)) ** 2  # marker area in pt^2, a third of a cell across
    if share is not None:
        faded = np.argwhere(share == 0)
        for layer, head in faded:
            ax.add_patch(Rectangle((head - 0.5, layer - 0.5), 1, 1, fc="white", ec="none", alpha=0.6))
        for filled in (True, False):
            at = np.argwhere(share == 1) if filled else np.argwhere((share > 0) & (share < 1))
            if len(at):
                ax.scatter(
                    at[:, 1],
                    at[:, 0],
                    s=size,
                    marker="o",
                    c="black" if filled else "none",
                    edgecolors="white" if filled else "black",
                    linewidths=0.4 if filled else 0.7,
                )
    if carried is not None:
        for layer, head in np.argwhere(carried):
            ax.add_patch(Rectangle((head - 0.42, layer - 0.42), 0.84, 0.84, fill=False, ec="black", lw=1.0))
    return image


def _marks_legend(fig: Figure, share_shown: bool, carried_shown: bool, alpha: float, extra=()) -> None:
    handles = list(extra)
    if share_shown:
        handles += [
            Line2D([], [], ls="", marker="o", ms=3, mfc="black", mec="white", label=f"q < {alpha:g} all seeds"),
            Line2D([], [], ls="", marker="o", ms=3, mfc="none", mec="black", label="some seeds"),
            Rectangle((0, 0), 1, 1, fc="#dddddd", ec="none", label="faded: not significant"),
        ]
    if carried_shown:
        handles.append(Rectangle((0, 0), 1, 1, fill=False, ec="black", lw=1.0, label="carries bias"))
    if handles:
        fig.legend(
            handles=handles,
            loc="outside lower center",
            ncol=min(len(handles), 4),
            fontsize=6,
            handlelength=1.2,
            columnspacing=1.0,
        )


def _direction(metric: str, rows: pd.DataFrame, total: float | None) -> str:
    """Two title lines of one model's map: its own score and the colour that adds to its bias ("" without one)."""
    colour = adds_bias(metric, total)
    return f"\n{score_name(metric, rows)} {total:+.2g}\n{colour} adds bias" if colour else ""


def _title(rows: pd.DataFrame, flag: str | None) -> str:
    n_seeds = rows["seed"].nunique()
    n = int(rows["n"].max()) if "n" in rows and rows["n"].notna().any() else None
    facts = [f"mean of {n_seeds} seeds" if n_seeds > 1 else "", f"n = {n}" if n else ""]
    title = (
        f"{rows['variant'].iloc[0]}  ({', '.join(f for f in facts if f)})" if any(facts) else rows["variant"].iloc[0]
    )
    return title + (f"\nnot fit to be read: {flag}" if flag else "")


@styled
def head_heatmap(
    frame: pd.DataFrame,
    metric: str,
    *,
    variant: str | None = None,
    signed: bool | None = None,
    vlim: float | None = None,
    title: str | None = None,
    alpha: float = 0.05,
    carries: pd.DataFrame | None = None,
    flag: str | None = None,
    **choices,
) -> Figure:
    """Layer x head heatmap of ``metric`` for one variant (single column, 3.35 x 2.6 in).

    Args:
        frame: a head table (``head_ablation``, ``head_importance``, ``head_ig``, ``patching``, ``probes_heads``);
            its model rows (intact score, total effect) say on the colour bar which sign adds bias.
        metric: e.g. ``delta_score``, ``grad_importance``, ``ig``, ``indirect_effect``, ``probe_accuracy``.
        variant: which variant (needed when the frame holds several).
        signed: diverging map centred at 0 (default: all metrics but :data:`UNSIGNED_METRICS`).
        vlim: colour limit (default: the largest absolute value, or the maximum for unsigned metrics); give the
            same value to several maps to put them on one absolute scale.
        title: default ``"<variant> (mean of k seeds, n = examples)"``.
        alpha: q-value threshold of the significance marks (module docstring).
        carries: findings ``bias_units`` rows of this variant and method (squares on the heads that carry bias).
        flag: why the model is not fit to be read (shown under the title), or None.
        **choices: ``subset=``, ``mode=``, ``pooling=`` when several are present.
    """
    rows = select(frame, "head", metric, variant, **choices)
    matrix = head_matrix(rows, metric)
    norm, cmap = _norm(matrix, metric, signed, vlim)
    share, carried = head_significance(rows, matrix.shape, alpha, carries)
    fig = Figure(figsize=FIGURE_SIZES["head_heatmap"], layout="constrained")
    ax = fig.add_subplot()
    image = _draw_heads(ax, matrix, norm, cmap, (2.2, 1.6), share, carried)
    own = frame[frame["variant"] == rows["variant"].iloc[0]]
    fig.colorbar(image, ax=ax).set_label(colourbar_label(metric, rows, model_total(own, metric)), fontsize=6)
    ax.set_title(title or _title(rows, flag), fontsize=7, color=FLAG_COLOUR if flag else "black")
    _marks_legend(fig, share is not None, carried is not None and carried.any(), alpha)
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
def side_by_side_heatmaps(
    frames_by_variant: Mapping[str, pd.DataFrame],
    metric: str,
    *,
    signed: bool | None = None,
    absolute: bool = False,
    scale: str = "shared",
    ncols: int = 4,
    alpha: float = 0.05,
    carries: pd.DataFrame | None = None,
    flags: Mapping[str, str] | None = None,
    **choices,
) -> Figure:
    """Heatmaps of any number of variants as small multiples that wrap after ``ncols``, their per-layer means on
    normalised depth, and each variant minus the first on a common depth grid (:func:`depth_difference`). Double
    column, 7.0 in wide, 2.6 in high for one row of maps (+1.9 in per further row).

    Args:
        frames_by_variant: variant name -> its head table (the first is the reference, e.g. the teacher).
        metric: the head metric to compare.
        signed: as in :func:`head_heatmap`.
        absolute: average absolute values over heads in the depth panels (signed effects may cancel).
        scale: ``"shared"``: one absolute colour scale for all maps (compare magnitudes across models);
            ``"panel"``: each map scaled to its own largest value (compare patterns only).
        ncols: maps per row.
        alpha, carries: significance marks as in :func:`head_heatmap` (``carries``: ``bias_units`` rows).
        flags: variant -> why it is not fit to be read (its title says so).
        **choices: ``subset=``, ``mode=``, ``pooling=`` when several are present.
    """
    if not frames_by_variant:
        raise ValueError("frames_by_variant is empty; pass at least one variant's head table.")
    if scale not in ("shared", "panel"):
        raise ValueError(f"scale={scale!r}: use 'shared' (one scale for all maps) or 'panel' (one per map).")
    flags = flags or {}
    rows_of = {
        name: select(f, "head", metric, name if name in set(f["variant"]) else None, **choices)
        for name, f in frames_by_variant.items()
    }
    matrices = {name: head_matrix(rows, metric) for name, rows in rows_of.items()}
    shared = _norm(np.concatenate([m.ravel() for m in matrices.values()]), metric, signed, None)
    ncols = max(1, min(ncols, len(matrices)))
    n_rows = -(-len(matrices) // ncols)
    fig = Figure(figsize=(DOUBLE_COLUMN_IN, grown_height("side_by_side_heatmaps", n_rows)), layout="constrained")
    grid = fig.add_gridspec(2 * n_rows, ncols + 1, width_ratios=[1.0] * ncols + [1.3])
    panel_in = ((DOUBLE_COLUMN_IN - 2.2) / (ncols + 0.4), 1.5)
    heat_axes, shown = [], {"share": False, "carried": False}
    totals = {name: model_total(f[f["variant"] == name] if name in set(f["variant"]) else f, metric)
              for name, f in frames_by_variant.items()}  # fmt: skip
    for i, (name, matrix) in enumerate(matrices.items()):
        r, c = divmod(i, ncols)
        ax = fig.add_subplot(grid[2 * r : 2 * r + 2, c])
        norm, cmap = shared if scale == "shared" else _norm(matrix, metric, signed, None)
        part = carries[carries["variant"] == name] if carries is not None and "variant" in carries else carries
        share, carried = head_significance(rows_of[name], matrix.shape, alpha, part)
        shown["share"] |= share is not None
        shown["carried"] |= carried is not None and bool(carried.any())
        image = _draw_heads(ax, matrix, norm, cmap, panel_in, share, carried)
        ax.set_title(
            name + ("\n(not fit)" if name in flags else "") + _direction(metric, rows_of[name], totals[name]),
            fontsize=6,
            color=FLAG_COLOUR if name in flags else "black",
        )
        if c:
            ax.set_ylabel("")
        if r < n_rows - 1 and i + ncols < len(matrices):
            ax.set_xlabel("")
        if scale == "panel":
            fig.colorbar(image, ax=ax, shrink=0.8, aspect=12).ax.tick_params(labelsize=5)
        heat_axes.append(ax)
    rows_all = pd.concat(list(rows_of.values()))
    if scale == "shared":
        bar = fig.colorbar(image, ax=heat_axes, shrink=0.8)
        bar.set_label(shared_colourbar_label(metric, rows_all, totals), fontsize=6)
    top, bottom = fig.add_subplot(grid[:n_rows, -1]), fig.add_subplot(grid[n_rows:, -1])
    profiles = {name: depth_profile(m, absolute=absolute) for name, m in matrices.items()}
    reference = next(iter(profiles))
    lines = []
    for i, (name, profile) in enumerate(profiles.items()):
        colour, ls = PALETTE[i % len(PALETTE)], "--" if name in flags else "-"
        top.plot(profile.index, profile.to_numpy(), marker="o", ms=2.5, lw=1, color=colour, ls=ls)
        lines.append(
            Line2D(
                [],
                [],
                color=colour,
                ls=ls,
                marker="o",
                ms=2.5,
                lw=1,
                label=name + (" (ref.)" if name == reference else "") + (" (not fit)" if name in flags else ""),
            )
        )
        if name != reference:
            diff = depth_difference(profile, profiles[reference])
            bottom.plot(diff.index, diff.to_numpy(), marker="o", ms=2.5, lw=1, color=colour, ls=ls)
    for ax in (top, bottom):
        ax.axhline(0, color="#888888", lw=0.5)
        ax.set_xlim(0, 1.05)
        ax.locator_params(axis="y", nbins=4)
    top.set_ylabel(("mean |·|" if absolute else "mean") + " per layer", fontsize=6)
    top.tick_params(labelbottom=False)
    bottom.set_ylabel("minus ref.", fontsize=6)
    bottom.set_xlabel("depth (l+1)/L")
    if scale == "panel":
        fig.suptitle(
            "colour scale per map: compare patterns, not magnitudes; "
            + shared_colourbar_label(metric, rows_all, totals).replace("\n", "; "),
            fontsize=6,
        )
    _marks_legend(fig, shown["share"], shown["carried"], alpha, lines)
    return fig


@styled
def attention_pattern(patterns: Sequence[tuple[str, Sequence[str], np.ndarray]], *, title: str = "") -> Figure:
    """Attention weights of one head, one panel per text (e.g. a sentence and its gender-swapped twin): rows =
    query tokens, columns = key tokens, colour = weight (0..1). Double column, 7.0 x 3.0 in.

    Args:
        patterns: (panel title, tokens, weights of shape (seq, seq)) per text.
        title: figure title (the head and model).
    """
    if not patterns:
        raise ValueError("patterns is empty; pass (title, tokens, weights) for at least one text.")
    fig = Figure(figsize=FIGURE_SIZES["attention_pattern"], layout="constrained")
    axes = fig.subplots(1, len(patterns), squeeze=False)[0]
    norm = Normalize(0.0, max(float(np.max(w)) for _, _, w in patterns) or 1.0)
    for ax, (name, tokens, weights) in zip(axes, patterns):
        image = ax.imshow(weights, cmap=UNSIGNED_CMAP, norm=norm, aspect="auto", interpolation="nearest")
        n = len(tokens)
        step = tick_step(n, (DOUBLE_COLUMN_IN - 1.0) / len(patterns), 0.1)
        ax.set_xticks(range(0, n, step), [tokens[i][:10] for i in range(0, n, step)], rotation=90, fontsize=5)
        ax.set_yticks(range(0, n, step), [tokens[i][:10] for i in range(0, n, step)], fontsize=5)
        ax.set_title(name, fontsize=6)
        ax.set_xlabel("attended token (key)", fontsize=6)
        ax.spines[:].set_visible(False)
    axes[0].set_ylabel("query token", fontsize=6)
    fig.colorbar(image, ax=list(axes), shrink=0.8).set_label("attention weight", fontsize=6)
    if title:
        fig.suptitle(title, fontsize=7)
    return fig
