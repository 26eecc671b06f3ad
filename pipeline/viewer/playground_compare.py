"""The Playground's second half: the typed sentence in several saved models side by side (teacher and students).
Every row is read on one class, the same for all models (a picker; by default the first model's prediction): its
P(c | text), P(c | twin) and counterfactual gap P(c | text) - P(c | twin), beside each model's own prediction; then
the tokens' integrated-gradients attributions of that gap (:func:`pipeline.runs.live.twin_token_ig`: token IG from the
twin, Sundararajan et al. 2017: they add up to the gap, and the swapped words carry it) on one colour scale. Models
not fit to be read are named; int8 models have no gradients and get their numbers only; a twin of another token
length gets no token attributions (it cannot be the baseline position by position). Probabilities, attributions and
figures are cached per (model, sentence, class), so only a new sentence or class computes."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import streamlit as st

from pipeline.int8 import supports_gradients
from pipeline.runs.live import twin_token_ig
from pipeline.viewer.playground_models import MAX_DEFAULT, cached_model, outcome
from pipeline.viewer.viewer_data import interval_text
from pipeline.viewer.widgets import figure, point_flags

__all__ = ["IG_STEPS", "MAX_DEFAULT", "compare_models", "signed", "token_ig"]

IG_STEPS = 16


def signed(x: float) -> str:
    """``x`` with 3 significant digits and its sign (``+0.0012``, ``-0.0004``; "" for NaN): a gap near 0 keeps its
    digits instead of reading ``-0.000``."""
    text = interval_text(x)
    return "+" + text if text and x > 0 else text


@st.cache_data(show_spinner="Explaining the tokens…", max_entries=64)
def token_ig(folder: str, text: str, twin: str, pred: int) -> pd.DataFrame:
    """Token attributions of the gap P(c | text) - P(c | twin) for the model saved in ``folder`` (c = class index
    ``pred``), cached (:func:`pipeline.runs.live.twin_token_ig`): they add up to the gap.

    Raises:
        ValueError: the twin has another token length (no position-by-position baseline).
    """
    return twin_token_ig(cached_model(folder), text, twin, pred, IG_STEPS)


def _names(loaded) -> list[str]:
    return [loaded.model.config.id2label.get(i, str(i)) for i in range(loaded.model.config.num_labels)]


def compare_models(
    view,
    text: str,
    twin: str,
    choices: list,
    current: tuple,
    prefix: Callable,
    table: Callable[..., None],
) -> None:
    """The section: a multiselect of ``choices`` (run, variant, seed), the class compared, their outcomes on that
    class and token attributions."""
    st.subheader("The same sentence in other models")
    label = lambda c: f"{prefix(c[0])}{c[1]} (seed {c[2]})"
    default = [c for c in choices if c[2] == current[2]][:MAX_DEFAULT]
    picked = st.multiselect("Models", choices, default=default, format_func=label, key="play_compare")
    models = []
    for run, variant, seed in picked:
        folder = str(run.model_dir(variant, seed))
        try:
            models.append((folder, prefix(run) + variant, seed, cached_model(folder), outcome(folder, text, twin)))
        except (OSError, ValueError) as err:
            st.caption(f"{variant} seed {seed} cannot be loaded: {err}")
    if not models:
        return
    first = models[0]
    classes = list(dict.fromkeys(n for m in models for n in _names(m[3])))
    chosen = st.selectbox(
        "Class compared (the same for every model)",
        classes,
        index=classes.index(_names(first[3])[int(first[4][0].argmax())]),
        key=f"play_class:{text}",
        help="Every row reads the probabilities of this class; by default the prediction of the first model.",
    )
    flags = point_flags(view)
    rows, explained = [], []
    for folder, name, seed, loaded, probs in models:
        names = _names(loaded)
        c = names.index(chosen) if chosen in names else None
        p_text, p_twin = (np.nan, np.nan) if c is None else (float(probs[0, c]), float(probs[1, c]))
        rows.append(
            {
                "model": name,
                "seed": seed,
                "prediction": names[int(probs[0].argmax())],
                "class compared": chosen,
                "P(c|text)": p_text,
                "P(c|twin)": p_twin,
                "gap P(c|text) − P(c|twin)": p_text - p_twin,
                "fit to read": "✗ " + flags[(name, seed)] if (name, seed) in flags else "✓",
            }
        )
        if not supports_gradients(loaded):
            st.caption(f"{name} seed {seed}: no token attributions (int8 model: no gradients).")
        elif c is not None:
            explained.append((folder, name, seed, c))
    numbers = pd.DataFrame(rows)
    shown = numbers.assign(
        **{col: numbers[col].map(interval_text) for col in ("P(c|text)", "P(c|twin)")},
        **{"gap P(c|text) − P(c|twin)": numbers["gap P(c|text) − P(c|twin)"].map(signed)},
    )
    table("playground_models", shown, data=numbers)
    st.caption(
        f"Every row is read on the same class c = **{chosen}** (pick it above), so the gaps compare; "
        "'prediction' is each model's own predicted class. Numbers with 3 significant digits."
    )
    _tokens(text, twin, chosen, explained, flags)


def _tokens(text: str, twin: str, chosen: str, explained: list, flags: dict) -> None:
    if not st.checkbox(
        f"Token attributions of the gap on the compared class (integrated gradients from the twin, {IG_STEPS} steps)",
        value=True,
        key="play_tokens",
    ):
        return
    frames = {}
    for folder, name, seed, c in explained:
        try:
            frames[(name, seed)] = token_ig(folder, text, twin, c).assign(variant=name, seed=seed)
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
        f"The bias of each model on this sentence for class {chosen}: integrated gradients from the twin to the text, "
        "so a model's attributions add up to its gap P(c|text) − P(c|twin) and only the swapped words carry it. One "
        "colour scale for all models: + = the token raises the gap."
    )
