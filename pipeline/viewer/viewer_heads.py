"""The viewer's Heads and Neurons pages: layer x head maps of every attribution method with their uncertainty
(significance marks, n, a sortable top-k table with intervals), on a shared absolute colour scale or one per map,
cumulative and whole-layer ablation, homogeneity; the top FFN neurons."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from pipeline.figures import plots
from pipeline.figures.style import adds_bias, model_total, score_name
from pipeline.runs.runfolder import top_neurons_table, variant_sort_key
from pipeline.runs.tables import head_maps, neuron_maps
from pipeline.viewer.viewer_data import homogeneity_wide, layer_ablation_wide, units_table
from pipeline.viewer.widgets import (
    NOT_ATTRIBUTED,
    Selection,
    figure,
    findings_config,
    flag_notice,
    load,
    missing,
    need,
    table,
    variants_of,
)

__all__ = ["carries_for", "directions", "head_sources", "heads", "neuron_sources", "neurons", "noise_summary"]


# label -> (table, metrics accepted: the first present is shown), from the table registry; probe maps have their
# own page.
def head_sources() -> dict[str, tuple[str, tuple[str, ...]]]:
    """Label -> (table, metrics) of every head map of the table registry (plug-in methods included), probes aside."""
    return {label: (table, metrics) for label, table, metrics in head_maps() if table != "probes_heads"}


def neuron_sources() -> dict[str, tuple[str, str]]:
    """Label -> (table, metric) of every neuron view of the table registry."""
    return {label: (table, metric) for label, table, metric in neuron_maps()}


SCALES = {
    "shared": "one absolute scale for all maps (compare magnitudes)",
    "panel": "one scale per map (compare patterns only)",
}
_GAP = (
    "The counterfactual gap (cf gap) is P(y | female version) - P(y | male version) of the true class y, averaged "
    "over examples; bias = |gap|. Ablation and IG explain this gap; patching explains the true-class "
    "probability, oriented towards the female twin (its total effect is the gap)."
)


def carries_for(view: Selection, metric: str) -> pd.DataFrame | None:
    """The findings' ``bias_units`` rows of ``metric`` (None when the run has no findings tables)."""
    units = load(view, "bias_units")
    return None if units is None else units[units["metric"] == metric]


def noise_summary(frame: pd.DataFrame, metric: str, alpha: float, carries: pd.DataFrame | None) -> pd.DataFrame:
    """Per model: heads, single-head intervals that exclude 0 and how many would by chance, heads with q < alpha
    (Benjamini-Hochberg) and heads that carry bias (findings)."""
    rows = plots.select(frame, "head", metric, all_variants=True)
    out = []
    for (variant, seed), group in rows.groupby(["variant", "seed"]):
        excl = int(((group["ci_low"] > 0) | (group["ci_high"] < 0)).sum())
        row = {
            "variant": variant,
            "seed": seed,
            "heads": len(group),
            "n examples": group["n"].max(),
            "intervals excluding 0": excl,
            "expected by chance (5%)": round(0.05 * len(group), 1),
            f"q < {alpha:g}": int((group["q"] < alpha).sum()) if "q" in group else np.nan,
        }
        if carries is not None:
            mine = carries[(carries["variant"] == variant) & (carries["seed"] == seed) & (carries["unit"] == "head")]
            row["carry bias"] = int(mine["carries"].astype(bool).sum())
        out.append(row)
    out.sort(key=lambda r: (variant_sort_key(str(r["variant"])), r["seed"]))
    return pd.DataFrame(out)


def directions(metric: str, full: pd.DataFrame, variants: list[str]) -> dict[str, tuple[float, str]]:
    """Model -> (its own score behind ``metric``, the colour that adds to its bias: ``adds_bias``), from each model's
    own rows of ``full`` (intact score, IG total, total effect; mean over its seeds); models without one are left
    out."""
    out = {}
    for variant in variants:
        total = model_total(full[full["variant"] == variant], metric)
        if total is not None:
            out[variant] = (total, adds_bias(metric, total))
    return out


def _meaning(metric: str, full: pd.DataFrame, variants: list[str]) -> str:
    words = plots.colourbar_label(metric, full[full["unit"] == "head"]).split("\n")
    text = f"Colour: {words[0]}" + (f" ({words[1]})" if len(words) > 1 else "") + ". "
    score = score_name(metric, full[full["unit"] == "head"])
    own = [
        f"{v} ({score} {total:+.3g}): {colour or 'no colour (score 0)'} adds bias"
        for v, (total, colour) in directions(metric, full, variants).items()
    ]
    if own:
        text += "Which colour adds bias, from each model's own score: " + "; ".join(own) + ". "
    return text + _GAP


