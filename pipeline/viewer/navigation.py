"""Opening the Head inspector from another page (Examples, Circuits, the inspector's own lineage view): a widget
callback that writes the session state the inspector reads on its next run. Kept apart from the inspector so that
the views it shows can link back to it without an import cycle."""

from __future__ import annotations

import streamlit as st

__all__ = ["INSPECT_WANTED", "open_in_inspector"]

INSPECT_WANTED = "inspect_wanted"  # (variant, seed) another page asked the inspector to open on


def open_in_inspector(text: str, variant: str, seed: int) -> None:
    """Widget callback: switch to the Head inspector with sentence ``text`` and model ``variant`` / ``seed`` chosen
    (when it has a saved model among the sidebar's selection)."""
    st.session_state["inspect_text"] = text
    st.session_state[INSPECT_WANTED] = (variant, int(seed))
    st.session_state["page"] = "Head inspector"
