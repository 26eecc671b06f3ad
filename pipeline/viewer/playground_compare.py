"""The Playground's second half: the typed sentence in several saved models side by side (teacher and students):
each model's prediction, its counterfactual gap P(ŷ | text) - P(ŷ | twin), and the tokens' integrated-gradients
attributions of that gap (:func:`pipeline.runs.live.twin_token_ig`: token IG from the twin, Sundararajan et al.
2017: they add up to the gap, and the swapped words carry it) on one colour scale. Models not fit to be read are
named; int8 models have no gradients and get their prediction only; a twin of another token length gets no token
attributions (it cannot be the baseline position by position)."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import streamlit as st

from pipeline.gates import ones_gates
from pipeline.int8 import supports_gradients
from pipeline.runs.live import twin_token_ig
from pipeline.viewer.playground_models import cached_model, probabilities
from pipeline.viewer.widgets import figure, point_flags

__all__ = ["IG_STEPS", "MAX_DEFAULT", "compare_models", "token_ig"]

IG_STEPS = 16
MAX_DEFAULT = 6  # models compared by default


@st.cache_data(show_spinner="Explaining the tokens…", max_entries=64)
def token_ig(folder: str, text: str, twin: str, pred: int) -> pd.DataFrame:
    """Token attributions of the gap P(ŷ | text) - P(ŷ | twin) for the model saved in ``folder`` (ŷ = ``pred``),
    cached (:func:`pipeline.runs.live.twin_token_ig`): they add up to the gap.

    Raises:
        ValueError: the twin has another token length (no position-by-position baseline).
    """
    return twin_token_ig(cached_model(folder), text, twin, pred, IG_STEPS)


def compare_models(
    view,
    text: str,
    twin: str,
    choices: list,
    current: tuple,
    prefix: Callable,
    table: Callable[[str, pd.DataFrame], None],
) -> None:
    """The section: a multiselect of ``choices`` (run, variant, seed), their outcomes and token attributions."""
    st.subheader("The same sentence in other models")
    label = lambda c: f"{prefix(c[0])}{c[1]} (seed {c[2]})"
    default = [c for c in choices if c[2] == current[2]][:MAX_DEFAULT]
    picked = st.multiselect("Models", choices, default=default, format_func=label, key="play_compare")
    if not picked:
        return
    flags = point_flags(view)
    rows, explained = [], []
    for run, variant, seed in picked:
        folder = str(run.model_dir(variant, seed))
        try:
            loaded = cached_model(folder)
        except (OSError, ValueError) as err:
            st.caption(f"{variant} seed {seed} cannot be loaded: {err}")
            continue
        probs = probabilities(loaded, [text, twin], ones_gates(loaded.anatomy))
        pred = int(probs[0].argmax())
        name = prefix(run) + variant
        if not supports_gradients(loaded):
            st.caption(f"{name} seed {seed}: no token attributions (int8 model: no gradients).")
        rows.append(
            {
                "model": name,
                "seed": seed,
                "prediction": loaded.model.config.id2label.get(pred, str(pred)),
                "P(ŷ|text)": float(probs[0, pred]),
                "P(ŷ|twin)": float(probs[1, pred]),
                "gap P(ŷ|text) − P(ŷ|twin)": float(probs[0, pred] - probs[1, pred]),
                "fit to read": "✗ " + flags[(name, seed)] if (name, seed) in flags else "✓",
            }
        )
        if supports_gradients(loaded):
            explained.append((folder, name, seed, pred))
    table("playground_models", pd.DataFrame(rows))
    if not st.checkbox(
        f"Token attributions of the gap (integrated gradients from the twin, {IG_STEPS} steps)",
        value=True,
        key="play_tokens",
    ):
        return
    frames = {}
    for folder, name, seed, pred in explained:
        try:
            frames[(name, seed)] = token_ig(folder, text, twin, pred).assign(variant=name, seed=seed)
        except (RuntimeError, ValueError, TypeError) as err:
            st.caption(f"{name} seed {seed}: no token attributions ({type(err).__name__}: {str(err)[:160]}).")
    if not frames:
        return
    vlim = max(float(f["value"].abs().max()) for f in frames.values()) or None
    for (name, seed), frame in frames.items():
        figure(
            f"play_tokens_{name}_seed{seed}", "token_attributions", frame, 0, vlim=vlim, flag=flags.get((name, seed))
        )
    st.caption(
        "The bias of each model on this sentence: integrated gradients from the twin to the text, so a model's "
        "attributions add up to its gap P(ŷ|text) − P(ŷ|twin) and only the swapped words carry it. One colour scale "
        "for all models: + = the token raises the gap."
    )
