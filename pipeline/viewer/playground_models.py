"""The models the playground computes with: loaded once per folder and kept (Streamlit's resource cache, large enough
for every model the page shows by default, so a rerun never reloads one), their class probabilities under head gates,
and the all-heads-on probabilities of a sentence and its twin, computed once per (model, sentence). Shared by the
playground (:mod:`.playground`) and its model comparison (:mod:`.playground_compare`)."""

from __future__ import annotations

import numpy as np
import streamlit as st
import torch

from pipeline.data import GenderSwapper
from pipeline.gates import HeadGates, ones_gates
from pipeline.models import LoadedModel, load_model

__all__ = ["MAX_DEFAULT", "MODELS_KEPT", "cached_model", "cached_swapper", "outcome", "probabilities"]

MAX_DEFAULT = 6  # models compared by default
MODELS_KEPT = MAX_DEFAULT + 2  # the compared models, the page's model and one more: reruns reload none of them


@st.cache_resource(show_spinner="Loading the model…", max_entries=MODELS_KEPT)
def cached_model(folder: str) -> LoadedModel:
    """The classifier saved in ``folder``, loaded once."""
    return load_model(folder, head="classifier")


@st.cache_resource(show_spinner=False)
def cached_swapper() -> GenderSwapper:
    """The gender swapper of the WinoBias lists, built once."""
    return GenderSwapper.from_winobias()


@torch.no_grad()
def probabilities(loaded: LoadedModel, texts: list[str], gates: torch.Tensor) -> torch.Tensor:
    """Class probabilities (texts, classes) of ``texts`` with the heads gated by ``gates``."""
    batch = loaded.tokenize(texts)
    with HeadGates(loaded.anatomy, gates.to(loaded.device)):
        return loaded.model(**batch).logits.float().softmax(-1).cpu()


@st.cache_data(show_spinner=False, max_entries=256)
def outcome(folder: str, text: str, twin: str) -> np.ndarray:
    """Class probabilities (2, classes) of ``text`` and ``twin`` for the model saved in ``folder``, all heads on."""
    loaded = cached_model(folder)
    return probabilities(loaded, [text, twin], ones_gates(loaded.anatomy)).numpy()
