"""The report's mitigation section (RQ6: what removes the bias, at what accuracy cost): each mitigated variant against
its unmitigated twin (``mitigation`` finding) and the bias-accuracy frontier of every variant (``frontier``).

A mitigation is said to lower a bias metric only at q < alpha on models fit to be read, with its seeds clause, and
"lower" means closer to the value of a fair model (0 for gaps and effect sizes, 50 for the stereotype percentages).
"""

from __future__ import annotations

import pandas as pd

from attribution.plots_frontier import frontier_figure
from pipeline.runs.findings import Findings
from pipeline.runs.report_sections import Section, ci, fmt, pq, unavailable
from pipeline.variants import variant_sort_key

__all__ = ["mitigation_section"]

TITLE = "RQ6 What removes the bias, and at what accuracy cost?"
_FAIR = {"crows_stereo_pct": 50.0, "stereoset_ss": 50.0, "stereoset_icat": 100.0}  # others: 0
_SHOWN = ("accuracy", "gap_rms", "accuracy_gap", "cf_prob_gap", "cf_flip_rate", "seat_effect_size")


def _lowers(row) -> bool:
    """The variant's value is closer to a fair model's than its twin's."""
    fair = _FAIR.get(row["metric"], 0.0)
    return abs(row["value_variant"] - fair) < abs(row["value_reference"] - fair)


def _seeds(row, min_seeds: int) -> str:
    k = int(row["n_seeds"])
    if k >= min_seeds:
        return f"over {k} seeds (t-test q = {fmt(row['q_seeds'], 2)})"
    return "on one seed" if k == 1 else f"on {k} seeds (sd {fmt(row['sd'], 2)})"


def _front_sentence(frontier: pd.DataFrame | None) -> tuple[str, list[str]]:
    if frontier is None:
        return "", []
    sentences, numbers = [], []
    for metric, rows in frontier.groupby("metric", sort=False):
        front = rows[rows["pareto"].astype(bool)].sort_values("accuracy", ascending=False)
        fit = int(rows["fit"].astype(bool).sum())
        if not fit:
            sentences.append(f"no variant is fit to be read, so the {metric} frontier has no Pareto front")
            continue
        sentences.append(
            f"on the {metric} frontier {len(front)} of {fit} readable variants are Pareto-optimal "
            f"({', '.join(front['variant'])})"
        )
        numbers += [
            f"{metric} frontier: {r['variant']} ({r['compression']}, mitigation {r['mitigation']}): accuracy "
            f"{fmt(r['accuracy'])} [{fmt(r['accuracy_low'])}, {fmt(r['accuracy_high'])}], {metric} {ci(r)}"
            for _, r in front.iterrows()
        ]
    text = "; ".join(sentences)
    return (text[:1].upper() + text[1:] + ".") if text else "", numbers


