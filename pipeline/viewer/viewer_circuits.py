"""The viewer's Circuits page: a model's bias circuit at an adjustable threshold, the teacher beside its students.

It reads the ``eap_edges`` table (every edge's mean EAP score over the attribution examples, with its bootstrap
interval) and the ``circuit`` table (the circuit the run found: the smallest top-ranked edge set that carries
``attribution.eap_method.CIRCUIT_SHARE`` of the bias on held-out examples, with the share it carries). The
threshold keeps the top ``k`` edges by |score| (optionally only those whose interval excludes 0); at ``k`` = the
circuit's size of each model the figure is the run's circuit and says what share of the bias it carries. A head of
the shown edges opens in the Head inspector.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from pipeline.viewer.navigation import open_in_inspector
from pipeline.viewer.playground import DEFAULT_SENTENCE
from pipeline.viewer.widgets import NOT_ATTRIBUTED, Selection, figure, flag_notice, load, missing, table, variants_of

__all__ = ["circuits", "shown_edges"]

_COLUMNS = ["variant", "seed", "source", "target", "value", "ci_low", "ci_high", "n"]


def shown_edges(edges: pd.DataFrame, k: int, *, excluding_zero: bool = False) -> pd.DataFrame:
    """The top ``k`` edges by |mean EAP score| of each (variant, seed) of ``edges`` (``eap_edges`` rows), largest
    first; with ``excluding_zero``, only edges whose interval excludes 0 are ranked."""
    rows = edges[edges["unit"] == "edge"].copy()
    rows["source"], rows["target"] = rows["subset"].str.split("->", n=1).str[0], rows["subset"].str.split("->").str[1]
    if excluding_zero:
        rows = rows[(rows["ci_low"] > 0) | (rows["ci_high"] < 0)]
    rows = rows.assign(size=rows["value"].abs()).sort_values(["variant", "seed", "size"], ascending=[True, True, False])
    return rows.groupby(["variant", "seed"], sort=False).head(k)[_COLUMNS].reset_index(drop=True)


def _as_circuit(shown: pd.DataFrame, circuit: pd.DataFrame | None, k_found: dict) -> pd.DataFrame:
    """``shown`` in the ``circuit`` table's form (``circuit_edge`` rows), with the run's recovered share for each
    model whose shown edges are exactly its found circuit's size."""
    frame = shown.assign(metric="circuit_edge", unit="edge")
    if circuit is None:
        return frame
    counts = shown.groupby(["variant", "seed"]).size()
    recovered = circuit[circuit["metric"] == "circuit_recovered"]
    keep = [
        (v, s) in counts.index and counts[(v, s)] == k_found.get((v, s))
        for v, s in zip(recovered["variant"], recovered["seed"])
    ]
    return pd.concat([frame, recovered[keep]], ignore_index=True)


def _found_sizes(circuit: pd.DataFrame | None) -> dict[tuple[str, int], int]:
    if circuit is None:
        return {}
    sizes = circuit[circuit["metric"] == "circuit_size"]
    return {(v, int(s)): int(n) for v, s, n in zip(sizes["variant"], sizes["seed"], sizes["value"])}


def circuits(view: Selection) -> None:
    edges = load(view, "eap_edges")
    if edges is None:
        missing(view, "eap_edges")
        return
    if edges.empty or not (edges["unit"] == "edge").any():
        st.info(NOT_ATTRIBUTED)
        return
    circuit = load(view, "circuit")
    found = _found_sizes(circuit)
    models = variants_of(edges[edges["unit"] == "edge"])
    chosen = st.multiselect("Models", models, default=models[:4], key="circuit_models")
    if not chosen:
        st.info("Pick at least one model.")
        return
    flag_notice(view, chosen)
    default = max((n for (v, _), n in found.items() if v in chosen), default=10)
    cols = st.columns([3, 2])
    scored = edges[(edges["unit"] == "edge") & edges["variant"].isin(chosen)]
    top = max(2, min(int(scored.groupby(["variant", "seed"]).size().max()), max(60, default)))  # a circuit fits
    k = cols[0].slider("Edges shown per model (top k by |EAP score|)", 1, top, min(default, top), key="circuit_k")
    firm = cols[1].checkbox("Only edges whose interval excludes 0", key="circuit_firm")
    shown = shown_edges(edges[edges["variant"].isin(chosen)], k, excluding_zero=firm)
    if shown.empty:
        st.info("No edge passes this threshold; lower it or untick the interval filter.")
        return
    sizes = ", ".join(f"{v} s{s}: {n}" for (v, s), n in sorted(found.items()) if v in chosen)
    figure(
        f"circuit_top{k}",
        "circuit_figure",
        _as_circuit(shown, circuit, found),
        edges[edges["variant"].isin(chosen)],
        caption="Edges into each head's input, each FFN block and the readout, scored by edge attribution patching "
        "from the gender-swapped twin (Syed et al. 2023) on the skew-oriented gap; vermilion adds to each model's "
        "own bias, blue reduces it; width ∝ |score|. At k = a model's circuit size ("
        + (sizes or "none found")
        + ") its panel is the run's circuit and its title gives the share of the bias it carries on held-out "
        "examples.",
    )
    table(f"circuit_edges_top{k}", shown)
    heads = sorted({n for n in (*shown["source"], *shown["target"]) if ".H" in n}, key=_node_order)
    if heads:
        left, right = st.columns([3, 1])
        variant = left.selectbox("Model to inspect", chosen, key="circuit_inspect_model")
        node = right.selectbox("Head", heads, key="circuit_inspect_head")
        layer, head = (int(p[1:]) for p in node.split("."))
        seed = int(shown.loc[shown["variant"] == variant, "seed"].min()) if (shown["variant"] == variant).any() else 0
        st.button(
            f"Open {node} of {variant} in the Head inspector",
            on_click=_open_head,
            args=(variant, seed, layer, head),
            key="circuit_open",
        )


def _node_order(name: str) -> tuple[int, int]:
    layer, head = name.split(".")
    return int(layer[1:]), int(head[1:])


def _open_head(variant: str, seed: int, layer: int, head: int) -> None:
    """Widget callback: the Head inspector on this model and head, with the sentence it shows last (or its default)."""
    st.session_state["inspect_layer"], st.session_state["inspect_head"] = layer, head
    open_in_inspector(st.session_state.get("inspect_text", DEFAULT_SENTENCE), variant, seed)
