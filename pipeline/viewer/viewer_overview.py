"""The viewer's Overview page (one row per model, fitness, bias against size and accuracy) and Findings page (the
report's answers to the research questions, :mod:`pipeline.report.run_report`, read from the findings tables)."""

from __future__ import annotations

import base64

import pandas as pd
import streamlit as st

from pipeline.findings.compute import FINDINGS, Findings, compute_findings
from pipeline.findings.model_status import STATUS_WORDS
from pipeline.metrics.registry import FAMILIES
from pipeline.report.charts import png_base64
from pipeline.report.run_report import build_sections, header_rows
from pipeline.runs.findings_config import FindingsConfig
from pipeline.runs.runfolder import RunFolder, overview_table
from pipeline.viewer.viewer_data import OVERVIEW_COLUMNS, overview_display
from pipeline.viewer.widgets import (
    Selection,
    figure,
    findings_config,
    flag_notice,
    load,
    missing,
    point_flags,
    stamp,
    status,
    table,
)

__all__ = ["bias_metrics", "findings_page", "overview"]


def bias_metrics() -> dict[str, str]:
    """The bias metrics the overview offers, labelled as in every figure: every metric of the bias-metric registry (a
    plug-in family's included) with a fair value and one value per model, in registry order."""
    return {
        m: f.label
        for family in FAMILIES.values()
        for m, f in family.facts.items()
        if f.fair is not None and f.per_model
    }


_INTERVALS = (
    "Intervals: 95% percentile bootstrap over the test examples (`pipeline.bootstrap`, docs/VIEWER.md "
    "says why and where it is biased). Values in parentheses come from models not fit to be read: their "
    "extrinsic bias numbers are not interpretable."
)


def overview(view: Selection) -> None:
    task, bias = load(view, "task_metrics"), load(view, "bias_metrics")
    for name, frame in (("task_metrics", task), ("bias_metrics", bias)):
        if frame is None:
            missing(view, name)
    if task is None and bias is None:
        return
    numbers = overview_table(task, bias)
    rows = status(view)
    flag_notice(view, numbers["variant"].unique())
    st.subheader("Variants")
    shown = overview_display(numbers, rows)
    table("overview", shown, data=numbers, pinned=("variant", "seed"))
    st.caption(_INTERVALS + " " + "; ".join(f"{h}: {w}" for c, (h, w) in OVERVIEW_COLUMNS.items() if w and h in shown))
    if bias is not None and "skipped" in bias:
        skipped = bias.loc[bias["skipped"].fillna("") != "", ["metric", "skipped"]].drop_duplicates()
        if len(skipped):
            st.caption("Not computed: " + "; ".join(f"{m} ({r})" for m, r in skipped.itertuples(index=False)))
    if len(rows):
        with st.expander("Fit to be read? (accuracy against the majority class, prediction collapse)"):
            fit = rows[rows["variant"].isin(view.variants) & rows["seed"].isin(view.seeds)].copy()
            fit["status"] = fit["status"].map(lambda s: STATUS_WORDS.get(s, s))
            table("fitness", fit.round(4))
            st.caption(
                "A classifier is fit to be read when its head was trained, it beats the majority-class "
                "baseline (one-sided sign-flip test, p < α) and at most "
                f"{findings_config(view).collapse_share:.0%} of its predictions fall in one class "
                "(docs/FINDINGS.md). Source: the findings stage's `fitness` table, else computed here from "
                "`predictions`."
            )
    if task is not None and bias is not None:
        st.subheader("Bias against size and accuracy")
        present = set(bias.loc[(bias["unit"] == "model") & bias["value"].notna(), "metric"])
        offered = bias_metrics()
        options = [m for m in offered if m in present]
        if options:
            left, right = st.columns([2, 1])
            metric = left.selectbox("Bias metric", options, key="bias_metric", format_func=offered.get)
            drop = right.checkbox("Leave out models not fit to be read", key="drop_unfit")
            flags = point_flags(view)
            kept = task, bias
            if drop and flags:
                keep = lambda f: f[[(v, int(s)) not in flags for v, s in zip(f["variant"], f["seed"])]]
                kept = keep(task), keep(bias)
            figure(
                f"bias_vs_compression_{metric}",
                "bias_vs_compression",
                *kept,
                bias_metric=metric,
                flags=flags,
                caption="One point per model (variant x seed) with 95% intervals on both axes; grey = not fit to "
                "be read. The dotted line is a fair model.",
            )
    with st.expander("Run manifests"):
        for path in view.runs:
            st.json(RunFolder(path).manifest or {"manifest.json": "absent"}, expanded=False)


