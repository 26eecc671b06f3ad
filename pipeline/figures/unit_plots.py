"""Figures of single units, re-exported by :mod:`pipeline.figures.plots`: one example's tokens coloured by their
attribution (:func:`token_attributions`) and the top FFN neurons (:func:`top_neurons`)."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from pipeline.data import GENDER_NAMES
from pipeline.figures.head_maps import _norm
from pipeline.figures.style import FIGURE_SIZES, FLAG_COLOUR, SIGNED_CMAP, colourbar_label, grown_height, select, styled

__all__ = ["describe_value", "token_attributions", "token_pieces", "top_neurons"]

_NO_SPACE_BEFORE = frozenset(",.;:!?)]}%'\"") | {"'s", "n't", "...", "''"}
_NO_SPACE_AFTER = frozenset("([{$#@")


def token_pieces(tokens: Sequence[str]) -> list[tuple[str, bool]]:
    """(display text, whether a space goes before it) of each WordPiece token: a ``##`` piece joins the token before
    it ("ins", "##tagram" -> "instagram"), closing punctuation joins the word before, and nothing follows an
    opening bracket with a space."""
    out, previous = [], None
    for token in tokens:
        text = token[2:] if token.startswith("##") and len(token) > 2 else token
        space = not (token.startswith("##") and len(token) > 2) and text not in _NO_SPACE_BEFORE
        if previous is not None and previous in _NO_SPACE_AFTER:
            space = False
        out.append((text, space and previous is not None))
        previous = text
    return out


def describe_value(column: str, value, label_names: Sequence[str] | None = None) -> str:
    """A label / prediction / gender id as its name (``gender 1.0`` -> ``female``; class ids through
    ``label_names``); anything else as written."""
    number = pd.to_numeric(pd.Series([value]), errors="coerce").iloc[0]
    if column == "gender" and number in (0, 1):
        return GENDER_NAMES[int(number)]
    if (
        column in ("label", "pred")
        and label_names
        and pd.notna(number)
        and float(number).is_integer()
        and 0 <= int(number) < len(label_names)
    ):
        return str(label_names[int(number)])
    if pd.notna(number) and float(number).is_integer():
        return str(int(number))
    return str(value)


def _only_metric(frame: pd.DataFrame, unit: str) -> str:
    metrics = sorted(set(frame.loc[frame["unit"] == unit, "metric"]))
    if len(metrics) != 1:
        raise ValueError(f"the {unit} rows hold metrics {metrics}; pass metric= to choose one.")
    return metrics[0]


@styled
def token_attributions(
    frame: pd.DataFrame,
    example: int,
    *,
    variant: str | None = None,
    seed: int | None = None,
    metric: str | None = None,
    vlim: float | None = None,
    label_names: Sequence[str] | None = None,
    flag: str | None = None,
) -> Figure:
    """One example's tokens as text, each on a background coloured by its attribution (diverging, centred at
    zero); ``##`` pieces and closing punctuation join the word before them, padding is dropped, tokens that do not
    fit are counted. Double column, 7.0 x 2.0 in.

    Args:
        frame: the ``token_ig`` table (unit token; columns example, position, token; label, gender, pred shown
            when present, as names).
        example: the example id.
        variant, seed: which model (seed defaults to the smallest present).
        metric: the attribution metric (default: the only one of unit token).
        vlim: colour limit (default: this example's largest |attribution|); give one value to several examples
            or models to put them on one absolute scale.
        label_names: class names for the label and prediction ids.
        flag: why the model is not fit to be read, or None.
    """
    metric = metric or _only_metric(frame, "token")
    rows = select(frame[frame["example"] == example], "token", metric, variant)
    seed = int(rows["seed"].min()) if seed is None else seed
    rows = rows[(rows["seed"] == seed) & (rows["token"] != "[PAD]")].sort_values("position")
    if rows.empty:
        raise ValueError(f"example {example} has no tokens for seed {seed}; seeds: {sorted(set(frame['seed']))}.")
    norm, cmap_name = _norm(rows["value"].to_numpy(), metric, True, vlim)
    cmap = matplotlib.colormaps[cmap_name]
    width, height = FIGURE_SIZES["token_attributions"]
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    renderer = fig.canvas.get_renderer()
    first = rows.iloc[0]
    info = "  ·  ".join(
        f"{c} {describe_value(c, first[c], label_names)}" for c in ("label", "pred", "gender") if c in rows
    )
    head = f"{first['variant']} seed {seed}, example {int(example)}   {info}"
    fig.text(0.01, 0.95, head[:110], va="top", fontsize=8)
    if flag:
        fig.text(0.99, 0.95, "not fit to be read", va="top", ha="right", fontsize=7, color=FLAG_COLOUR)
    x, y, line_h, left, right, shown, space_w = 0.01, 0.8, 0.1, 0.01, 0.99, 0, 0.006
    for (text, space), value in zip(token_pieces(rows["token"].astype(str).tolist()), rows["value"]):
        x += space_w if space else 0.0
        colour = cmap(norm(value))
        dark = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2] < 0.5
        artist = fig.text(
            x,
            y,
            text,
            va="top",
            fontsize=7,
            color="white" if dark else "black",
            bbox={"boxstyle": "square,pad=0.12", "fc": colour, "ec": "none"},
        )
        w = artist.get_window_extent(renderer).width / (width * fig.dpi)
        if x + w > right and x > left + space_w:
            x, y = left, y - line_h
            if y < 0.45:
                artist.remove()
                break
            artist.set_position((x, y))
        x += w
        shown += 1
    if shown < len(rows):
        fig.text(right, 0.40, f"(+{len(rows) - shown} tokens not shown)", ha="right", fontsize=7, color="#666666")
    cax = fig.add_axes((0.3, 0.34, 0.4, 0.05))
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), cax=cax, orientation="horizontal")
    cax.tick_params(labelsize=6)
    cax.xaxis.set_major_locator(MaxNLocator(5))
    cax.set_xlabel(
        colourbar_label(metric, rows).replace("\n", ";  ") + ("" if vlim is None else "  (shared scale)"),
        fontsize=6,
        labelpad=1,
    )
    return fig


@styled
def top_neurons(
    frame: pd.DataFrame,
    k: int = 10,
    *,
    variant: str | None = None,
    metric: str = "ig",
    alpha: float = 0.05,
    flag: str | None = None,
) -> Figure:
    """The ``k`` FFN neurons with the largest absolute effect (mean over seeds), as bars with CIs, labelled
    ``L<layer> n<index>``; red = positive, blue = negative; bars whose q-value is not below ``alpha`` in every seed
    are faded. Single column, 3.35 in wide, 2.6 in high for ten bars (+0.13 in per further bar)."""
    if k < 1:
        raise ValueError(f"k={k!r}: give the number of neurons to show (>= 1).")
    rows = select(frame, "neuron", metric, variant)
    if "q" in rows and rows["q"].notna().any():
        rows = rows.assign(sig=(rows["q"] < alpha).astype(float))
    means = rows.groupby(["layer", "head"])[[c for c in ("value", "ci_low", "ci_high", "sig") if c in rows]].mean()
    top = means.loc[means["value"].abs().sort_values(ascending=False, kind="stable").index[:k]][::-1]
    cmap = matplotlib.colormaps[SIGNED_CMAP]
    fig = Figure(
        figsize=(FIGURE_SIZES["top_neurons"][0], grown_height("top_neurons", bars=len(top))), layout="constrained"
    )
    ax = fig.add_subplot()
    y = np.arange(len(top))
    errors = np.abs(np.stack([top["value"] - top["ci_low"], top["ci_high"] - top["value"]]))
    faded = (top["sig"] < 1).to_numpy() if "sig" in top else np.zeros(len(top), dtype=bool)
    colours = [(*cmap(0.85 if v >= 0 else 0.15)[:3], 0.35 if f else 1.0) for v, f in zip(top["value"], faded)]
    ax.barh(
        y,
        top["value"],
        xerr=np.nan_to_num(errors) if np.isfinite(errors).any() else None,
        height=0.7,
        color=colours,
        error_kw={"lw": 0.6, "capsize": 1.5},
    )
    ax.set_yticks(y, [f"L{layer} n{neuron}" for layer, neuron in top.index], fontsize=6 if len(top) > 20 else 7)
    ax.axvline(0, color="#888888", lw=0.5)
    ax.xaxis.set_major_locator(MaxNLocator(4))
    ax.ticklabel_format(axis="x", style="sci", scilimits=(-2, 3))
    ax.set_xlabel(colourbar_label(metric, rows).replace("\n", "; ").replace("integrated gradients", "IG"), fontsize=6)
    n = int(rows["n"].max()) if "n" in rows and rows["n"].notna().any() else None
    seeds = rows["seed"].nunique()
    facts = ", ".join(
        f
        for f in (
            f"{seeds} seeds" if seeds > 1 else "",
            f"n = {n}" if n else "",
            f"faded: q ≥ {alpha:g}" if faded.any() else "",
        )
        if f
    )
    ax.set_title(
        f"{rows['variant'].iloc[0]}: top {len(top)} neurons"
        + (f"\n({facts})" if facts else "")
        + ("\nnot fit to be read" if flag else ""),
        fontsize=7,
        color=FLAG_COLOUR if flag else "black",
    )
    return fig
