"""The bias-circuit figure: the teacher's circuit beside each student's (``circuit`` table of
:mod:`attribution.eap_method`), nodes by layer and head, edges weighted by |EAP score| and coloured by sign.

Each panel is one model (smallest seed): rows are the embeddings (bottom), the layers and the readout (top); a
layer's heads are its points from the left, its FFN block the rightmost point (square). Every node of the model is
a small grey point (the ``eap_edges`` table gives the model's shape, else the circuit's own nodes), the circuit's
nodes are black and its edges are lines whose width grows with |mean EAP score| (on one scale for all panels),
vermilion where the edge adds to the skew-oriented gap (a positive score), blue where it reduces it.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from pipeline.figures.style import FIGURE_SIZES, PALETTE, styled

__all__ = ["ADDS", "REDUCES", "circuit_figure", "node_xy"]

ADDS, REDUCES = PALETTE[1], PALETTE[0]  # vermilion, blue


def node_xy(name: str, n_layers: int, width: int) -> tuple[float, float]:
    """Where node ``name`` (``emb``, ``L1.H3``, ``L1.FFN``, ``readout``) sits in a panel of ``n_layers`` layers whose
    widest layer has ``width`` heads: x = head (FFN block at ``width``), y = layer + 1 (emb 0, readout on top)."""
    if name in ("emb", "readout"):
        return width / 2, 0.0 if name == "emb" else n_layers + 1.0
    match = re.fullmatch(r"L(\d+)\.(H(\d+)|FFN)", name)
    if match is None:
        raise ValueError(f"{name!r} is not a node name (emb, L<layer>.H<head>, L<layer>.FFN, readout).")
    x = width if match.group(2) == "FFN" else int(match.group(3))
    return float(x), int(match.group(1)) + 1.0


def _shape(edges: pd.DataFrame) -> tuple[int, int]:
    """(layers, heads of the widest layer) of a model from its edge rows."""
    layers = pd.concat([edges["layer"], edges["source_layer"]])
    heads = pd.concat([edges["head"], edges["source_head"]])
    return int(layers.max()) + 1, int(heads.max()) + 1


def _models(circuit: pd.DataFrame, teacher: str, max_models: int) -> list[tuple[str, int]]:
    edges = circuit[circuit["metric"] == "circuit_edge"]
    if edges.empty:
        raise ValueError("the circuit table has no circuit edges (every model skipped).")
    seeds = edges.groupby("variant")["seed"].min()
    order = [teacher] * (teacher in seeds.index) + sorted(v for v in seeds.index if v != teacher)
    return [(v, int(seeds[v])) for v in order[:max_models]]


@styled
def circuit_figure(
    circuit: pd.DataFrame, eap_edges: pd.DataFrame | None = None, *, teacher: str = "teacher-ft", max_models: int = 4
) -> Figure:
    """The circuits of the teacher and up to ``max_models`` - 1 other models side by side (module docstring).

    Raises:
        ValueError: the table holds no circuit edge.
    """
    models = _models(circuit, teacher, max_models)
    fig = Figure(figsize=FIGURE_SIZES["circuit_figure"], layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(models), squeeze=False)[0]
    chosen = circuit[circuit["metric"] == "circuit_edge"]
    scale = float(chosen["value"].abs().max()) or 1.0
    for ax, (variant, seed) in zip(axes, models, strict=True):
        mine = chosen[(chosen["variant"] == variant) & (chosen["seed"] == seed)]
        everything = mine
        if eap_edges is not None:
            rows = eap_edges[(eap_edges["variant"] == variant) & (eap_edges["seed"] == seed)]
            everything = rows[rows["unit"] == "edge"] if (rows["unit"] == "edge").any() else mine
        n_layers, width = _shape(everything)
        names = set(everything["source"]) | set(everything["target"])
        xy = np.array([node_xy(n, n_layers, width) for n in sorted(names)])
        ax.scatter(xy[:, 0], xy[:, 1], s=4, color="#bbbbbb", zorder=1)
        for _, edge in mine.iterrows():
            (x0, y0), (x1, y1) = node_xy(edge["source"], n_layers, width), node_xy(edge["target"], n_layers, width)
            colour = ADDS if edge["value"] > 0 else REDUCES
            ax.plot([x0, x1], [y0, y1], color=colour, lw=0.4 + 2.6 * abs(edge["value"]) / scale, alpha=0.8, zorder=2)
        inner = set(mine["source"]) | set(mine["target"])
        for name in inner:
            x, y = node_xy(name, n_layers, width)
            ax.scatter([x], [y], s=14, color="black", marker="s" if name.endswith("FFN") else "o", zorder=3)
        recovered = circuit[(circuit["variant"] == variant) & (circuit["seed"] == seed)
                            & (circuit["metric"] == "circuit_recovered")]["value"]  # fmt: skip
        share = f", {recovered.iloc[0]:.0%} of bias" if len(recovered) and np.isfinite(recovered.iloc[0]) else ""
        ax.set_title(f"{variant} s{seed}: {len(mine)} edges{share}", fontsize=7)
        ax.set_yticks(range(n_layers + 2), ["emb", *(f"L{i}" for i in range(n_layers)), "out"])
        ax.set_xticks([0, width], ["H0", "FFN"])
        ax.set_xlim(-0.8, width + 0.8)
        ax.set_ylim(-0.6, n_layers + 1.6)
        ax.set_xlabel("head")
    handles = [Line2D([], [], color=ADDS, lw=1.5), Line2D([], [], color=REDUCES, lw=1.5)]
    fig.legend(handles, ["adds bias", "reduces bias"], fontsize=6, loc="outside lower center", ncols=2)
    return fig
