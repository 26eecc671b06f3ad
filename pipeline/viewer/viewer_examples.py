"""The viewer's Examples page: which sentences drive the gap. Every test example with its gender-swapped twin, class,
gender, and per model its predicted class, counterfactual gap and flip (:mod:`pipeline.viewer.examples_data`),
filtered by class, gender, model and text, sorted; the metrics of the selection with intervals and n; a row opens
in the Playground or the Head inspector with its sentence and model chosen.

Texts come from the run's test split (:func:`pipeline.viewer.widgets.test_split`), twins from the WinoBias swap
lists, the numbers from the tables ``predictions`` and ``counterfactual_examples``.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from pipeline.data import counterfactual
from pipeline.runs.runfolder import RunFolder
from pipeline.viewer.examples_data import (
    SORTS,
    example_table,
    filter_examples,
    slice_display,
    slice_metrics,
    sort_examples,
)
from pipeline.viewer.navigation import open_in_inspector
from pipeline.viewer.playground import open_in_playground
from pipeline.viewer.playground_models import cached_swapper
from pipeline.viewer.widgets import Selection, findings_config, flag_notice, load, missing, table, test_split

__all__ = ["examples", "open_options"]

N_OPEN = 200  # rows of the selection offered in "Open a row"
_TABLES = ("predictions", "counterfactual_examples")
_READING = (
    "gap: P(y | female version) − P(y | male version) of the true class y (swap lists `all`; bias = |gap|); flip: "
    "1 when the text and its twin get different predicted classes; accuracy: the prediction is the true class. "
    "Mean gap with a {level} percentile bootstrap interval (1,000 resamples of the examples), flip rate and accuracy "
    "with exact (Clopper-Pearson) {level} intervals; n: examples of the selection with a prediction, n pairs: those "
    "with a twin. Models not fit to be read are flagged above: their numbers are not interpretable."
)


@st.cache_data(show_spinner="Loading the run's test texts and their twins…", max_entries=4)
def _texts(path: str) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    test = test_split(path)
    return test.texts, counterfactual(test, cached_swapper()).texts, test.label_names


def _rows(view: Selection) -> pd.DataFrame | None:
    frames = {name: load(view, name) for name in _TABLES}
    for name in [n for n, f in frames.items() if f is None]:
        missing(view, name)  # without predictions: no predicted class; without counterfactual_examples: no gap
    if all(f is None for f in frames.values()):
        return None
    out = []
    for path in view.runs:
        run = RunFolder(path)
        prefix = f"{run.name}/" if len(view.runs) > 1 else ""
        mine = {n: None if f is None else f[f["variant"].astype(str).str.startswith(prefix)] for n, f in frames.items()}
        try:
            texts, twins, names = _texts(path)
        except Exception as err:  # noqa: BLE001 - a data set that cannot be loaded here costs only the texts
            texts, twins, names = (), (), None
            st.caption(f"{run.name}: the test texts cannot be loaded here ({type(err).__name__}: {err}).")
        out.append(example_table(*mine.values(), texts=texts, twins=twins, label_names=names))
    return pd.concat(out, ignore_index=True)


def open_options(frame: pd.DataFrame) -> dict[int, str]:
    """Row label -> how "Open a row" names it (example, model, gap, text), for the first :data:`N_OPEN` rows."""
    return {
        i: f"#{r.example} {r.variant} (seed {r.seed}), gap {'none' if pd.isna(r.gap) else f'{r.gap:+.3g}'}: "
        f"{r.text[:80]}"
        for i, r in frame.head(N_OPEN).iterrows()
    }


def _open(shown: pd.DataFrame) -> None:
    options = open_options(shown)
    if not options:
        return
    pick = st.selectbox("Open a row", list(options), format_func=options.get, key="ex_row")
    row = shown.loc[pick]
    args = (row["text"], str(row["variant"]), int(row["seed"]))
    left, right, _ = st.columns([1, 1, 2])
    disabled = not row["text"]
    left.button("Open in Playground", key="ex_play", on_click=open_in_playground, args=args, disabled=disabled)
    right.button("Open in Head inspector", key="ex_inspect", on_click=open_in_inspector, args=args, disabled=disabled)
    st.caption(
        f"Opens the sentence and {args[1]} (seed {args[2]}) in the page; the first {N_OPEN} rows of the selection, "
        "in the order above, are offered. The Playground's gap is P(ŷ | text) − P(ŷ | twin) of the predicted class: "
        "the gap above for a female original, its negative for a male one (when ŷ is the true class); int8 models "
        "quantise activations per batch, so one sentence alone can differ a little from the run's batched value."
    )


def examples(view: Selection) -> None:
    rows = _rows(view)
    if rows is None:
        return
    if rows.empty:
        st.info("predictions and counterfactual_examples have no rows for the selected variants and seeds.")
        return
    flag_notice(view, sorted(set(rows["variant"])))
    cols = st.columns([2, 1, 2, 2])
    classes = cols[0].multiselect("Class", sorted(set(rows["class"]) - {""}), key="ex_class", placeholder="all")
    genders = cols[1].multiselect(
        "Gender", ["female", "male"], key="ex_gender", help="of the original text", placeholder="both"
    )
    models = cols[2].multiselect("Models", list(dict.fromkeys(rows["variant"])), key="ex_models", placeholder="all")
    search = cols[3].text_input("Text contains", key="ex_search", help="in the text or its twin; any case")
    left, right = st.columns([2, 1])
    by = left.selectbox("Sort by", list(SORTS), key="ex_sort")
    descending = right.toggle("Descending", value=True, key="ex_descending", help="largest first")
    shown = filter_examples(rows, classes=classes, genders=genders, models=models, search=search)
    shown = sort_examples(shown, by, descending=descending)
    st.subheader("This selection")
    alpha = findings_config(view).alpha
    metrics = slice_metrics(shown, alpha=alpha)
    table("examples_slice", slice_display(metrics), data=metrics)
    st.caption(_READING.format(level=f"{1 - alpha:.0%}"))
    st.subheader(f"Examples: {len(shown)} rows ({shown['example'].nunique()} sentences)")
    table("examples", shown)
    _open(shown)
