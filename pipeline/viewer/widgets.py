"""The viewer's plumbing, shared by its pages (``app.py``, ``pipeline/runs/viewer_*.py``): the sidebar's selection,
cached table reads, "missing table" boxes, figures and tables with download buttons, and which selected models are
not fit to be read (:mod:`pipeline.viewer.viewer_data`), flagged on every page that shows them.

Tables are cached by path and modification time (``st.cache_data``), figures by their inputs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import streamlit as st

from pipeline.data import TaskData
from pipeline.figures import plots
from pipeline.figures.run_figures import figure_bytes
from pipeline.findings.model_status import flags_by_point, flags_by_variant, model_status
from pipeline.runs.findings_config import FindingsConfig
from pipeline.runs.runfolder import RunFolder, combine_tables, variant_sort_key
from pipeline.schema import SchemaError
from pipeline.viewer.viewer_data import p_columns_as_text

__all__ = [
    "NOT_ATTRIBUTED",
    "Selection",
    "figure",
    "findings_config",
    "fitness_unknown",
    "flag_notice",
    "load",
    "missing",
    "need",
    "point_flags",
    "read_all",
    "status",
    "table",
    "test_split",
    "variant_flags",
    "variants_of",
]

NOT_ATTRIBUTED = (
    "None of the selected variants has these attributions: the pipeline attributes the variants "
    "listed in `[attribution] variants` (all when empty). Pick other variants in the sidebar."
)


@dataclass(frozen=True)
class Selection:
    """What the sidebar selected: run folders (paths), variants (prefixed ``<run>/`` with several runs), seeds."""

    runs: tuple[str, ...]
    variants: tuple[str, ...]
    seeds: tuple[int, ...]


# ---- reading (cached by path and modification time) -------------------------------------------------------------
def stamp(paths: tuple[str, ...]) -> tuple[float, ...]:
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


def read_all(view: Selection, name: str) -> pd.DataFrame | None:
    """Table ``name`` of the selected runs, every variant and seed (None when no run has it)."""
    return _read(view.runs, name, stamp(view.runs))


def load(view: Selection, name: str) -> pd.DataFrame | None:
    """Table ``name`` of the selected runs, restricted to the selected variants and seeds (None when no run has
    it; with several runs, an info box names those that lack it)."""
    frame = read_all(view, name)
    if frame is None:
        return None
    if len(view.runs) > 1:
        missing(view, name)  # name the selected runs that lack it
    return frame[frame["variant"].isin(view.variants) & frame["seed"].isin(view.seeds)]


@st.cache_data(show_spinner="Loading the run's test texts…", max_entries=4)
def test_split(path: str) -> TaskData:
    """The test split of run ``path``, loaded as the run loaded it (same data, classes, split and subsample).

    Raises:
        ConfigError, KeyError: the run's data set cannot be loaded here, or its manifest has no config.
    """
    from pipeline.runs.config import config_from_dict
    from pipeline.runs.run import load_task_splits  # the run's own loader: same split, same subsample

    config = config_from_dict(RunFolder(path).manifest["config"])
    return load_task_splits(config.task).test


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


def variants_of(frame: pd.DataFrame) -> list[str]:
    return sorted(set(frame["variant"]), key=variant_sort_key)


def findings_config(view: Selection) -> FindingsConfig:
    """The ``[findings]`` settings of the first selected run (defaults when it has none)."""
    section = RunFolder(view.runs[0]).manifest.get("config", {}).get("findings") or {}
    try:
        return FindingsConfig(**section)
    except ValueError:
        return FindingsConfig()


# ---- fitness ------------------------------------------------------------------------------------------------------
_FITNESS_INPUTS = ("fitness", "task_metrics", "predictions")


@st.cache_data(show_spinner="Checking which models are fit to be read…", max_entries=16)
def _status(paths: tuple[str, ...], stamps: tuple[float, ...], settings: tuple) -> tuple[pd.DataFrame, tuple]:
    """(status rows, the damaged tables that leave fitness unknown: no rows then)."""
    frames, damaged = {}, []
    for name in _FITNESS_INPUTS:
        try:
            frames[name] = _read(paths, name, stamps)
        except SchemaError:  # truncated or not parquet: named in the sidebar; only fitness is lost here
            frames[name], damaged = None, [*damaged, name]
    fitness = frames["fitness"]
    if "fitness" in damaged or ((fitness is None or fitness.empty) and damaged):
        return model_status(None), tuple(damaged)
    return model_status(*frames.values(), FindingsConfig(**dict(settings))), ()


def _status_of(view: Selection) -> tuple[pd.DataFrame, tuple]:
    settings = tuple(sorted(findings_config(view).model_dump().items()))
    return _status(view.runs, stamp(view.runs), settings)


def status(view: Selection) -> pd.DataFrame:
    """One row per (variant, seed) of the selected runs: fit, status, reason (:func:`viewer_data.model_status`);
    no rows when a damaged table leaves fitness unknown (:func:`fitness_unknown`)."""
    return _status_of(view)[0]


def fitness_unknown(view: Selection) -> tuple[str, ...]:
    """The damaged tables (``fitness``, or ``task_metrics`` / ``predictions`` it is computed from when the findings
    have no ``fitness``) that leave unknown which selected models are fit to be read; empty when it is known."""
    return _status_of(view)[1]


def variant_flags(view: Selection, variants: Iterable[str] | None = None) -> dict[str, str]:
    """variant -> why it is not fit to be read, for the selected seeds (and ``variants``, when given)."""
    rows = status(view)
    rows = rows[rows["seed"].isin(view.seeds)] if len(rows) else rows
    return flags_by_variant(rows, list(variants) if variants is not None else list(view.variants))


def point_flags(view: Selection) -> dict[tuple[str, int], str]:
    """(variant, seed) -> why that model is not fit to be read."""
    return flags_by_point(status(view))


_REASONS = {  # the start of a flag (pipeline.findings.model_status) -> what it means; only those present are shown
    "untrained": "Untrained head: its outputs are those of a random classifier.",
    "collapsed": "Collapsed: it predicts one class (GAP_RMS 0 by construction).",
    "≤ majority": "≤ majority class: it does not beat always predicting the most frequent class (one-sided test).",
}


def flag_notice(view: Selection, variants: Iterable[str]) -> dict[str, str]:
    """A warning naming the models on this page that are not fit to be read (and why), or saying that fitness is
    unknown (a damaged table); returns their flags."""
    damaged = fitness_unknown(view)
    if damaged:
        st.warning(
            f"Fitness unknown: {', '.join(damaged)} is damaged, so whether these models are fit to be read (trained "
            "head, not collapsed, better than the majority class) cannot be checked; read their bias numbers with "
            "care. Fix: rerun `bias-atlas run` on the run's config (damaged tables are rebuilt).",
            icon="⚠️",
        )
    flags = variant_flags(view, variants)
    if flags:
        names = "; ".join(
            f"**{v}** ({why})" for v, why in sorted(flags.items(), key=lambda kv: variant_sort_key(kv[0]))
        )
        why = " ".join(text for key, text in _REASONS.items() if any(w.startswith(key) for w in flags.values()))
        st.warning(
            f"Not fit to be read: {names}. {why} Their bias numbers are not interpretable; they are marked "
            "*(not fit)* and drawn grey, open or dashed. See the Findings page.",
            icon="⚠️",
        )
    return flags


# ---- figures and tables with downloads ----------------------------------------------------------------------------
@st.cache_data(show_spinner=False, max_entries=256)
def _render(plot: str, args: tuple, kwargs: tuple, fmt: str) -> bytes:
    return figure_bytes(getattr(plots, plot)(*args, **dict(kwargs)), fmt)


def figure(name: str, plot: str, *args, caption: str | None = None, **kwargs) -> None:
    """Draw ``plots.<plot>(*args, **kwargs)`` with PNG and SVG download buttons (SVG rendered on click)."""
    key = (plot, args, tuple(sorted(kwargs.items())))
    try:
        png = _render(*key, "png")
    except ValueError as err:
        st.warning(f"Figure {name!r} cannot be drawn: {err}")
        return
    single_column = plots.FIGURE_SIZES[plot][0] < plots.DOUBLE_COLUMN_IN
    st.image(png, caption=name, width=520 if single_column else "stretch")
    if caption:
        st.caption(caption)
    left, right, _ = st.columns([1, 1, 6])
    left.download_button("PNG", png, f"{name}.png", "image/png", key=f"png:{name}", on_click="ignore")
    right.download_button(
        "SVG", lambda: _render(*key, "svg"), f"{name}.svg", "image/svg+xml", key=f"svg:{name}", on_click="ignore"
    )


def table(name: str, frame: pd.DataFrame, *, data: pd.DataFrame | None = None, pinned: Sequence[str] = ()) -> None:
    """Show ``frame`` (p- and q-values as text: :func:`~pipeline.viewer.viewer_data.p_columns_as_text`) with a CSV
    download button of the numbers (of ``data`` when given, e.g. the numbers behind a text table); the ``pinned``
    columns stay in view when the table scrolls sideways."""
    config = {c: st.column_config.Column(pinned=True) for c in pinned if c in frame}
    st.dataframe(p_columns_as_text(frame), hide_index=True, column_config=config or None)
    csv = frame if data is None else data
    st.download_button(
        "CSV", lambda: csv.to_csv(index=False), f"{name}.csv", "text/csv", key=f"csv:{name}", on_click="ignore"
    )
