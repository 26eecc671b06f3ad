"""The Head inspector's twin-difference view: the attention of every head on a text minus its attention on the
gender-swapped twin, one head in detail (tokens on the axes, the gendered words marked) beside a layer x head map
of the mean row L1 distance of the two patterns (0: the head attends identically, 2: disjointly).

The difference is computed only when text and twin have the same number of tokens (a swap of single-piece words):
then position i of one is position i of the other. When they differ, positions do not line up (every token after
the swapped word would be compared with its neighbour), so the view refuses and says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st
import torch

from pipeline.figures.inspector_plots import SUMMARY_LABEL
from pipeline.models import LoadedModel
from pipeline.viewer.widgets import figure, table

__all__ = [
    "TwinDifference",
    "forward_attentions",
    "head_weights",
    "hover_map",
    "row_l1",
    "twin_attention_section",
    "twin_difference",
]


def _max_length(loaded: LoadedModel) -> int:
    return int(min(128, getattr(loaded.model.config, "max_position_embeddings", 128)))


@torch.no_grad()
def forward_attentions(loaded: LoadedModel, texts: list[str]) -> tuple[dict, tuple[torch.Tensor, ...]]:
    """(the tokenised batch, attention weights per layer, each (texts, kept heads, seq, seq)) of ``texts``, cut to
    the model's positions (at most 128 tokens); the model must use eager attention."""
    batch = loaded.tokenize(texts, max_length=_max_length(loaded))
    return batch, loaded.model(**batch, output_attentions=True).attentions


def head_weights(loaded: LoadedModel, attentions: tuple[torch.Tensor, ...], row: int) -> np.ndarray:
    """The weights of text ``row`` as (layers, heads, seq, seq) indexed by original head id; heads pruned away are
    NaN (:attr:`pipeline.anatomy.Anatomy.head_ids`)."""
    ids = loaded.anatomy.head_ids
    n_heads = max([loaded.anatomy.n_heads, *(max(h) + 1 for h in ids if h)])
    seq = attentions[0].shape[-1]
    out = np.full((len(attentions), n_heads, seq, seq), np.nan, dtype=np.float64)
    for layer, weights in enumerate(attentions):
        out[layer, list(ids[layer])] = weights[row].double().cpu().numpy()
    return out


@dataclass(frozen=True)
class TwinDifference:
    """Tokens of the text and of its twin, and attention(text) − attention(twin) per head (layers, heads, seq, seq;
    None when the two have different lengths)."""

    tokens: tuple[str, ...]
    twin_tokens: tuple[str, ...]
    difference: np.ndarray | None

    @property
    def marked(self) -> tuple[int, ...]:
        """Positions whose token differs between text and twin (the gendered words)."""
        return tuple(i for i, (a, b) in enumerate(zip(self.tokens, self.twin_tokens)) if a != b)

    def labels(self) -> tuple[str, ...]:
        """Tokens written ``text/twin`` where they differ."""
        return tuple(a if a == b else f"{a}/{b}" for a, b in zip(self.tokens, self.twin_tokens))


def twin_difference(loaded: LoadedModel, text: str, twin: str) -> TwinDifference:
    """Every head's attention on ``text`` minus its attention on ``twin`` (one forward pass of both)."""
    batch, attentions = forward_attentions(loaded, [text, twin])
    keep = batch["attention_mask"].bool()
    tokens = [tuple(loaded.tokenizer.convert_ids_to_tokens(batch["input_ids"][i][keep[i]].tolist())) for i in (0, 1)]
    if len(tokens[0]) != len(tokens[1]):
        return TwinDifference(tokens[0], tokens[1], None)
    n = len(tokens[0])  # same length: no padding in either row
    weights = [head_weights(loaded, attentions, i)[..., :n, :n] for i in (0, 1)]
    return TwinDifference(tokens[0], tokens[1], weights[0] - weights[1])


def row_l1(difference: np.ndarray) -> np.ndarray:
    """Per head (layers, heads): the L1 distance of the two attention rows, averaged over the query tokens (0 to 2;
    NaN for pruned heads)."""
    return np.abs(difference).sum(axis=-1).mean(axis=-1)


