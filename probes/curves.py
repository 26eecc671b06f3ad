"""Comparison of probe results across model variants: curves on normalised depth and per-head maps.

Models of different depth (a 12-layer teacher, its 6-layer DistilBERT student, a 4-layer TinyBERT) are compared on
one axis, depth = layer / n_layers, with the embeddings at 0 and the last block at 1 (docs/DESIGN.md section 6; a
DistilBERT block i starts from teacher block 2i + 1, so their curves line up at the same depth). Head rows carry
block indices, so head ``(l, h)`` sits at depth ``(l + 1) / n_layers``, the depth of the hidden state it writes
into. Everything here reads the tidy tables of :mod:`probes.analysis`; the plots use matplotlib only, so the app
and the figures draw the same pictures.
"""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

__all__ = ["add_depth", "depth_curves", "head_map", "plot_depth_curves", "plot_head_map"]


def _select(frame: pd.DataFrame, **where: object) -> pd.DataFrame:
    """Rows of ``frame`` matching every ``column=value`` whose value is not None; error naming what exists."""
    out = frame
    for col, val in where.items():
        if val is None:
            continue
        if col not in out:
            raise ValueError(f"the table has no column {col!r}; columns: {list(frame.columns)}.")
        kept = out[out[col] == val]
        if kept.empty:
            raise ValueError(f"no rows with {col}={val!r}; available: {sorted(out[col].dropna().unique().tolist())}.")
        out = kept
    return out


def add_depth(frame: pd.DataFrame, n_layers: Mapping[str, int] | None = None) -> pd.DataFrame:
    """Add a ``depth`` column: ``layer / n_layers`` for layer rows, ``(layer + 1) / n_layers`` for head rows.

    Args:
        frame: probe rows (``unit`` ``layer`` or ``head``) of one or more variants.
        n_layers: blocks per variant; by default read off the table (largest layer-row index, or largest head-row
            block + 1).
    """
    out = frame.copy()
    if n_layers is None:
        top = np.where(out["unit"] == "head", out["layer"] + 1, out["layer"])
        n_layers = pd.Series(top, index=out.index).groupby(out["variant"]).max().to_dict()
    missing = sorted(set(out["variant"]) - set(n_layers))
    if missing:
        raise ValueError(f"n_layers lacks variants {missing}; give the number of blocks of each variant.")
    blocks = out["variant"].map(n_layers).astype(float)
    out["depth"] = np.where(out["unit"] == "head", out["layer"] + 1, out["layer"]) / blocks
    return out


def depth_curves(
    frames: pd.DataFrame | Mapping[str, pd.DataFrame],
    *,
    metric: str = "probe_accuracy",
    target: str | None = "gender",
    pooling: str | None = "mean",
    n_layers: Mapping[str, int] | None = None,
) -> pd.DataFrame:
    """Layer-wise probe curves of one or more variants on normalised depth.

    Args:
        frames: a ``probes_layers`` table, or variant name -> table (the name overrides the ``variant`` column).
        metric: which metric (``probe_accuracy``, ``probe_auc``, ``selectivity``...).
        target: which ``subset`` (``gender``, ``label``); None keeps all.
        pooling: which pooling; None keeps all.
        n_layers: blocks per variant (default: read off the tables).

    Returns:
        Rows sorted by variant and depth with columns ``variant, subset, pooling, layer, depth, value, ci_low,
        ci_high`` (and ``chance`` when present).
    """
    if isinstance(frames, Mapping):
        frames = pd.concat([f.assign(variant=name) for name, f in frames.items()], ignore_index=True)
    rows = _select(frames[frames["unit"] == "layer"], metric=metric, subset=target, pooling=pooling)
    rows = add_depth(rows, n_layers)
    cols = ["variant", "subset", "pooling", "layer", "depth", "value", "ci_low", "ci_high"]
    cols += ["chance"] if "chance" in rows else []
    return rows[cols].sort_values(["variant", "subset", "pooling", "depth"]).reset_index(drop=True)


def head_map(
    frame: pd.DataFrame,
    *,
    variant: str | None = None,
    metric: str = "probe_accuracy",
    target: str = "gender",
    pooling: str | None = "mean",
) -> pd.DataFrame:
    """Layer x head pivot of one variant's head probes (rows: block, columns: head id; NaN for pruned heads)."""
    rows = frame[frame["unit"] == "head"]
    if variant is None:
        variants = rows["variant"].unique()
        if len(variants) != 1:
            raise ValueError(f"the table holds variants {sorted(variants)}; pick one with variant=.")
        variant = variants[0]
    rows = _select(rows, variant=variant, metric=metric, subset=target, pooling=pooling)
    return rows.pivot_table(index="layer", columns="head", values="value", aggfunc="mean")


def plot_depth_curves(
    curves: pd.DataFrame,
    *,
    hue: str = "variant",
    ax: plt.Axes | None = None,
    title: str | None = None,
    ylabel: str = "probe accuracy",
) -> plt.Figure:
    """Draw :func:`depth_curves` output: one line per ``hue`` value with its fold interval as a band.

    Dotted lines mark chance (when the table has a ``chance`` column).
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    for i, (name, part) in enumerate(curves.groupby(hue, sort=False)):
        color = f"C{i}"
        ax.plot(part["depth"], part["value"], marker="o", color=color, label=str(name))
        ax.fill_between(part["depth"], part["ci_low"], part["ci_high"], color=color, alpha=0.2, linewidth=0)
        if "chance" in part:
            ax.axhline(float(part["chance"].iloc[0]), color=color, linestyle=":", linewidth=1)
    ax.set_xlabel("normalised depth (layer / n_layers; 0 = embeddings)")
    ax.set_ylabel(ylabel)
    ax.set_xlim(-0.02, 1.02)
    if title:
        ax.set_title(title)
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return ax.figure


def plot_head_map(
    grid: pd.DataFrame,
    *,
    ax: plt.Axes | None = None,
    title: str | None = None,
    label: str = "probe accuracy",
) -> plt.Figure:
    """Draw a :func:`head_map` grid as a heat map (rows: block, columns: head)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(0.4 * grid.shape[1] + 2, 0.4 * grid.shape[0] + 1.5))
    image = ax.imshow(grid.to_numpy(dtype=float), aspect="auto", cmap="viridis")
    ax.set_xticks(range(grid.shape[1]), [str(c) for c in grid.columns])
    ax.set_yticks(range(grid.shape[0]), [str(r) for r in grid.index])
    ax.set_xlabel("head")
    ax.set_ylabel("block")
    if title:
        ax.set_title(title)
    ax.figure.colorbar(image, ax=ax, label=label)
    return ax.figure
