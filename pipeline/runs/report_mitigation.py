"""The report's mitigation section (RQ6: what removes the bias, at what accuracy cost): each mitigated variant against
its unmitigated twin (``mitigation`` finding) and the bias-accuracy frontier of every variant (``frontier``).

A mitigation is said to lower a bias metric only at q < alpha on models fit to be read, with its seeds clause, and
"lower" means closer to the value of a fair model (0 for gaps and effect sizes, 50 for the stereotype percentages).
"""

from __future__ import annotations

import pandas as pd

from attribution.plots_frontier import frontier_figure
from pipeline.runs.findings import Findings
from pipeline.runs.findings_variants import INTRINSIC_PREFIXES
from pipeline.runs.report_claims import DELTA_COLUMNS, Section, ci, fmt, headline_rows, judged, moves, pq, unavailable
from pipeline.variants import variant_sort_key

__all__ = ["mitigation_section"]

TITLE = "RQ6 What removes the bias, and at what accuracy cost?"
_SHOWN = ("accuracy", "gap_rms", "accuracy_gap", "cf_prob_gap", "cf_flip_rate", "seat_effect_size")


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


def _headline(pooled: pd.DataFrame, cfg) -> list[str]:
    """One sentence per mitigation: its pair on the simplest twin (the fine-tuned teacher when there is one), the
    change of each headline bias metric and of accuracy."""
    out = []
    for mitigation, rows in pooled.groupby("mitigation", sort=False):
        twins = sorted(set(rows["twin"]), key=variant_sort_key)
        pair = rows[rows["twin"] == twins[0]]
        parts = [moves(r, cfg) for _, r in headline_rows(pair).iterrows()]
        acc = pair[pair["metric"] == "accuracy"]
        cost = f"; accuracy changes by {ci(acc.iloc[0])} ({pq(acc.iloc[0])})" if len(acc) else ""
        if parts:
            out.append(f"{mitigation} ({pair['variant'].iloc[0]} vs {twins[0]}): " + ", ".join(parts) + cost)
    return out


def _intrinsic_summary(rows: pd.DataFrame) -> str:
    """``SEAT: 3 of 24 lower, 2 higher`` over the intrinsic comparisons of one pair (decided ones counted)."""
    parts = []
    for prefix in INTRINSIC_PREFIXES:
        mine = rows[rows["metric"].str.startswith(prefix)]
        if len(mine):
            parts.append(f"{prefix.rstrip('_').upper()}: {int((mine['decided'] & mine['lowers']).sum())} of "
                         f"{len(mine)} lower, {int((mine['decided'] & ~mine['lowers']).sum())} higher")  # fmt: skip
    return "; ".join(parts)


def mitigation_section(f: Findings) -> Section:
    """RQ6: the change of GAP_RMS and of the counterfactual gap and flip rate under each mitigation against its
    unmitigated twin, with its accuracy cost, the count of decided changes, and the Pareto front."""
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
    pooled = judged(table[(table["level"] == "pooled") & table["value"].notna()], cfg)
    bias = pooled[pooled["metric"] != "accuracy"]
    task = headline_rows(bias)
    pairs = pooled[["variant", "mitigation", "twin"]].drop_duplicates()
    if task.empty or not task["interpretable"].astype(bool).any():
        answer = (
            "The data cannot decide: no mitigated variant has a readable GAP_RMS or counterfactual comparison "
            f"with its twin (no trained classifier, or models not fit to be read). {front}"
        )
    else:
        good = task[task["decided"] & task["lowers"]]
        worse = task[task["decided"] & ~task["lowers"]]
        count = (
            f"{good['variant'].nunique()} of {pairs['variant'].nunique()} mitigated variants lower GAP_RMS, the "
            f"|counterfactual gap| or the counterfactual flip rate detectably against their unmitigated twins "
            f"(q < {cfg.alpha}); {worse['variant'].nunique()} raise one."
        )
        if good.empty:
            best = task[task["interpretable"].astype(bool)].sort_values("q").iloc[0]
            count += (
                f" None is decided (smallest q = {fmt(best['q'], 2)}); more test examples (n = {int(best['n'])}) "
                "or seeds would decide."
            )
        answer = " ".join([count, *(h + "." for h in _headline(pooled, cfg)), front])
    numbers = []
    for _, pair in pairs.iterrows():
        rows = pooled[(pooled["variant"] == pair["variant"]) & (pooled["twin"] == pair["twin"])]
        parts = [f"Δ {r['metric']}{' (' + r['subset'] + ')' if r['subset'] else ''} = {ci(r)} ({pq(r)})"
                 for _, r in rows[rows["metric"].isin(_SHOWN) & ~rows["metric"].str.startswith(INTRINSIC_PREFIXES)
                                  & rows["subset"].isin(("", "all"))].iterrows()]  # fmt: skip
        intrinsic = _intrinsic_summary(rows)
        if parts or intrinsic:
            line = f"{pair['variant']} vs {pair['twin']} [{pair['mitigation']}]: " + "; ".join(parts)
            numbers.append(line + (f"; intrinsic (decided at q < {cfg.alpha}): {intrinsic}" if intrinsic else ""))
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
    columns = ["variant", "mitigation", "twin", *DELTA_COLUMNS, "interpretable", "decided", "lowers"]
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
