"""The Head inspector's signed lineage of a head: its attribution effect in the teacher and in every counterpart
with head rows in the findings' ``bias_units`` table (a layer-mapped student through its layer map, the
same layer and head in the other variants of that teacher: pruned, CDA, erased, int8), each with its value, 95%
interval, q and direction (``adds`` / ``reduces`` bias, :mod:`pipeline.findings.bias_units`); a counterpart opens
in the inspector, and the Playground opens on one of the sentences where that model's counterfactual gap is largest.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from pipeline.compress.registry import is_student
from pipeline.findings.comparisons import reference_of
from pipeline.findings.structure import _layer_map
from pipeline.runs.runfolder import RunFolder
from pipeline.variants import variant_sort_key
from pipeline.viewer.navigation import open_in_inspector
from pipeline.viewer.playground import DEFAULT_SENTENCE, open_in_playground
from pipeline.viewer.widgets import Selection, figure, load, table, test_split

__all__ = ["LINEAGE_COLUMNS", "largest_gaps", "lineage", "lineage_section", "open_head"]

LINEAGE_COLUMNS = ["variant", "relation", "layer", "head", "method", "value", "ci_low", "ci_high", "q", "direction"]
N_SENTENCES = 5  # sentences with the largest |gap| offered to the Playground


def _layers_of(rows: pd.DataFrame) -> int:
    return int(rows["layer"].max()) + 1


def _student_layers(run_dir: Path, variant: str, seed: int, rows: pd.DataFrame, teacher_layer: int) -> list[int]:
    mapping = _layer_map(run_dir, variant, seed, _layers_of(rows))
    return [s for s, t in enumerate(mapping) if t == teacher_layer]


def lineage(units: pd.DataFrame | None, run_dir: Path, variant: str, seed: int, layer: int, head: int) -> pd.DataFrame:
    """The head (``layer``, ``head``) of ``variant`` / ``seed`` in its teacher and every counterpart with head rows
    in ``units`` (findings ``bias_units``, names without a run prefix): one row per model, layer and method, with
    :data:`LINEAGE_COLUMNS`; the teacher first. A student's layer is mapped to the teacher's with its layer map
    (:func:`pipeline.findings.structure._layer_map`); other variants keep the layer."""
    if units is None or units.empty:
        return pd.DataFrame(columns=LINEAGE_COLUMNS)
    heads = units[(units["unit"] == "head") & (units["seed"] == seed)]
    present = set(heads["variant"])
    teacher, teacher_layer = variant, layer
    if not variant.startswith("teacher"):
        teacher = reference_of(variant, "task", present | {"teacher-ft"}) or "teacher-ft"
        if is_student(variant) and (heads["variant"] == variant).any():
            mapping = _layer_map(run_dir, variant, seed, _layers_of(heads[heads["variant"] == variant]))
            teacher_layer = mapping[layer] if layer < len(mapping) else -1
    out = []
    for other in sorted(present, key=lambda v: (v != teacher, variant_sort_key(v))):
        rows = heads[heads["variant"] == other]
        if other == teacher:
            layers, relation = [teacher_layer], "teacher"
        elif reference_of(other, "task", present | {"teacher-ft"}) != teacher:
            continue
        elif is_student(other):
            layers, relation = _student_layers(run_dir, other, seed, rows, teacher_layer), "student (layer map)"
        else:
            layers, relation = [teacher_layer], "same layer and head"
        mine = rows[rows["layer"].isin(layers) & (rows["head"] == head)]
        if len(mine):
            out.append(mine.assign(relation=relation)[LINEAGE_COLUMNS])
    if not out:
        return pd.DataFrame(columns=LINEAGE_COLUMNS)
    return pd.concat(out, ignore_index=True)


def largest_gaps(counterfactual: pd.DataFrame | None, texts: tuple[str, ...], variant: str, seed: int) -> pd.DataFrame:
    """The :data:`N_SENTENCES` test sentences with the largest |counterfactual gap| of ``variant`` / ``seed`` (swap
    lists ``all``): ``example``, ``gap``, ``text``."""
    columns = ["example", "gap", "text"]
    if counterfactual is None or counterfactual.empty:
        return pd.DataFrame(columns=columns)
    subset = counterfactual["subset"].fillna("").replace("", "all") if "subset" in counterfactual else "all"
    rows = counterfactual[
        (subset == "all")
        & (counterfactual["metric"] == "cf_prob_gap")
        & (counterfactual["variant"] == variant)
        & (counterfactual["seed"] == seed)
    ]
    rows = rows.assign(gap=rows["value"], key=rows["value"].abs()).sort_values("key", ascending=False, kind="stable")
    rows = rows[rows["example"].between(0, len(texts) - 1)].head(N_SENTENCES)
    return rows.assign(text=[texts[int(i)] for i in rows["example"]])[columns].reset_index(drop=True)


def open_head(variant: str, seed: int, layer: int, head: int) -> None:
    """Widget callback: open the Head inspector on ``variant`` / ``seed`` at (``layer``, ``head``), same sentence."""

    st.session_state["inspect_layer"], st.session_state["inspect_head"] = layer, head
    open_in_inspector(st.session_state.get("inspect_text", DEFAULT_SENTENCE), variant, seed)


def _chart(name: str, frame: pd.DataFrame, title: str) -> None:
    labels = tuple(f"{r.variant} L{r.layer} {r.method}" for r in frame.itertuples())
    values = frame["value"].to_numpy(float)
    figure(
        f"lineage_{name}",
        "lineage_effects",
        labels,
        values,
        frame["ci_low"].to_numpy(float),
        frame["ci_high"].to_numpy(float),
        tuple(frame["direction"].fillna("")),
        title=title,
        caption="Each bar: the head's effect with its 95% interval; vermilion: adds bias, blue: reduces it.",
    )


def lineage_section(
    view: Selection, run: RunFolder, prefix: str, variant: str, seed: int, layer: int, head: int
) -> None:
    """The lineage table, chart and jump buttons of head (``layer``, ``head``) of ``variant`` / ``seed``."""
    shown = st.toggle(
        "Lineage: this head in the teacher and its counterparts",
        key="lineage_show",
        help="Its effect, interval, q and direction (findings bias_units) in each model; open one of them.",
    )
    if not shown:
        return
    units = load(view, "bias_units")
    if units is not None and prefix:
        units = units[units["variant"].str.startswith(prefix)].assign(variant=lambda f: f["variant"].str[len(prefix) :])
    rows = lineage(units, run.path, variant, seed, layer, head)
    if rows.empty:
        st.info("No lineage: the findings' bias_units table has no head rows for this model (run the findings stage).")
        return
    name = f"{prefix}{variant}_L{layer}H{head}".replace("/", "_")
    table(f"lineage_{name}", rows)
    st.caption(
        "value: the head's effect in each method's table; interval: 95%; q: Benjamini-Hochberg; direction: `adds` "
        "when the effect moves the model's own bias away from 0 (ablation: sign opposite to the total; patching, "
        "IG: the total's sign), `reduces` otherwise."
    )
    _chart(name, rows, f"head {head}: effect per model")
    models = list(dict.fromkeys(zip(rows["variant"], rows["layer"].astype(int))))
    pick = st.selectbox(
        "Counterpart", models, key="lineage_pick", format_func=lambda m: f"{m[0]} layer {m[1]}, head {head}"
    )
    try:
        texts = test_split(str(run.path)).texts
    except Exception:  # noqa: BLE001 - without the test texts only the Playground link is lost
        texts = ()
    gaps = largest_gaps(load(view, "counterfactual_examples"), texts, prefix + pick[0], seed)
    left, right = st.columns([1, 2])
    left.button(
        "Open in Head inspector",
        key="lineage_inspect",
        on_click=open_head,
        args=(prefix + pick[0], seed, pick[1], head),
    )
    if gaps.empty:
        right.caption("No counterfactual gaps for this model (counterfactual_examples): no sentence to open.")
        return
    sentence = right.selectbox(
        "Sentence with a large gap",
        list(gaps.index),
        key="lineage_sentence",
        format_func=lambda i: f"gap {gaps.loc[i, 'gap']:+.3g}: {gaps.loc[i, 'text'][:70]}",
    )
    right.button(
        "Open in Playground",
        key="lineage_play",
        on_click=open_in_playground,
        args=(str(gaps.loc[sentence, "text"]), prefix + pick[0], seed),
    )
    st.caption(f"The {len(gaps)} sentences with the largest |counterfactual gap| of {pick[0]} (seed {seed}).")