def _vlim(frame: pd.DataFrame, metric: str, variants: list[str]) -> float | None:
    if metric in plots.UNSIGNED_METRICS:
        return None
    values = [np.nanmax(np.abs(plots.head_matrix(frame[frame["variant"] == v], metric))) for v in variants]
    return float(np.nanmax(values)) if values else None


def heads(view: Selection) -> None:
    frames = {t: load(view, t) for t in dict.fromkeys(t for t, _ in head_sources().values())}
    sources = {}
    for label, (name, metrics) in head_sources().items():
        present = set() if frames[name] is None else set(frames[name].loc[frames[name]["unit"] == "head", "metric"])
        metric = next((m for m in metrics if m in present), None)
        if metric is not None:
            sources[label] = (name, metric)
    absent = [t for t, f in frames.items() if f is None]
    if not sources:
        for name in absent:
            missing(view, name)
        if any(f is not None for f in frames.values()):
            st.info(NOT_ATTRIBUTED)
        return
    if absent:
        with st.expander(f"Not in this run: {', '.join(absent)}"):
            for name in absent:
                missing(view, name)
    name, metric = sources[st.selectbox("Head effect", list(sources), key="head_metric")]
    full = frames[name]
    frame = full[(full["unit"] == "head") & (full["metric"] == metric)]
    variants = variants_of(frame)
    flags = flag_notice(view, variants)
    alpha, carries = findings_config(view).alpha, carries_for(view, metric)
    left, right = st.columns([3, 2])
    chosen = left.multiselect("Compare variants (first = reference)", variants, default=variants, key="compare")
    scale = right.radio("Colour scale", list(SCALES), format_func=SCALES.get, key="head_scale")
    st.caption(_meaning(metric, full, chosen or variants))
    marks = (
        f"Dot: q < {alpha:g} (Benjamini-Hochberg over the heads of one model) in every seed; ring: in some "
        "seeds; faded: in none; square: carries bias (findings: significant and at least "
        f"{findings_config(view).min_share:.0%} of the model's total effect)."
    )
    if chosen:
        figure(
            f"heads_{metric}_compare",
            "side_by_side_heatmaps",
            {v: full[full["variant"] == v] for v in chosen},
            metric,
            scale=scale,
            alpha=alpha,
            carries=carries,
            flags={v: flags[v] for v in chosen if v in flags},
            caption=marks,
        )
    one = st.selectbox("Single variant", variants, key="head_variant")
    vlim = _vlim(frame, metric, chosen) if scale == "shared" and one in chosen else None
    own_carries = None if carries is None else carries[carries["variant"] == one]
    figure(
        f"heads_{metric}_{one}",
        "head_heatmap",
        full[full["variant"] == one],
        metric,
        vlim=vlim,
        alpha=alpha,
        carries=own_carries,
        flag=flags.get(one),
    )
    st.subheader("How much is noise")
    shown = frame[frame["variant"].isin(chosen or variants)]
    table(f"noise_{metric}", noise_summary(shown, metric, alpha, carries))
    st.caption(
        "With a 95% interval per head, 5% of heads exclude 0 by chance alone; the q-values correct for "
        "testing every head of a model (Benjamini-Hochberg), so only heads with q < α are evidence."
    )
    k = st.slider(
        "Top heads per model (largest |effect|)",
        1,
        int(frame.groupby(["variant", "seed"]).size().max()),
        min(10, int(frame.groupby(["variant", "seed"]).size().max())),
        key="head_k",
    )
    table(f"top_heads_{metric}", units_table(shown, metric, k=k, alpha=alpha, carries=carries))
    _ablation_extras(view, frames.get("head_ablation"), flags)


