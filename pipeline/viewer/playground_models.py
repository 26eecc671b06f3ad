"""The models the playground computes with: loaded once per folder and kept (Streamlit's resource cache), and their
class probabilities under head gates. Shared by the playground (:mod:`.playground`) and its model comparison
(:mod:`.playground_compare`)."""

from __future__ import annotations

import streamlit as st
import torch

from pipeline.data import GenderSwapper
from pipeline.gates import HeadGates
from pipeline.models import LoadedModel, load_model

__all__ = ["cached_model", "cached_swapper", "probabilities"]


@st.cache_resource(show_spinner="Loading the model…", max_entries=4)
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
