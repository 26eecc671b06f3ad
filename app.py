"""bias-atlas viewer: explore run folders (DESIGN.md section 1, second use).

    bias-atlas view [RUNS_DIR]     (= streamlit run app.py -- RUNS_DIR; or set BIAS_ATLAS_RUNS; default: runs/)

It binds to localhost (``.streamlit/config.toml``; ``--address`` exposes it) and opens run folders under
RUNS_DIR only.

Thin by design (STYLE.md point 15): the pages read the tidy tables of run folders through
:mod:`pipeline.runs.runfolder` and draw every figure with :mod:`attribution.plots`, the functions that
``bias-atlas figures`` uses, so the app shows exactly the exported figures. Only the Playground
computes (:mod:`pipeline.runs.playground`): it loads a saved variant with :func:`pipeline.models.load_model`, builds the gender-swapped twin of a
sentence with :class:`pipeline.data.GenderSwapper` and switches heads off with :class:`pipeline.gates.HeadGates`
(head masking as in Michel et al. 2019), showing the prediction and the counterfactual gap
P(y | text) - P(y | swapped text) (DESIGN.md section 6). Tables are cached by path and modification time, figures
by their inputs, models by folder, so switching views over a run does not recompute anything.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import streamlit as st

from attribution import plots
from pipeline.runs.figures import figure_bytes
from pipeline.runs.runfolder import (
    RunFolder,
    combine_tables,
    find_runs,
    overview_table,
    top_neurons_table,
    variant_sort_key,
)
from pipeline.data import GENDER_NAMES
from pipeline.runs.playground import playground
from pipeline.runs.tables import HEAD_MAPS, NEURON_MAPS
from pipeline.schema import SchemaError

RUNS_ENV = "BIAS_ATLAS_RUNS"
PAGES = ("Overview", "Heads", "Neurons", "Tokens", "Probes", "Playground")
# label -> (table, metrics accepted: the first present is shown), from the table registry; probe maps have their
# own page.
HEAD_SOURCES = {label: (table, metrics) for label, table, metrics in HEAD_MAPS if table != "probes_heads"}
NEURON_SOURCES = {label: (table, metric) for label, table, metric in NEURON_MAPS}
BIAS_METRICS = ("gap_rms", "cf_prob_gap", "cf_prob_abs_change", "cf_flip_rate", "accuracy_gap", "crows_stereo_pct",
                "stereoset_ss", "stereoset_icat")
_ERRORS = (ValueError, KeyError, FileNotFoundError, SchemaError)
_NOT_ATTRIBUTED = ("None of the selected variants has these attributions: the pipeline attributes the variants "
                   "listed in `[attribution] variants` (all when empty). Pick other variants in the sidebar.")


@dataclass(frozen=True)
class Selection:
    """What the sidebar selected: run folders (paths), variants (prefixed ``<run>/`` with several runs), seeds."""

    runs: tuple[str, ...]
    variants: tuple[str, ...]
    seeds: tuple[int, ...]


# ---- reading (cached by path and modification time) -------------------------------------------------------------
def _stamp(paths: tuple[str, ...]) -> tuple[float, ...]:
    """Modification times of every table and model folder: a changed run gets a new cache key."""
    stamps = []
    for path in paths:
        for folder in (Path(path) / "tables", Path(path) / "models"):
            if folder.is_dir():
                stamps += [folder.stat().st_mtime] + [p.stat().st_mtime for p in folder.iterdir()]
    return tuple(stamps)


@st.cache_data(show_spinner=False, max_entries=64)
def _read(paths: tuple[str, ...], name: str, stamps: tuple[float, ...]) -> pd.DataFrame | None:
    return combine_tables([RunFolder(p) for p in paths], name)


@st.cache_data(show_spinner=False, max_entries=16)
def _keys(paths: tuple[str, ...], stamps: tuple[float, ...]) -> tuple[list[str], list[int]]:
    runs = [RunFolder(p) for p in paths]
    prefix = (lambda r: f"{r.name}/") if len(runs) > 1 else (lambda r: "")
    variants = sorted({prefix(r) + v for r in runs for v in r.variants()}, key=variant_sort_key)
    return variants, sorted({s for r in runs for s in r.seeds()})


def load(view: Selection, name: str) -> pd.DataFrame | None:
    """Table ``name`` of the selected runs, restricted to the selected variants and seeds (None when no run has
    it; with several runs, an info box names those that lack it)."""
    frame = _read(view.runs, name, _stamp(view.runs))
    if frame is None:
        return None
    if len(view.runs) > 1:
        missing(view, name)  # name the selected runs that lack it
    return frame[frame["variant"].isin(view.variants) & frame["seed"].isin(view.seeds)]


def missing(view: Selection, name: str) -> None:
    """An info box naming the missing table of each selected run and the stage that writes it."""
    for path in view.runs:
        run = RunFolder(path)
        if not run.has(name):
            st.info(run.missing(name))


def need(view: Selection, name: str) -> pd.DataFrame | None:
    """Table ``name``, or None after an info box saying what is missing or that no selected row is in it."""
    frame = load(view, name)
    if frame is None:
        missing(view, name)
    elif frame.empty:
        st.info(f"{name} has no rows for the selected variants and seeds; widen the selection in the sidebar.")
        return None
    return frame


# ---- figures and tables with downloads ----------------------------------------------------------------------------
@st.cache_data(show_spinner=False, max_entries=256)
def _render(plot: str, args: tuple, kwargs: tuple, fmt: str) -> bytes:
    return figure_bytes(getattr(plots, plot)(*args, **dict(kwargs)), fmt)


def figure(name: str, plot: str, *args, **kwargs) -> None:
    """Draw ``plots.<plot>(*args, **kwargs)`` with PNG and SVG download buttons (SVG rendered on click)."""
    key = (plot, args, tuple(sorted(kwargs.items())))
    try:
        png = _render(*key, "png")
    except ValueError as err:
        st.warning(f"Figure {name!r} cannot be drawn: {err}")
        return
    single_column = plots.FIGURE_SIZES[plot][0] < plots.DOUBLE_COLUMN_IN
    st.image(png, caption=name, width=520 if single_column else "stretch")
    left, right, _ = st.columns([1, 1, 6])
    left.download_button("PNG", png, f"{name}.png", "image/png", key=f"png:{name}", on_click="ignore")
    right.download_button("SVG", lambda: _render(*key, "svg"), f"{name}.svg", "image/svg+xml", key=f"svg:{name}",
                          on_click="ignore")


def table(name: str, frame: pd.DataFrame) -> None:
    """Show ``frame`` with a CSV download button."""
    st.dataframe(frame, hide_index=True)
    st.download_button("CSV", lambda: frame.to_csv(index=False), f"{name}.csv", "text/csv", key=f"csv:{name}",
                       on_click="ignore")


def _variants(frame: pd.DataFrame) -> list[str]:
    return sorted(set(frame["variant"]), key=variant_sort_key)


# ---- pages ------------------------------------------------------------------------------------------------------
def overview(view: Selection) -> None:
    task, bias = load(view, "task_metrics"), load(view, "bias_metrics")
    for name, frame in (("task_metrics", task), ("bias_metrics", bias)):
        if frame is None:
            missing(view, name)
    if task is None and bias is None:
        return
    st.subheader("Variants")
    table("overview", overview_table(task, bias))
    if bias is not None and "skipped" in bias:
        skipped = bias.loc[bias["skipped"].fillna("") != "", ["metric", "skipped"]].drop_duplicates()
        if len(skipped):
            st.caption("Not computed: " + "; ".join(f"{m} ({r})" for m, r in skipped.itertuples(index=False)))
    if task is not None and bias is not None:
        st.subheader("Bias against size and accuracy")
        present = set(bias.loc[(bias["unit"] == "model") & bias["value"].notna(), "metric"])
        options = [m for m in BIAS_METRICS if m in present]
        if options:
            metric = st.selectbox("Bias metric", options, key="bias_metric")
            figure(f"bias_vs_compression_{metric}", "bias_vs_compression", task, bias, bias_metric=metric)
    with st.expander("Run manifests"):
        for path in view.runs:
            st.json(RunFolder(path).manifest or {"manifest.json": "absent"}, expanded=False)


def heads(view: Selection) -> None:
    frames = {t: load(view, t) for t in dict.fromkeys(t for t, _ in HEAD_SOURCES.values())}
    sources = {}
    for label, (name, metrics) in HEAD_SOURCES.items():
        present = set() if frames[name] is None else set(frames[name].loc[frames[name]["unit"] == "head", "metric"])
        metric = next((m for m in metrics if m in present), None)
        if metric is not None:
            sources[label] = (name, metric)
    for name in (t for t, f in frames.items() if f is None):
        missing(view, name)
    if not sources:
        if any(f is not None for f in frames.values()):
            st.info(_NOT_ATTRIBUTED)
        return
    name, metric = sources[st.selectbox("Head effect", list(sources), key="head_metric")]
    frame = frames[name][(frames[name]["unit"] == "head") & (frames[name]["metric"] == metric)]
    variants = _variants(frame)
    chosen = st.multiselect("Compare variants (first = reference)", variants, default=variants[:3], key="compare",
                            max_selections=4)
    if chosen:
        figure(f"heads_{metric}_compare", "side_by_side_heatmaps", {v: frame[frame["variant"] == v] for v in chosen},
               metric)
    one = st.selectbox("Single variant", variants, key="head_variant")
    figure(f"heads_{metric}_{one}", "head_heatmap", frame[frame["variant"] == one], metric)
    st.subheader("Cumulative ablation")
    cumulative = need(view, "cumulative_ablation")
    if cumulative is not None:
        figure("cumulative_ablation", "cumulative_curve", cumulative)
    layers = frames["head_ablation"]
    if layers is not None and (layers["unit"] == "layer").any():
        st.subheader("Whole-layer ablation")
        table("layer_ablation", layers[layers["unit"] == "layer"])
    st.subheader("Homogeneity and seed stability")
    comparison = need(view, "comparison")
    if comparison is not None:
        table("comparison", comparison)


def neurons(view: Selection) -> None:
    frames = {label: (load(view, t), m) for label, (t, m) in NEURON_SOURCES.items()}
    sources = {label: f[(f["unit"] == "neuron") & (f["metric"] == m)] for label, (f, m) in frames.items()
               if f is not None and ((f["unit"] == "neuron") & (f["metric"] == m)).any()}
    if not sources:
        if all(f is None for f, _ in frames.values()):
            missing(view, "neuron_ig")
        else:
            st.info(_NOT_ATTRIBUTED)
        return
    label = st.selectbox("Neuron effect", list(sources), key="neuron_metric")
    frame = sources[label]
    variant = st.selectbox("Variant", _variants(frame), key="neuron_variant")
    k = st.slider("Neurons", 1, 50, 10, key="neuron_k")
    rows = frame[frame["variant"] == variant]
    metric = NEURON_SOURCES[label][1]
    figure(f"top_neurons_{metric}_{variant}", "top_neurons", rows, k, metric=metric)
    st.subheader(f"Top {k} neurons per layer")
    table(f"top_neurons_{metric}_{variant}", top_neurons_table(rows, k, metric=metric))


def _gender(value) -> str:
    """Gender id (0 / 1, possibly stored as float) as its name; anything else as it is."""
    number = pd.to_numeric(value, errors="coerce")
    return GENDER_NAMES[int(number)] if number in (0, 1) else str(value)


def tokens(view: Selection) -> None:
    table_rows = need(view, "token_ig")
    if table_rows is None:
        return
    skipped = table_rows.loc[table_rows["unit"] != "token"]
    if "skipped" in skipped and len(skipped):
        st.caption("Not explained: " + "; ".join(f"{v} ({r})" for v, r in
                                                  skipped[["variant", "skipped"]].drop_duplicates().itertuples(index=False)))
    frame = table_rows[table_rows["unit"] == "token"].astype({"example": int})
    if frame.empty:
        st.info(_NOT_ATTRIBUTED)
        return
    left, right = st.columns(2)
    variant = left.selectbox("Variant", _variants(frame), key="token_variant")
    seed = right.selectbox("Seed", sorted(set(frame.loc[frame["variant"] == variant, "seed"])), key="token_seed")
    rows = frame[(frame["variant"] == variant) & (frame["seed"] == seed)]
    columns = [c for c in ("label", "gender", "pred") if c in rows]
    examples = rows.groupby("example")[columns].first() if columns else pd.DataFrame(index=sorted(set(rows["example"])))
    if "gender" in examples:
        examples["gender"] = examples["gender"].map(_gender)
    keep = pd.Series(True, index=examples.index)
    filters = st.columns(3)
    for col, (column, title) in zip(filters, (("label", "Class"), ("gender", "Gender"))):
        if column in examples:
            picked = col.multiselect(title, sorted(set(examples[column].astype(str))), key=f"token_{column}")
            keep &= examples[column].astype(str).isin(picked) if picked else True
    if {"label", "pred"} <= set(examples):
        correctness = filters[2].radio("Prediction", ("all", "correct", "wrong"), horizontal=True, key="token_correct")
        if correctness != "all":
            keep &= (examples["label"].astype(str) == examples["pred"].astype(str)) == (correctness == "correct")
    if len(columns) < 3:
        lacking = ", ".join(c for c in ("label", "gender", "pred") if c not in columns)
        st.caption(f"token_ig has no {lacking} column, so it cannot be filtered by it; the attribution stage writes "
                   "them with each example.")
    shown = examples.loc[keep]
    if len(shown) == 0:  # (a frame without columns is .empty even with rows)
        st.info("No example matches these filters; clear a filter to see more.")
        return
    example = st.selectbox("Example", list(shown.index), key="token_example",
                           format_func=lambda e: " · ".join([str(e)] + [f"{c} {shown.at[e, c]}" for c in columns]))
    one = rows[rows["example"] == example]
    figure(f"tokens_{variant}_seed{seed}_ex{example}", "token_attributions", one, int(example))
    table(f"tokens_{variant}_seed{seed}_ex{example}", one)


def probes(view: Selection) -> None:
    layers = need(view, "probes_layers")
    if layers is not None:
        options = [m for m in ("probe_accuracy", "probe_balanced_accuracy", "probe_auc") if m in set(layers["metric"])]
        metric = st.selectbox("Probe metric", options or sorted(set(layers["metric"])), key="probe_metric")
        figure(f"probe_curves_{metric}", "probe_curves", layers, metric=metric)
    st.subheader("Per-head gender probes")
    head_rows = need(view, "probes_heads")
    if head_rows is not None:
        variant = st.selectbox("Variant", _variants(head_rows), key="probe_variant")
        metric = "probe_accuracy" if "probe_accuracy" in set(head_rows["metric"]) else head_rows["metric"].iloc[0]
        figure(f"probe_heads_{variant}", "head_heatmap", head_rows[head_rows["variant"] == variant], metric)
    for name, title in (("probes_control", "Control tasks (selectivity)"), ("erasure", "Erasure")):
        st.subheader(title)
        frame = need(view, name)
        if frame is not None:
            table(name, frame)


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
    root = st.sidebar.text_input("Runs folder", base, key="root",
                                 help=f"A run folder, or a folder of runs, under {base!r} (the folder the viewer was "
                                      "started on: `bias-atlas view FOLDER`).")
    if not _allowed(root, base):
        st.error(f"{root!r} is outside the runs folder this viewer serves ({base!r}); only run folders under it can "
                 "be opened. Start the viewer on another folder with `bias-atlas view FOLDER`.")
        return None
    try:
        found = find_runs(root)
    except FileNotFoundError as err:
        st.info(str(err))
        return None
    if not found:
        st.info(f"No run folders under {root!r}. Produce one with `bias-atlas run configs/demo.toml`, or "
                "type the folder that holds your runs in the sidebar.")
        return None
    names = {str(p): p.name for p in found}
    runs = st.sidebar.multiselect("Runs", list(names), default=[str(found[0])], format_func=names.get,
                                  key=f"runs:{root}")
    if not runs:
        st.info("Pick at least one run in the sidebar.")
        return None
    paths = tuple(runs)
    for path in paths:
        for name, problem in RunFolder(path).unreadable().items():
            st.sidebar.warning(f"{RunFolder(path).name}/{name} is damaged and left out: {problem}")
    variants, seeds = _keys(paths, _stamp(paths))
    picked = st.sidebar.multiselect("Variants", variants, default=variants, key=f"variants:{paths}")
    chosen_seeds = st.sidebar.multiselect("Seeds", seeds, default=seeds, key=f"seeds:{paths}")
    return Selection(paths, tuple(picked), tuple(chosen_seeds))


def main() -> None:
    st.set_page_config(page_title="bias-atlas", layout="wide")
    view = sidebar()
    if view is None:
        return
    tabs = st.tabs(PAGES, key="page", on_change="rerun")
    pages = (overview, heads, neurons, tokens, probes, lambda v: playground(v, table))
    for tab, page in zip(tabs, pages):
        with tab:
            if tab.open:
                try:
                    page(view)
                except _ERRORS as err:  # a malformed or unexpected table: say what, never a traceback
                    st.error(f"{type(err).__name__}: {err}")


if __name__ == "__main__":  # streamlit run (and AppTest) execute the script as __main__; imports stay inert
    main()