def mitigation_section(f: Findings) -> Section:
    """RQ6: the decided bias reductions of the mitigations with their accuracy change, and the Pareto front."""
    missing = unavailable(f, "rq6", TITLE, ("mitigation", "frontier"), "what removes the bias")
    if missing:
        return missing
    cfg, table, frontier = f.config, f.get("mitigation"), f.get("frontier")
    front, front_numbers = _front_sentence(frontier)
    figure = frontier_figure(frontier) if frontier is not None else None
    if table is None:
        answer = (
            "No variant of this run is a mitigated twin of another (no @cda / @balanced training set, "
            "[compress.biasprune], [compress.erase] or distil mixup), so no remedy can be compared. " + front
        )
        return Section("rq6", TITLE, answer.strip(), front_numbers[:12], figure, notes=f.missing.get("mitigation", []))
    pooled = table[(table["level"] == "pooled") & table["value"].notna()].copy()
    seed_ok = (pooled["n_seeds"] < cfg.min_seeds) | (pooled["q_seeds"] < cfg.alpha)
    pooled["decided"] = pooled["interpretable"].astype(bool) & (pooled["q"] < cfg.alpha) & seed_ok
    pooled["lowers"] = [_lowers(r) for _, r in pooled.iterrows()]
    bias = pooled[pooled["metric"] != "accuracy"]
    good = bias[bias["decided"] & bias["lowers"]].sort_values("q")
    worse = bias[bias["decided"] & ~bias["lowers"]]
    accuracy = pooled[pooled["metric"] == "accuracy"].set_index(["variant", "twin"])
    pairs = pooled[["variant", "mitigation", "twin"]].drop_duplicates()
    if not good.empty:
        top = good.iloc[0]
        cost_row = (
            accuracy.loc[(top["variant"], top["twin"])] if (top["variant"], top["twin"]) in accuracy.index else None
        )
        cost_text = f"; its accuracy changes by {ci(cost_row)} ({pq(cost_row)})" if cost_row is not None else ""
        subset = f" ({top['subset']})" if top["subset"] else ""
        answer = (
            f"{good['variant'].nunique()} of {pairs['variant'].nunique()} mitigated variants lower a bias "
            f"metric detectably against their unmitigated twins ({len(good)} comparisons; {len(worse)} raise "
            f"one). The clearest is {top['variant']} ({top['mitigation']} vs {top['twin']}): {top['metric']}"
            f"{subset} moves by {ci(top)} ({pq(top)}, {_seeds(top, cfg.min_seeds)}){cost_text}. {front}"
        )
    elif bias.empty or not bias["interpretable"].astype(bool).any():
        answer = (
            "The data cannot decide: no mitigated variant has a readable bias comparison with its twin (the "
            f"models involved are not fit to be read). {front}"
        )
    else:
        best = bias[bias["interpretable"].astype(bool)].sort_values("q").iloc[0]
        answer = (
            f"No mitigation lowers a bias metric detectably against its twin (smallest q = {fmt(best['q'], 2)}: "
            f"{best['variant']}, {best['metric']}, Δ {ci(best)}); more test examples (n = {int(best['n'])}) or "
            f"seeds would decide. {front}"
        )
    numbers = []
    for _, pair in pairs.iterrows():
        rows = pooled[
            (pooled["variant"] == pair["variant"]) & (pooled["twin"] == pair["twin"]) & pooled["metric"].isin(_SHOWN)
        ]
        parts = [
            f"Δ {r['metric']}{' (' + r['subset'] + ')' if r['subset'] else ''} = {ci(r)} ({pq(r)})"
            for _, r in rows.iterrows()
        ]
        if parts:
            numbers.append(f"{pair['variant']} vs {pair['twin']} [{pair['mitigation']}]: " + "; ".join(parts))
    notes = []
    if (~bias["interpretable"].astype(bool)).any():
        notes.append(
            f"{int((~bias['interpretable'].astype(bool)).sum())} comparisons involve a model not fit to be "
            "read and are not interpreted."
        )
    notes.append(
        "Accuracy, GAP_RMS, TPR gaps and the counterfactual metrics are paired bootstraps over the same test "
        "examples (method column); intrinsic metrics are compared through their stored intervals (conservative). "
        "Frontier points pool seeds (means of values and interval bounds)."
    )
    shown = pooled[pooled["metric"].isin(_SHOWN)]
    shown = shown.iloc[
        sorted(range(len(shown)), key=lambda i: (variant_sort_key(shown["variant"].iloc[i]), shown["metric"].iloc[i]))
    ]
    columns = [
        "variant",
        "mitigation",
        "twin",
        "metric",
        "subset",
        "value",
        "ci_low",
        "ci_high",
        "p",
        "q",
        "n",
        "n_seeds",
        "interpretable",
        "decided",
        "lowers",
    ]
    out = shown[columns].rename(columns={"value": "delta"}).reset_index(drop=True)
    return Section(
        "rq6",
        TITLE,
        answer.strip(),
        numbers[:12] + front_numbers[:6],
        figure,
        out,
        notes + [m for m in f.missing.get("frontier", [])],
    )
