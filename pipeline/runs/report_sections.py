"""The report's sections: for each research question, the answer in one plain sentence, the numbers behind it with
their intervals and q-values, the figure and the table (docs/FINDINGS.md).

A sentence never claims more than its test: a difference is stated only at q < alpha on a model fit to be read,
with the number of seeds it rests on; otherwise the sentence says that the data cannot decide and names what would
(more examples, seeds, IG steps, the missing stage). This module holds the fitness section, RQ1
(does compression change bias) and RQ2 (where does it live); RQ3-RQ5 are in :mod:`pipeline.runs.report_structure`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.runs.findings import Findings
from pipeline.runs.report_claims import (
    DELTA_COLUMNS,
    Section,
    ci,
    fmt,
    headline_rows,
    judged,
    moves,
    pq,
    seeds_short,
    unavailable,
)
from pipeline.runs.report_figures import HEADLINE, comparisons_figure, fitness_figure, units_figure
from pipeline.variants import Variant, variant_sort_key

__all__ = ["fitness_section", "rq1_section", "rq2_section"]


def _sorted(frame: pd.DataFrame, *extra: str) -> pd.DataFrame:
    order = sorted(range(len(frame)), key=lambda i: (variant_sort_key(str(frame["variant"].iloc[i])),
                                                     *(frame[c].iloc[i] for c in extra)))  # fmt: skip
    return frame.iloc[order].reset_index(drop=True)


def _recipe(variant: str) -> tuple[str, str]:
    try:
        v = Variant.parse(variant)
    except ValueError:
        return "?", "?"
    return v.method, v.order


# ---- fitness ------------------------------------------------------------------------------------------------------
def fitness_section(f: Findings) -> Section:
    title = "Models fit to be read"
    missing = unavailable(f, "fitness", title, ("fitness",), "which models are fit to be read")
    if missing:
        return missing
    fit = f.get("fitness")
    wide = fit.pivot_table(index=["variant", "seed"], columns="metric", values="value", aggfunc="first")
    acc = fit[fit["metric"] == "accuracy"].set_index(["variant", "seed"])
    over = fit[fit["metric"] == "accuracy_over_baseline"].set_index(["variant", "seed"])
    table = pd.DataFrame({
        "accuracy": [ci(r) for _, r in acc.iterrows()], "majority baseline": wide["majority_baseline"].map(fmt),
        "top prediction share": wide["top_prediction_share"].map(fmt), "p (beats baseline)": over["p"].map(fmt),
        "fit": acc["fit"], "why not": acc["reason"]}, index=acc.index).reset_index()  # fmt: skip
    table = _sorted(table, "seed")
    unfit = table[~table["fit"].astype(bool)]
    untrained = unfit[unfit["why not"].str.contains("never trained")]
    failed = unfit.drop(untrained.index)  # models with a trained head that still are not fit
    n = int(fit["n"].max())
    heads = (
        f" {', '.join(sorted(set(untrained['variant']), key=variant_sort_key))} has no trained classifier head "
        "(a pretrained model: only its intrinsic metrics are read)."
        if len(untrained)
        else ""
    )
    if failed.empty:
        answer = (
            f"All {len(table) - len(untrained)} models (variant x seed) with a trained classifier head are fit to be "
            f"read: each beats the majority-class baseline (one-sided p < {f.config.alpha}) and none puts more than "
            f"{f.config.collapse_share:.0%} of its predictions in one class.{heads}"
        )
    else:
        names = ", ".join(sorted({f"{v}" for v in failed["variant"]}, key=variant_sort_key))
        answer = (
            f"{len(failed)} of {len(table) - len(untrained)} models (variant x seed) with a trained classifier "
            f"head are not fit to be read ({names}): their extrinsic fairness numbers (GAP_RMS, TPR and accuracy "
            f"gaps, counterfactual gap) are marked not interpretable below.{heads}"
        )
    notes = []
    if (failed["why not"].str.contains("baseline")).any():
        notes.append(
            f"With n = {n} test examples a small advantage over the majority class cannot be told from "
            "chance: raise task.max_eval (more test examples) or fine-tune longer (finetune.epochs)."
        )
    return Section("fitness", title, answer, figure=fitness_figure(fit), table=table, notes=notes)


# ---- RQ1 ----------------------------------------------------------------------------------------------------------
def _seeds_clause(row, min_seeds: int) -> str:
    k = int(row["n_seeds"])
    if k >= min_seeds:
        return f"over {k} seeds (t-test q = {fmt(row['q_seeds'], 2)})"
    if k == 1:
        return f"on one seed (run {min_seeds} seeds to tell it from training noise)"
    return f"on {k} seeds (sd {fmt(row['sd'], 2)}; run {min_seeds} seeds for a test over seeds)"


def rq1_section(f: Findings) -> Section:
    title = "RQ1 Does compression change bias?"
    missing = unavailable(f, "rq1", title, ("comparisons",), "whether compression changes bias")
    if missing:
        return missing
    cfg = f.config
    comp = f.get("comparisons")
    pooled = judged(comp[(comp["level"] == "pooled") & comp["value"].notna()], cfg)
    pooled["compressed"] = [not str(v).startswith("teacher") for v in pooled["variant"]]
    bias = pooled[pooled["compressed"] & (pooled["metric"] != "accuracy")]
    readable = bias[bias["interpretable"].astype(bool)]
    decided = readable[readable["decided"]].sort_values("q")
    numbers = []
    for _, row in decided.head(8).iterrows():
        subset = f" ({row['subset']})" if row["subset"] else ""
        numbers.append(
            f"{row['variant']} vs {row['reference']}: Δ {row['metric']}{subset} = {ci(row)}, {pq(row)}, "
            f"{_seeds_clause(row, cfg.min_seeds)} [{row['method']}]"
        )
    task = headline_rows(readable)
    if not task.empty:
        moved = task[task["decided"]]
        answer = (
            f"Task-level bias, against the fine-tuned teacher on the same training set: {len(moved)} of {len(task)} "
            f"readable comparisons of GAP_RMS, the counterfactual gap and the flip rate change detectably "
            f"({int(moved['lowers'].sum())} lower, {int((~moved['lowers']).sum())} higher)."
        )
        original = task[~task["variant"].str.contains("@")]
        shown = original if len(original) else task
        for variant in sorted(set(shown["variant"]), key=variant_sort_key):
            rows = shown[shown["variant"] == variant]
            acc = pooled[(pooled["variant"] == variant) & (pooled["metric"] == "accuracy")]
            cost = f"; accuracy Δ {ci(acc.iloc[0])} ({pq(acc.iloc[0])})" if len(acc) else ""
            answer += f" {variant}: " + ", ".join(moves(r, cfg) for _, r in rows.iterrows()) + cost + "."
    else:
        answer = ""
    intrinsic = readable[readable["family"] == "intrinsic"]
    if len(intrinsic):
        moved = intrinsic[intrinsic["decided"]].sort_values("q")
        answer += (
            f" Intrinsic metrics, against the pretrained teacher (so fine-tuning is part of the change): "
            f"{len(moved)} of {len(intrinsic)} comparisons change detectably"
        )
        if len(moved):
            top = moved.iloc[0]
            subset = f" ({top['subset']})" if top["subset"] else ""
            answer += (
                f"; the clearest is {top['variant']}, whose {top['metric']}{subset} changes by {ci(top)} "
                f"({pq(top)}, {seeds_short(top, cfg.min_seeds)})"
            )
        answer += "."
    if readable.empty:
        answer = (
            "The data cannot decide: no compressed variant has a readable comparison (every extrinsic one "
            "involves a model not fit to be read, and no intrinsic metric was compared)."
        )
    elif decided.empty:
        best = readable.sort_values("q").iloc[0]
        width = float(np.nanmedian(readable["ci_high"] - readable["ci_low"]) / 2)
        answer = (
            f"No compressed variant changes a bias metric detectably (smallest q = {fmt(best['q'], 2)}: "
            f"{best['variant']}, {best['metric']}); the intervals (median ±{fmt(width, 2)}) cannot exclude "
            f"changes of that size, so more test examples (n = {int(best['n'])}) or seeds "
            f"(have {int(pooled['n_seeds'].max())}) would decide."
        )
    else:
        answer = answer.strip()
        if int(pooled["n_seeds"].max()) < cfg.min_seeds:
            answer += f" Run {cfg.min_seeds} seeds to tell these changes from training noise."
    notes = []
    n_unread = int((~bias["interpretable"].astype(bool)).sum())
    if n_unread:
        notes.append(f"{n_unread} extrinsic comparisons involve a model not fit to be read and are not interpreted.")
    by_interval = sorted(set(pooled.loc[pooled["method"] == "intervals", "metric"]))
    if by_interval:
        notes.append(
            f"{', '.join(by_interval)} are compared through their stored intervals (unpaired normal "
            "approximation, conservative); the other metrics are paired bootstraps over the same test examples."
        )
    table = pooled[
        ["variant", "reference", *DELTA_COLUMNS, "sd", "p_seeds", "method", "interpretable", "decided"]
    ].rename(columns={"value": "delta"})
    table.insert(1, "method/order", ["/".join(_recipe(v)) for v in table["variant"]])
    headline = table[table["metric"].isin((*HEADLINE, "accuracy_gap"))]
    return Section(
        "rq1",
        title,
        answer,
        numbers,
        comparisons_figure(comp, cfg.alpha),
        _sorted(headline if len(headline) else table, "metric", "subset"),
        notes,
    )


# ---- RQ2 ----------------------------------------------------------------------------------------------------------
def _agreement(f: Findings, variant: str, seed: int) -> tuple[bool | None, str]:
    agree = f.get("method_agreement")
    if agree is None:
        return None, "method agreement not computed"
    rows = agree[(agree["variant"] == variant) & (agree["seed"] == seed) & agree["causal"].astype(bool)]
    rho = rows[rows["metric"] == "spearman"]
    if rho.empty:
        return None, "only one causal method ran"
    r = rho.iloc[0]
    overlap = rows[rows["metric"] == "topk_overlap"]["value"].iloc[0]
    return bool(r["agree"]), f"ablation vs patching Spearman {ci(r)}, top-{int(r['k'])} overlap {fmt(overlap, 2)}"


def rq2_section(f: Findings) -> Section:
    title = "RQ2 Where does the bias live?"
    missing = unavailable(f, "rq2", title, ("bias_units",), "where the bias lives")
    if missing:
        return missing
    cfg = f.config
    units = f.get("bias_units")
    carriers = units[units["carries"].astype(bool)]
    numbers, robust = [], []
    for (variant, seed), group in sorted(carriers.groupby(["variant", "seed"]),
                                         key=lambda kv: (variant_sort_key(kv[0][0]), kv[0][1])):  # fmt: skip
        agree, how = _agreement(f, variant, seed)
        robust.append(agree)
        for (unit, layer, head), rows in group.groupby(["unit", "layer", "head"]):
            methods = ", ".join(sorted(rows["method"]))
            best = rows.sort_values("q").iloc[0]
            name = f"L{layer}.H{head}" if unit == "head" else f"L{layer} neuron {head}"
            numbers.append(f"{variant} s{seed}: {name} (depth {fmt(best['depth'], 2)}) carries {fmt(best['share'], 2)} "
                           f"of the total by {methods}; effect {ci(best)}, {pq(best)}; {how}")  # fmt: skip
    n_ex = int(units["n"].max())
    causal = units[units["causal"].astype(bool) & (units["unit"] == "head")]
    n_models = causal.groupby(["variant", "seed"]).ngroups
    if n_models == 0:
        answer = (
            "The data cannot decide: no causal method ran (only attributions are present); switch on "
            "[attribution] ablation or patching and run `bias-atlas run CONFIG` again."
        )
    elif carriers.empty:
        answer = (
            f"No unit carries bias: no head reaches q < {cfg.alpha} with at least {cfg.min_share:.0%} of its "
            f"model's total effect under ablation or patching in any of {n_models} models"
            + (
                f"; with only n = {n_ex} examples per model the intervals are wide, so more examples "
                "(attribution.n_examples) would decide."
                if n_ex < 100
                else "."
            )
        )
    else:
        per_model = carriers.groupby(["variant", "seed"])
        counts = per_model.apply(lambda g: g[["unit", "layer", "head"]].drop_duplicates().shape[0])
        both = per_model.apply(lambda g: int((g.groupby(["unit", "layer", "head"])["method"].nunique() > 1).sum()))
        top = carriers.sort_values(["share"], ascending=False).iloc[0]
        where = f"L{top['layer']}.H{top['head']}" if top["unit"] == "head" else f"L{top['layer']} neuron {top['head']}"
        answer = (
            f"Bias-carrying units are found in {len(counts)} of {n_models} models ({counts.min()} to "
            f"{counts.max()} units each, {int(both.sum())} flagged by both ablation and patching); the largest "
            f"share is {where} of {top['variant']} (seed {top['seed']}, normalised depth {fmt(top['depth'], 2)}): "
            f"{fmt(top['share'], 2)} of the total effect ({pq(top)})."
        )
        if all(r is True for r in robust):
            answer += " The location is robust: ablation and patching agree in every such model."
        else:
            answer += (
                " The location is not established everywhere: the causal methods (ablation, patching) do not "
                "agree in every model (see the numbers); more examples would decide."
            )
    notes = []
    fitness = f.get("fitness")
    if fitness is not None and not carriers.empty:
        fit = {(str(v), int(s)) for v, s, ok in zip(fitness["variant"], fitness["seed"], fitness["fit"]) if ok}
        if not any((str(v), int(s)) in fit for v, s in zip(carriers["variant"], carriers["seed"])):
            answer += (
                " None of these models is fit to be read, so this locates the bias score of classifiers "
                "that do not beat the majority class."
            )
    if fitness is not None:
        unfit = sorted({v for v, fit in zip(fitness["variant"], fitness["fit"]) if not fit} & set(causal["variant"]),
                       key=variant_sort_key)  # fmt: skip
        if unfit:
            notes.append(
                f"{', '.join(unfit)} are not fit to be read: their attributions explain the bias score of a "
                "classifier that does not beat the majority class (see the first section)."
            )
    incomplete = f.get("ig_completeness")
    if incomplete is not None and (~incomplete["complete"].astype(bool)).any():
        bad = incomplete[~incomplete["complete"].astype(bool)]
        notes.append(
            f"IG is incomplete (completeness error up to {fmt(bad['value'].max(), 2)} of F(x) - F(baseline), "
            f"tolerance {cfg.completeness_tol:.0%}) in {', '.join(sorted(set(bad['subset'])))}: those rows are "
            f"not read here; raise attribution.{'token_ig_steps' if set(bad['subset']) == {'token_ig'} else 'ig_steps'}."
        )
    neurons = units[
        (units["method"] == "neuron_ig") & units["significant"].astype(bool) & units["complete"].astype(bool)
    ]
    if len(neurons):
        notes.append(
            f"Neuron IG marks {len(neurons)} FFN neurons at q < {cfg.alpha} (attributions, not interventions: "
            "patch them with attribution.patch_top_neurons to test them causally)."
        )
    heads = units[(units["unit"] == "head") & units["causal"].astype(bool)]
    table = heads.sort_values("share", ascending=False).groupby(["variant", "seed", "method"]).head(3)
    table = _sorted(table[["variant", "seed", "method", "layer", "head", "depth", "value", "ci_low", "ci_high",
                           "share", "p", "q", "carries"]], "seed", "method")  # fmt: skip
    return Section("rq2", title, answer, numbers[:12], units_figure(units), table, notes)
