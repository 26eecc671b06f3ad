"""bias-atlas viewer: explore run folders (docs/DESIGN.md section 1, second use).

    bias-atlas view [RUNS_DIR]     (= streamlit run app.py -- RUNS_DIR; or set BIAS_ATLAS_RUNS; default: runs/)

It binds to localhost (``.streamlit/config.toml``; ``--address`` exposes it) and opens run folders under
RUNS_DIR only (a link out of it is not followed).

Thin by design (docs/STYLE.md point 15): this file holds the sidebar and the tabs; the pages live in
``pipeline/runs/viewer_*.py`` (plumbing in :mod:`pipeline.viewer.widgets`). They read the tidy tables of run folders
through :mod:`pipeline.runs.runfolder` and draw every figure with :mod:`pipeline.figures.plots`, the functions that
``bias-atlas figures`` uses, so the app shows exactly the exported figures. Models not fit to be read (untrained
head, collapsed predictions, no better than the majority class) are named on every page that shows them. Two pages
compute: the Playground (:mod:`pipeline.viewer.playground`) loads a saved variant with
:func:`pipeline.models.load_model`, builds the gender-swapped twin of a sentence with
:class:`pipeline.data.GenderSwapper` and switches heads off with :class:`pipeline.gates.HeadGates` (head masking as
in Michel et al. 2019), showing the prediction and the counterfactual gap P(y | text) - P(y | swapped text)
(docs/DESIGN.md section 6); the Head inspector (:mod:`pipeline.viewer.viewer_inspect`) reads one head's attention. The
Examples page (:mod:`pipeline.viewer.viewer_examples`) lists every test example with each model's gap and opens a
row in either of those two. Tables
are cached by path and modification time, figures by their inputs, models by folder, so switching views over a run
does not recompute anything.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import streamlit as st

from pipeline.runs.runfolder import RunFolder, find_runs, variant_sort_key
from pipeline.schema import SchemaError
from pipeline.viewer.playground import playground
from pipeline.viewer.viewer_circuits import circuits
from pipeline.viewer.viewer_examples import examples
from pipeline.viewer.viewer_heads import heads, neurons
from pipeline.viewer.viewer_inspect import inspector
from pipeline.viewer.viewer_overview import findings_page, overview
from pipeline.viewer.viewer_tokens import probes, tokens
from pipeline.viewer.widgets import Selection, stamp, table

RUNS_ENV = "BIAS_ATLAS_RUNS"
PAGES = (
    "Overview",
    "Findings",
    "Examples",
    "Heads",
    "Head inspector",
    "Neurons",
    "Circuits",
    "Tokens",
    "Probes",
    "Playground",
)
_ERRORS = (ValueError, KeyError, FileNotFoundError, SchemaError)


@st.cache_data(show_spinner=False, max_entries=16)
def _keys(paths: tuple[str, ...], stamps: tuple[float, ...]) -> tuple[list[str], list[int]]:
    runs = [RunFolder(p) for p in paths]
    prefix = (lambda r: f"{r.name}/") if len(runs) > 1 else (lambda r: "")
    variants = sorted({prefix(r) + v for r in runs for v in r.variants()}, key=variant_sort_key)
    return variants, sorted({s for r in runs for s in r.seeds()})


# ---- layout -----------------------------------------------------------------------------------------------------
def _default_root() -> str:
    """``streamlit run app.py -- RUNS_DIR`` first, then ``$BIAS_ATLAS_RUNS``, then ``runs``."""
    launched_with_args = len(sys.argv) > 1 and Path(sys.argv[0]).resolve() == Path(__file__).resolve()
    if launched_with_args:  # streamlit run sets sys.argv to [this script, *arguments after --]
        return sys.argv[1]
    return os.environ.get(RUNS_ENV) or "runs"


def _allowed(root: str, base: str) -> bool:
    """Whether ``root`` lies under the runs root the viewer was started on (visitors cannot browse elsewhere)."""
    return Path(root).resolve().is_relative_to(Path(base).resolve())


def sidebar() -> Selection | None:
    st.sidebar.title("bias-atlas")
    base = st.session_state.setdefault("runs_root", _default_root())  # fixed at the session's start
    root = st.sidebar.text_input(
        "Runs folder",
        base,
        key="root",
        help=f"A run folder, or a folder of runs, under {base!r} (the folder the viewer was "
        "started on: `bias-atlas view FOLDER`).",
    )
    if not _allowed(root, base):
        st.error(
            f"{root!r} is outside the runs folder this viewer serves ({base!r}); only run folders under it can "
            "be opened. Start the viewer on another folder with `bias-atlas view FOLDER`."
        )
        return None
    try:  # a run folder that is a link out of the served folder is not listed
        found = [path for path in find_runs(root) if _allowed(str(path), base)]
    except FileNotFoundError as err:
        st.info(str(err))
        return None
    if not found:
        st.info(
            f"No run folders under {root!r}. Produce one with `bias-atlas run configs/demo.toml`, or "
            "type the folder that holds your runs in the sidebar."
        )
        return None
    names = {str(p): p.name for p in found}
    runs = st.sidebar.multiselect(
        "Runs", list(names), default=[str(found[0])], format_func=names.get, key=f"runs:{root}"
    )
    if not runs:
        st.info("Pick at least one run in the sidebar.")
        return None
    paths = tuple(runs)
    for path in paths:
        for name, problem in RunFolder(path).unreadable().items():
            st.sidebar.warning(f"{RunFolder(path).name}/{name} is damaged and left out: {problem}")
    variants, seeds = _keys(paths, stamp(paths))
    picked = st.sidebar.multiselect("Variants", variants, default=variants, key=f"variants:{paths}")
    chosen_seeds = st.sidebar.multiselect("Seeds", seeds, default=seeds, key=f"seeds:{paths}")
    return Selection(paths, tuple(picked), tuple(chosen_seeds))


def main() -> None:
    st.set_page_config(page_title="bias-atlas", layout="wide")
    view = sidebar()
    if view is None:
        return
    tabs = st.tabs(PAGES, key="page", on_change="rerun")
    pages = (
        overview,
        findings_page,
        examples,
        heads,
        inspector,
        neurons,
        circuits,
        tokens,
        probes,
        lambda v: playground(v, table),
    )
    for tab, page in zip(tabs, pages):
        with tab:
            if tab.open:
                try:
                    page(view)
                except _ERRORS as err:  # a malformed or unexpected table: say what, never a traceback
                    st.error(f"{type(err).__name__}: {err}")


if __name__ == "__main__":  # streamlit run (and AppTest) execute the script as __main__; imports stay inert
    main()