def _ablation_extras(view: Selection, ablation: pd.DataFrame | None, flags: dict[str, str]) -> None:
    st.subheader("Cumulative ablation")
    cumulative = need(view, "cumulative_ablation")
    if cumulative is not None:
        randoms = cumulative["order"].astype(str).str.startswith("random").any() if "order" in cumulative else False
        figure(
            "cumulative_ablation",
            "cumulative_curve",
            cumulative,
            flags=flags,
            caption="Heads removed in order of importance, most important first (solid) or least (dashed), "
            "with 95% bands; "
            + (
                "grey: random orders (mean and min-max)."
                if randoms
                else "the table holds no random-order curves, so there is no random baseline "
                "to compare with (the attribution stage writes most / least only)."
            ),
        )
    if ablation is not None and (ablation["unit"] == "layer").any():
        st.subheader("Whole-layer ablation")
        figure(
            "layer_ablation",
            "layer_effects",
            ablation,
            flags=flags,
            caption="Every head of one layer removed at once; open markers: not fit to be read.",
        )
        with st.expander("Whole-layer ablation as a table"):
            table("layer_ablation", layer_ablation_wide(ablation))
    st.subheader("Homogeneity and seed stability")
    comparison = need(view, "comparison")
    if comparison is not None:
        table("homogeneity", homogeneity_wide(comparison))
        st.caption(
            "Over |single-head ablation effects|: Gini 0 = every head carries the same, 1 = one head carries "
            "all; normalised entropy 1 = spread evenly, 0 = one head. Seed Spearman / top-k overlap: rank "
            "agreement of head effects between two seeds (1 = same ranking). Teacher alignment: Spearman of "
            "the layers' shares between a student and its teacher (mapped layers)."
        )
        with st.expander("All comparison rows"):
            table("comparison", comparison)


def neuron_signs(full: pd.DataFrame, neurons: pd.DataFrame, metric: str, variant: str, alpha: float) -> str:
    """Which sign of ``variant``'s neuron effects adds to its bias (from its own score in ``full``), and which models
    the significant neurons (q < ``alpha``) of ``neurons`` come from."""
    own = directions(metric, full, [variant]).get(variant)
    score = score_name(metric, neurons)
    text = (
        f"{variant}'s own {score} is {own[0]:+.3g}, so {own[1]} bars add to its bias. "
        if own and own[1]
        else f"{variant} has no score of its own in the table, so which sign adds bias is unknown. "
    )
    if "q" not in neurons:
        return text + "The table has no q-values."
    counts = neurons.assign(hit=neurons["q"] < alpha).groupby("variant")["hit"].sum()
    hits = [f"{v} {int(counts[v])}" for v in variants_of(neurons) if counts[v] > 0]
    none = [v for v in variants_of(neurons) if counts[v] == 0]
    return (
        text
        + f"Significant neurons (q < {alpha:g}, Benjamini-Hochberg over each model's neurons; each selected seed "
        + "counted) come from "
        + (", ".join(hits) if hits else "no model")
        + (f"; none from {', '.join(none)}" if none else "")
        + "."
    )


def neurons(view: Selection) -> None:
    frames = {label: (load(view, t), m) for label, (t, m) in neuron_sources().items()}
    sources = {
        label: f[(f["unit"] == "neuron") & (f["metric"] == m)]
        for label, (f, m) in frames.items()
        if f is not None and ((f["unit"] == "neuron") & (f["metric"] == m)).any()
    }
    if not sources:
        if all(f is None for f, _ in frames.values()):
            missing(view, "neuron_ig")
        else:
            st.info(NOT_ATTRIBUTED)
        return
    label = st.selectbox("Neuron effect", list(sources), key="neuron_metric")
    frame = sources[label]
    variant = st.selectbox("Variant", variants_of(frame), key="neuron_variant")
    flags = flag_notice(view, [variant])
    k = st.slider("Neurons", 1, 50, 10, key="neuron_k")
    rows = frame[frame["variant"] == variant]
    metric = neuron_sources()[label][1]
    alpha = findings_config(view).alpha
    st.caption(neuron_signs(frames[label][0], frame, metric, variant, alpha))
    figure(
        f"top_neurons_{metric}_{variant}",
        "top_neurons",
        rows,
        k,
        metric=metric,
        alpha=alpha,
        flag=flags.get(variant),
        caption=f"Faded bars: q ≥ {alpha:g} in some seed (not significant after "
        "Benjamini-Hochberg over the model's neurons). " + _GAP,
    )
    st.subheader(f"Top {k} neurons per layer")
    table(f"top_neurons_{metric}_{variant}", top_neurons_table(rows, k, metric=metric))
    st.subheader(f"Top {k} neurons of the model, with intervals")
    table(
        f"top_neurons_all_{metric}_{variant}",
        units_table(rows, metric, unit="neuron", k=k, alpha=alpha, carries=carries_for(view, metric)),
    )
