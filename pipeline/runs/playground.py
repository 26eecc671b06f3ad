"""The viewer's Playground page: type a sentence, switch heads off, see the prediction and the counterfactual gap
move. The one page that computes: it loads a saved variant through the base (:func:`pipeline.models.load_model`)
and gates heads with :class:`pipeline.gates.HeadGates`. It opens on a variant whose classifier head was trained;
untrained heads are marked in the picker and warned about when chosen.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import streamlit as st
import torch

from pipeline.data import GenderSwapper
from pipeline.gates import HeadGates, ones_gates
from pipeline.models import LoadedModel, load_model
from pipeline.runs.runfolder import RunFolder, head_trained

__all__ = ["DEFAULT_SENTENCE", "playground"]

DEFAULT_SENTENCE = "She recorded her first [MASK] album with him in Nashville."


@st.cache_resource(show_spinner="Loading the model…", max_entries=4)
def _model(folder: str) -> LoadedModel:
    return load_model(folder, head="classifier")


@st.cache_resource(show_spinner=False)
def _swapper() -> GenderSwapper:
    return GenderSwapper.from_winobias()


@torch.no_grad()
def _probabilities(loaded: LoadedModel, texts: list[str], gates: torch.Tensor) -> torch.Tensor:
    batch = loaded.tokenize(texts)
    with HeadGates(loaded.anatomy, gates.to(loaded.device)):
        return loaded.model(**batch).logits.float().softmax(-1).cpu()  # (texts, classes)


def _gate_grid(anatomy, key: str) -> torch.Tensor:
    """A layer x head grid of checkboxes; an unticked box closes that head's gate."""
    gates = ones_gates(anatomy)
    header = st.columns(anatomy.n_heads + 1)
    for h in range(anatomy.n_heads):
        header[h + 1].caption(f"H{h}")
    for layer in range(anatomy.n_layers):
        cells = st.columns(anatomy.n_heads + 1)
        cells[0].caption(f"L{layer}")
        for h in range(anatomy.heads_per_layer[layer]):
            on = cells[h + 1].checkbox(f"layer {layer} head {h}", value=True, key=f"{key}:{layer}:{h}",
                                       label_visibility="collapsed")
            gates[layer, h] = float(on)
    return gates


def playground(view, table: Callable[[str, pd.DataFrame], None]) -> None:
    """The page for the sidebar's selection ``view``; ``table`` shows a frame with its download button."""
    runs = [RunFolder(p) for p in view.runs]
    prefix = (lambda r: f"{r.name}/") if len(runs) > 1 else (lambda r: "")
    choices = [(r, v, s) for r in runs for v, s in r.saved_models()
               if prefix(r) + v in view.variants and s in view.seeds]
    if not choices:
        st.info("No saved model for the selected variants and seeds: the pipeline saves each variant under "
                "models/<variant>/seed<k>/ (run `bias-atlas run CONFIG`).")
        return
    def trained(c) -> bool:
        return head_trained(c[0].model_dir(c[1], c[2])) is not False and c[1] != "teacher"

    choices.sort(key=lambda c: not trained(c))  # trained heads first: the default is one whose outputs mean something
    run, variant, seed = st.selectbox(
        "Model", choices, key="play_model",
        format_func=lambda c: f"{prefix(c[0])}{c[1]} (seed {c[2]})" + ("" if trained(c) else " — untrained head"))
    if not trained((run, variant, seed)):
        st.warning(f"{variant}'s classifier head was never trained on the task (fine-tuning order 'none'): its "
                   "probabilities are those of a random head, so its prediction and gap mean nothing.")
    try:
        loaded = _model(str(run.model_dir(variant, seed)))
    except (OSError, ValueError) as err:
        st.error(f"Cannot load {variant} seed {seed}: {err}")
        return
    text = st.text_input("Sentence", DEFAULT_SENTENCE, key="play_text")
    try:
        twin = _swapper().swap(text)
        st.markdown(f"Gender-swapped twin: *{twin}*")
    except FileNotFoundError as err:
        st.warning(f"No gender swap lists, so no twin: {err}")
        twin = text
    st.caption("Untick a head to switch it off (its output is replaced by zero).")
    gates = _gate_grid(loaded.anatomy, f"gate:{run.name}:{variant}:{seed}")
    full, gated = (_probabilities(loaded, [text, twin], g) for g in (ones_gates(loaded.anatomy), gates))
    names = [loaded.model.config.id2label.get(i, str(i)) for i in range(full.shape[1])]
    pred, pred_full = int(gated[0].argmax()), int(full[0].argmax())
    gap, gap_full = float(gated[0, pred] - gated[1, pred]), float(full[0, pred_full] - full[1, pred_full])
    left, right = st.columns(2)
    left.metric("Prediction", names[pred], delta=None if pred == pred_full else f"was {names[pred_full]}",
                delta_color="off")
    right.metric("Counterfactual gap P(ŷ|text) − P(ŷ|twin)", f"{gap:+.3f}", delta=f"{gap - gap_full:+.3f}",
                 delta_color="off")
    table("playground", pd.DataFrame({"class": names, "P(text), all heads": full[0].numpy(),
                                      "P(text)": gated[0].numpy(), "P(twin)": gated[1].numpy()}))
    st.caption(f"{int((gates == 0).sum())} of {sum(loaded.anatomy.heads_per_layer)} heads off.")
