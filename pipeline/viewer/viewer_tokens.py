"""The viewer's Tokens page (one example's tokens coloured by their attribution, for one model or several side by
side on one colour scale; examples picked by a stated rule) and Probes page (probe curves, per-head probes, control
tasks and erasure)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from pipeline.figures.plots import describe_value
from pipeline.runs.runfolder import RunFolder
from pipeline.viewer.viewer_data import erasure_wide
from pipeline.viewer.widgets import NOT_ATTRIBUTED, Selection, figure, flag_notice, need, table, variants_of

__all__ = ["EXAMPLE_ORDERS", "example_facts", "explains", "probes", "tokens"]

EXAMPLE_ORDERS = {
    "largest": "largest |Σ attribution| first (= |score(text) - score(baseline)|: from the twin, the example's gap)",
    "wrong": "misclassified first",
    "gender": "female first, then male",
    "drawn": "in the order drawn",
}
_FACTS = ("label", "gender", "pred")


def _label_names(view: Selection) -> list[str]:
    return list(RunFolder(view.runs[0]).manifest.get("label_names") or [])


def example_facts(rows: pd.DataFrame, label_names: list[str]) -> pd.DataFrame:
    """One row per example of one model's token rows: label, gender, pred (as names), ``wrong`` and ``total``
    (the sum of the token attributions)."""
    columns = [c for c in _FACTS if c in rows]
    facts = rows.groupby("example")[columns].first() if columns else pd.DataFrame(index=sorted(set(rows["example"])))
    for column in columns:
        facts[column] = [describe_value(column, v, label_names) for v in facts[column]]
    if {"label", "pred"} <= set(columns):
        facts["wrong"] = facts["label"].astype(str) != facts["pred"].astype(str)
    facts["total"] = rows.groupby("example")["value"].sum()
    return facts


def explains(rows: pd.DataFrame) -> str:
    """What one model's token attributions explain, from their ``baseline`` and ``score`` columns (a table written
    before the twin baseline has neither ``baseline`` nor "from" in its score: it was integrated from padding)."""
    tokens = rows[rows["unit"] == "token"] if "unit" in rows else rows
    score = str(tokens["score"].iloc[0]) if "score" in tokens and len(tokens) else "score"
    baseline = str(tokens["baseline"].iloc[0]) if "baseline" in tokens and len(tokens) else "padding"
    name = score.rsplit(" from ", 1)[0]
    if baseline == "twin":
        text = (f"The bias: integrated gradients from the gender-swapped twin to the text, so each example's "
                f"attributions add up to its {name} (the gap between the text and its twin; Σ below). Only the "
                "swapped, gendered words differ along the path, so they carry all of it.")  # fmt: skip
    else:
        text = (f"The prediction, not the bias: integrated gradients of the {name} from padding, so each example's "
                f"attributions add up to {name}(text) − {name}(padding), mostly what the text makes the model "
                "predict.")  # fmt: skip
    dropped = rows[rows["metric"] == "pairs_dropped"] if "metric" in rows else rows.iloc[:0]
    if len(dropped) and float(dropped["value"].iloc[0]) > 0:
        text += (f" {int(dropped['value'].iloc[0])} of {int(dropped['n'].iloc[0])} pairs are left out: their twin "
                 "has another token length, so it cannot be the baseline position by position.")  # fmt: skip
    return text


def _order(facts: pd.DataFrame, rule: str) -> list:
    if rule == "largest":
        return list(facts["total"].abs().sort_values(ascending=False, kind="stable").index)
    if rule == "wrong" and "wrong" in facts:
        return list(facts.sort_values("wrong", ascending=False, kind="stable").index)
    if rule == "gender" and "gender" in facts:
        return list(facts.assign(key=facts["gender"] != "female").sort_values("key", kind="stable").index)
    return list(facts.index)


def _filters(facts: pd.DataFrame) -> pd.Series:
    keep = pd.Series(True, index=facts.index)
    cols = st.columns(3)
    for col, (column, title) in zip(cols, (("label", "Class"), ("gender", "Gender"))):
        if column in facts:
            picked = col.multiselect(title, sorted(set(facts[column].astype(str))), key=f"token_{column}")
            keep &= facts[column].astype(str).isin(picked) if picked else True
    if "wrong" in facts:
        correctness = cols[2].radio("Prediction", ("all", "correct", "wrong"), horizontal=True, key="token_correct")
        if correctness != "all":
            keep &= facts["wrong"] == (correctness == "wrong")
    return keep


def tokens(view: Selection) -> None:
    table_rows = need(view, "token_ig")
    if table_rows is None:
        return
    skipped = table_rows.loc[table_rows["unit"] != "token"]
    skipped = skipped[skipped["skipped"].notna()] if "skipped" in skipped else skipped.iloc[:0]
    if len(skipped):
        st.caption(
            "Not explained: "
            + "; ".join(
                f"{v} ({r})" for v, r in skipped[["variant", "skipped"]].drop_duplicates().itertuples(index=False)
            )
        )
    frame = table_rows[table_rows["unit"] == "token"].astype({"example": int})
    if frame.empty:
        st.info(NOT_ATTRIBUTED)
        return
    names = _label_names(view)
    left, middle, right = st.columns([2, 1, 3])
    variant = left.selectbox("Variant", variants_of(frame), key="token_variant")
    seed = middle.selectbox("Seed", sorted(set(frame.loc[frame["variant"] == variant, "seed"])), key="token_seed")
    compare = right.multiselect(
        "Side by side with",
        variants_of(frame),
        key="token_compare",
        help="The same example explained in other models (the attribution stage draws the "
        "same examples for every model).",
    )
    compare = [v for v in compare if v != variant]
    flags = flag_notice(view, [variant, *compare])
    rows = frame[(frame["variant"] == variant) & (frame["seed"] == seed)]
    st.caption(explains(table_rows[(table_rows["variant"] == variant) & (table_rows["seed"] == seed)]))
    facts = example_facts(rows, names)
    lacking = [c for c in _FACTS if c not in rows]
    if lacking:
        st.caption(
            f"token_ig has no {', '.join(lacking)} column, so it cannot be filtered by it; the attribution "
            "stage writes them with each example."
        )
    rule = st.radio(
        "Examples", list(EXAMPLE_ORDERS), format_func=EXAMPLE_ORDERS.get, horizontal=True, key="token_order"
    )
    keep = _filters(facts)
    order = [e for e in _order(facts, rule) if keep.get(e, False)]
    if not order:
        st.info("No example matches these filters; clear a filter to see more.")
        return
    previous = st.session_state.get("token_example_id")
    example = st.selectbox(  # keyed by model: the labels (prediction) are this model's, never a stale one's
        "Example",
        order,
        index=order.index(previous) if previous in order else 0,
        key=f"token_example:{variant}:{seed}",
        format_func=lambda e: " · ".join(
            [str(e)] + [f"{c} {facts.at[e, c]}" for c in _FACTS if c in facts] + [f"Σ {facts.at[e, 'total']:+.3g}"]
        ),
    )
    st.session_state["token_example_id"] = example
    shared = st.checkbox(
        "One colour scale for every example and model (absolute)",
        value=bool(compare),
        key=f"token_shared:{bool(compare)}",
        help="Off: each figure is scaled to its own largest |attribution|, so a weak example looks "
        "as vivid as a strong one.",
    )
    vlim = float(frame.loc[frame["variant"].isin([variant, *compare]), "value"].abs().max()) if shared else None
    for model in [variant, *compare]:
        mine = frame[(frame["variant"] == model) & (frame["example"] == example)]
        mine = mine[mine["seed"] == (seed if seed in set(mine["seed"]) else mine["seed"].min())] if len(mine) else mine
        if mine.empty:
            st.info(f"{model} has no token attributions for example {example}.")
            continue
        figure(
            f"tokens_{model}_seed{int(mine['seed'].iloc[0])}_ex{example}",
            "token_attributions",
            mine,
            int(example),
            vlim=vlim,
            label_names=tuple(names),
            flag=flags.get(model),
        )
    table(f"tokens_{variant}_seed{seed}_ex{example}", rows[rows["example"] == example])


def probes(view: Selection) -> None:
    layers = need(view, "probes_layers")
    flags = flag_notice(view, variants_of(layers)) if layers is not None else {}
    if layers is not None:
        options = [m for m in ("probe_accuracy", "probe_balanced_accuracy", "probe_auc") if m in set(layers["metric"])]
        metric = st.selectbox("Probe metric", options or sorted(set(layers["metric"])), key="probe_metric")
        figure(
            f"probe_curves_{metric}",
            "probe_curves",
            layers,
            metric=metric,
            flags=flags,
            caption="Linear probes of gender (and of the task label) on each layer's representation; dotted: "
            "chance. Probes read the encoder, so they stay meaningful for a model whose classifier is "
            "not fit to be read.",
        )
    st.subheader("Per-head gender probes")
    head_rows = need(view, "probes_heads")
    if head_rows is not None:
        variant = st.selectbox("Variant", variants_of(head_rows), key="probe_variant")
        metric = "probe_accuracy" if "probe_accuracy" in set(head_rows["metric"]) else head_rows["metric"].iloc[0]
        figure(
            f"probe_heads_{variant}",
            "head_heatmap",
            head_rows[head_rows["variant"] == variant],
            metric,
            flag=flags.get(variant),
        )
    st.subheader("Control tasks (selectivity)")
    control = need(view, "probes_control")
    if control is not None:
        figure(
            "probe_selectivity",
            "selectivity_curves",
            control,
            flags=flags,
            caption="Hewitt & Liang (2019): the same probe trained on a control task (random labels tied to word "
            "types). Selectivity = probe accuracy - control accuracy; near 0 the probe memorises rather "
            "than reads gender from the representation.",
        )
        with st.expander("Control-task rows"):
            table("probes_control", control)
    st.subheader("Erasure")
    erasure = need(view, "erasure")
    if erasure is not None:
        table("erasure", erasure_wide(erasure), data=erasure)
        st.caption(
            "LEACE (Belrose et al. 2023) removes the linear gender information of one layer; before / after: "
            "the probe, the task and the bias metrics with 95% intervals. A bias that survives erasure is "
            "not carried by linearly decodable gender at that layer."
        )
