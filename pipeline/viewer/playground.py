"""The viewer's Playground page: type a sentence, switch heads off, see the prediction and the counterfactual gap
move; then the same sentence in several models side by side (prediction, gap, token attributions). It computes: it
loads saved variants through the base (:func:`pipeline.models.load_model`), gates heads with
:class:`pipeline.gates.HeadGates` and explains tokens with :class:`attribution.ig.TokenIntegratedGradients`. It opens
on a variant whose classifier head was trained; untrained heads are marked in the picker and warned about when
chosen; each head's checkbox carries the effect measured for it (red: adds to the model's bias, blue: reduces it,
grey: not significant).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import streamlit as st
import torch

from pipeline.figures.style import bias_sign, model_total
from pipeline.gates import ones_gates
from pipeline.runs.runfolder import RunFolder, head_trained
from pipeline.viewer.playground_compare import compare_models, signed
from pipeline.viewer.playground_models import cached_model, cached_swapper, outcome, probabilities
from pipeline.viewer.viewer_heads import head_sources
from pipeline.viewer.widgets import findings_config, load, point_flags

__all__ = ["DEFAULT_SENTENCE", "effect_labels", "open_in_playground", "playground"]

DEFAULT_SENTENCE = "She recorded her first [MASK] album with him in Nashville."
_WANTED = "play_wanted"  # (variant, seed) another page asked the Playground to open on
HEADS_PER_ROW = 6  # heads per row of the gate grid: room for a label such as "+0.0012" in a 1400 px window


def open_in_playground(text: str, variant: str, seed: int) -> None:
    """Widget callback: switch to the Playground with sentence ``text`` and model ``variant`` / ``seed`` chosen (when
    it has a saved model among the sidebar's selection)."""
    st.session_state["play_text"] = text
    st.session_state[_WANTED] = (variant, int(seed))
    st.session_state["page"] = "Playground"


def effect_labels(
    rows: pd.DataFrame | None, metric: str, total: float | None, alpha: float = 0.05
) -> dict[tuple[int, int], str]:
    """(layer, head) -> a coloured label of the head's measured ``metric`` (mean over the rows' seeds): red when it
    adds to the model's bias (its sign relative to the model's score ``total``,
    :func:`pipeline.figures.style.bias_sign`), blue when it reduces it, grey when q >= alpha in some seed (or the
    sign rule is unknown)."""
    if rows is None or rows.empty:
        return {}
    sign = bias_sign(metric, total)
    q = rows["q"] if "q" in rows else pd.Series(np.nan, index=rows.index)
    means = rows.assign(q=q).groupby(["layer", "head"]).agg(value=("value", "mean"), q=("q", "max"))
    out = {}
    for (layer, head), r in means.iterrows():
        colour = "gray" if sign is None or not r["q"] < alpha else ("red" if np.sign(r["value"]) == sign else "blue")
        out[(int(layer), int(head))] = f":{colour}[{r['value']:+.2g}]"
    return out


def _gate_grid(anatomy, key: str, labels: dict[tuple[int, int], str] | None = None) -> torch.Tensor:
    """A layer x head grid of checkboxes (labelled with the head's measured effect when ``labels`` has it); an
    unticked box closes that head's gate. Wide layers are drawn in blocks of at most :data:`HEADS_PER_ROW` heads
    (heads 0-5 of every layer, then 6-11, ...), so each label keeps room for its digits (12 heads in one row left
    "+." at 1400 px)."""
    labels = labels or {}
    gates = ones_gates(anatomy)
    width = min(HEADS_PER_ROW, anatomy.n_heads)
    for start in range(0, anatomy.n_heads, width):
        shown = range(start, min(start + width, anatomy.n_heads))
        header = st.columns(width + 1)
        for i, h in enumerate(shown):
            header[i + 1].caption(f"H{h}")
        for layer in range(anatomy.n_layers):
            cells = st.columns(width + 1)
            cells[0].caption(f"L{layer}")
            for i, h in enumerate(h for h in shown if h < anatomy.heads_per_layer[layer]):
                head_id = anatomy.head_ids[layer][h]
                text = labels.get((layer, head_id))
                on = cells[i + 1].checkbox(
                    text or f"layer {layer} head {h}",
                    value=True,
                    key=f"{key}:{layer}:{h}",
                    label_visibility="visible" if text else "collapsed",
                    help=f"layer {layer}, head {head_id}",
                )
                gates[layer, h] = float(on)
    return gates


def _effects(view, name: str, seed: int) -> tuple[dict, str]:
    """Head labels for the grid from the head map the user picks (none when the variant was not attributed)."""
    options = {}
    for label, (table_name, metrics) in head_sources().items():
        frame = load(view, table_name)
        if frame is None:
            continue
        mine = frame[(frame["variant"] == name) & (frame["seed"] == seed)]
        metric = next((m for m in metrics if ((mine["unit"] == "head") & (mine["metric"] == m)).any()), None)
        if metric is not None:
            options[label] = (mine, metric)
    if not options:
        return {}, ""
    label = st.selectbox("Label heads with their measured effect", ["none", *options], index=1, key="play_effect")
    if label == "none":
        return {}, ""
    mine, metric = options[label]
    rows = mine[(mine["unit"] == "head") & (mine["metric"] == metric)]
    if "mode" in rows and (rows["mode"].fillna("") == "single").any():
        rows = rows[rows["mode"].fillna("") == "single"]
    alpha = findings_config(view).alpha
    return effect_labels(rows, metric, model_total(mine, metric), alpha), (
        f"Labels: {label} of each head (seed {seed}); red = adds to the model's bias, blue = reduces it, grey = not "
        f"significant (q ≥ {alpha:g}) or no sign rule."
    )


def _choices(view) -> tuple[list, Callable]:
    runs = [RunFolder(p) for p in view.runs]
    prefix = (lambda r: f"{r.name}/") if len(runs) > 1 else (lambda r: "")
    choices = [
        (r, v, s) for r in runs for v, s in r.saved_models() if prefix(r) + v in view.variants and s in view.seeds
    ]
    return choices, prefix


def _trained(c) -> bool:
    return head_trained(c[0].model_dir(c[1], c[2])) is not False and c[1] != "teacher"


def playground(view, table: Callable[[str, pd.DataFrame], None]) -> None:
    """The page for the sidebar's selection ``view``; ``table`` shows a frame with its download button."""
    choices, prefix = _choices(view)
    if not choices:
        st.info(
            "No saved model for the selected variants and seeds: the pipeline saves each variant under "
            "models/<variant>/seed<k>/ (run `bias-atlas run CONFIG`)."
        )
        return
    flags = point_flags(view)  # trained heads first, fit ones before them: the default's outputs mean something
    choices.sort(key=lambda c: (not _trained(c), (prefix(c[0]) + c[1], c[2]) in flags))
    wanted = st.session_state.pop(_WANTED, None)
    chosen = next((c for c in choices if (prefix(c[0]) + c[1], c[2]) == wanted), None)
    if chosen is not None:
        st.session_state["play_model"] = chosen
    run, variant, seed = st.selectbox(
        "Model",
        choices,
        key="play_model",
        format_func=lambda c: (
            f"{prefix(c[0])}{c[1]} (seed {c[2]})"
            + (
                " — untrained head"
                if not _trained(c)
                else " — not fit to be read"
                if (prefix(c[0]) + c[1], c[2]) in flags
                else ""
            )
        ),
    )
    if not _trained((run, variant, seed)):
        st.warning(
            f"{variant}'s classifier head was never trained on the task (fine-tuning order 'none'): its "
            "probabilities are those of a random head, so its prediction and gap mean nothing."
        )
    try:
        loaded = cached_model(str(run.model_dir(variant, seed)))
    except (OSError, ValueError) as err:
        st.error(f"Cannot load {variant} seed {seed}: {err}")
        return
    text = st.text_input("Sentence", DEFAULT_SENTENCE, key="play_text")
    try:
        twin = cached_swapper().swap(text)
        st.markdown(f"Gender-swapped twin: *{twin}*")
    except FileNotFoundError as err:
        st.warning(f"No gender swap lists, so no twin: {err}")
        twin = text
    labels, legend = _effects(view, prefix(run) + variant, seed)
    st.caption("Untick a head to switch it off (its output is replaced by zero). " + legend)
    gates = _gate_grid(loaded.anatomy, f"gate:{run.name}:{variant}:{seed}", labels)
    full = torch.from_numpy(outcome(str(run.model_dir(variant, seed)), text, twin))  # cached per sentence
    gated = full if bool((gates == 1).all()) else probabilities(loaded, [text, twin], gates)
    names = [loaded.model.config.id2label.get(i, str(i)) for i in range(full.shape[1])]
    pred, pred_full = int(gated[0].argmax()), int(full[0].argmax())
    gap, gap_full = float(gated[0, pred] - gated[1, pred]), float(full[0, pred_full] - full[1, pred_full])
    left, right = st.columns(2)
    left.metric(
        "Prediction", names[pred], delta=None if pred == pred_full else f"was {names[pred_full]}", delta_color="off"
    )
    right.metric(
        "Counterfactual gap P(ŷ|text) − P(ŷ|twin)", signed(gap), delta=signed(gap - gap_full) or None, delta_color="off"
    )
    table(
        "playground",
        pd.DataFrame(
            {
                "class": names,
                "P(text), all heads": full[0].numpy(),
                "P(text)": gated[0].numpy(),
                "P(twin)": gated[1].numpy(),
            }
        ),
    )
    st.caption(f"{int((gates == 0).sum())} of {sum(loaded.anatomy.heads_per_layer)} heads off.")
    compare_models(view, text, twin, [c for c in choices if _trained(c)], (run, variant, seed), prefix, table)