def hover_map(values: np.ndarray, rows: list[str], columns: list[str], *, title: str, signed: bool) -> alt.Chart:
    """``values`` (rows x columns) as a heat map with a tooltip per cell (Altair, drawn by ``st.altair_chart``);
    ``signed``: a diverging scale centred on 0 (red: the text attends more), else greys from 0 to 2. NaN cells
    (pruned heads) are left out."""
    r, c = np.indices(values.shape)
    frame = pd.DataFrame({"row": np.asarray(rows)[r.ravel()], "column": np.asarray(columns)[c.ravel()],
                          "value": values.ravel(), "i": r.ravel(), "j": c.ravel()}).dropna()  # fmt: skip
    bound = float(np.nanmax(np.abs(values))) if signed and np.isfinite(values).any() else 2.0
    scale = (alt.Scale(scheme="redblue", reverse=True, domain=[-bound, bound]) if signed
             else alt.Scale(scheme="greys", domain=[0, 2]))  # fmt: skip
    return (
        alt.Chart(frame, title=title)
        .mark_rect()
        .encode(
            x=alt.X("column:N", sort=list(dict.fromkeys(columns)), title=None),
            y=alt.Y("row:N", sort=list(dict.fromkeys(rows)), title=None),
            color=alt.Color("value:Q", scale=scale, title=None),
            tooltip=[alt.Tooltip("row:N"), alt.Tooltip("column:N"), alt.Tooltip("value:Q", format=".3g")],
        )
    )


def twin_attention_section(loaded: LoadedModel, name: str, text: str, twin: str, layer: int, head: int) -> None:
    """The twin-difference figure and per-head table of ``text`` / ``twin`` in model ``name``, head (layer, head)."""
    st.markdown("**Text minus twin, every head**")
    if text == twin:
        st.caption("The sentence has no gendered word in the swap lists: its twin is itself, every difference is 0.")
    found = twin_difference(loaded, text, twin)
    if found.difference is None:
        st.info(
            f"The text has {len(found.tokens)} tokens and its twin {len(found.twin_tokens)}: a swapped word splits "
            "into a different number of word pieces, so positions do not line up and no difference is computed. "
            "Pick a sentence whose gendered words are single pieces in both versions."
        )
        return
    summary = row_l1(found.difference)
    figure(
        f"twin_attention_{name}_L{layer}H{head}",
        "twin_attention",
        found.labels(),
        found.difference[layer, head],
        summary,
        selected=(layer, head),
        marked=found.marked,
        title=f"{name}: attention on the text minus on its gender-swapped twin",
        caption=(
            "Left: the chosen head, attention(text) − attention(twin) (red: the text's token attends more; rows: "
            "query, columns: key; tokens written text/twin where they differ, the gendered words starred). Right: "
            "every head, the L1 distance of the two attention rows averaged over the query tokens (0: identical, "
            "2: disjoint; grey: pruned), the chosen head boxed. The two charts below show the same with each cell's "
            "value on hover; the table gives each head's value."
        ),
    )
    left, right = st.columns(2)
    labels = [f"{i}: {t}" for i, t in enumerate(found.labels())]  # positions keep repeated tokens apart
    left.altair_chart(hover_map(found.difference[layer, head], labels, labels, signed=True,
                                title=f"L{layer}.H{head}: text minus twin (hover: query, key, value)"))  # fmt: skip
    right.altair_chart(hover_map(summary, [f"L{l}" for l in range(summary.shape[0])],
                                 [f"H{h}" for h in range(summary.shape[1])], signed=False,
                                 title="every head: row L1, text vs twin (hover)"))  # fmt: skip
    grid = pd.DataFrame(summary, columns=[f"head {h}" for h in range(summary.shape[1])]).round(4)
    table(f"twin_attention_{name}", grid.rename_axis("layer").reset_index())
    st.caption(f"Rows: layers; values: {SUMMARY_LABEL.replace(chr(10), ' ')} per head.")