# ---- findings -----------------------------------------------------------------------------------------------------
def _stored_findings(run: RunFolder, cfg: FindingsConfig) -> Findings | None:
    """The findings as the ``findings`` stage wrote them, or None when the run has none of its tables."""
    names = [f.name for f in FINDINGS if run.has(f.name)]
    if not names:
        return None
    inputs = {n: run.table(n) for n in ("predictions", "task_metrics") if run.has(n)}
    found = Findings(run, cfg, tables={n: run.table(n) for n in names}, inputs=inputs)
    for finding in FINDINGS:
        if finding.name not in names:
            found.missing[finding.name] = [run.missing(finding.name)]
    return found


@st.cache_data(show_spinner="Computing the findings…", max_entries=8)
def _sections(path: str, stamps: tuple[float, ...], settings: tuple) -> tuple[str, list, list[dict]]:
    """(where the findings came from, header rows, sections as dicts with the figure as PNG bytes)."""
    run, cfg = RunFolder(path), FindingsConfig(**dict(settings))
    found = _stored_findings(run, cfg)
    source = "stored"
    if found is None:
        found, source = compute_findings(run, cfg), "computed"
    out = []
    for s in build_sections(found):
        png = base64.b64decode(png_base64(s.figure)) if s.figure is not None else None
        out.append(
            {
                "key": s.key,
                "title": s.title,
                "answer": s.answer,
                "short": s.lead(),
                "numbers": s.numbers,
                "png": png,
                "table": s.table,
                "notes": s.notes,
            }
        )
    return source, header_rows(found), out


def findings_page(view: Selection) -> None:
    names = {p: RunFolder(p).name for p in view.runs}
    path = (
        view.runs[0]
        if len(view.runs) == 1
        else st.selectbox("Run", list(names), format_func=names.get, key="findings_run")
    )
    run = RunFolder(path)
    if not run.tables():
        st.info(
            f"Run {run.name!r} has no tables yet: run `bias-atlas run CONFIG`, then its `findings` stage writes "
            "the findings tables (fitness, comparisons, bias_units, ...)."
        )
        return
    cfg = findings_config(Selection((path,), view.variants, view.seeds))
    try:
        source, header, sections = _sections(path, stamp((path,)), tuple(sorted(cfg.model_dump().items())))
    except (ValueError, FileNotFoundError) as err:
        st.error(f"The findings of {run.name!r} cannot be computed: {err}")
        return
    if source == "computed":
        st.info(
            f"Run {run.name!r} has no findings tables (tables/fitness.parquet, comparisons, bias_units, ...): "
            "the `findings` stage of `bias-atlas run CONFIG` writes them. They are computed here from the run's "
            "tables instead, with the same functions as `bias-atlas report RUN`."
        )
    st.caption(
        "The answers of `bias-atlas report` for the whole run (not restricted by the sidebar's selection): "
        "each section states the answer, the numbers with their intervals and q-values, and the table "
        "behind it."
    )
    with st.expander("Run"):
        st.dataframe(pd.DataFrame(header, columns=["", "value"]), hide_index=True)
    for s in sections:
        st.subheader(s["title"])
        if s["short"]:
            st.markdown(f"**In short:** {s['short']}")
        st.info(s["answer"])
        if s["numbers"]:
            st.markdown("\n".join(f"- {n}" for n in s["numbers"]))
        if s["png"] is not None:
            st.image(s["png"], width=720)
        if s["table"] is not None and len(s["table"]):
            table(f"findings_{s['key']}", s["table"])
        for note in s["notes"]:
            st.caption(note)
