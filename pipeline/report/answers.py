"""The report's sections: for each research question, the answer in one plain sentence, the numbers behind it with
their intervals and q-values, the figure and the table (docs/FINDINGS.md).

A sentence never claims more than its test: a difference is stated only at q < alpha on a model fit to be read,
with the number of seeds it rests on; otherwise the sentence says that the data cannot decide and names what would
(more examples, seeds, IG steps, the missing stage). This module holds the fitness section, RQ1
(does compression change bias); RQ2 is in :mod:`pipeline.report.answers_location`, RQ3-RQ5 in
:mod:`pipeline.report.answers_structure`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.findings.compute import Findings
from pipeline.report.charts import HEADLINE, comparisons_figure, fitness_figure
from pipeline.report.claims import (
    DELTA_COLUMNS,
    Section,
    accuracy_cost,
    changed_names,
    ci,
    fmt,
    gap_floor,
    headline_metrics,
    headline_rows,
    judged,
    label,
    moves,
    pq,
    seeds_short,
    unavailable,
)
from pipeline.variants import Variant, variant_sort_key

__all__ = ["fitness_section", "rq1_section"]


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
    trained = len(table) - len(untrained)
    short = (f"All {trained} trained models are fit to be read." if failed.empty
             else f"{len(failed)} of {trained} trained models are not fit to be read ({names}).")  # fmt: skip
    return Section("fitness", title, answer, figure=fitness_figure(fit), table=table, notes=notes, short=short)


# ---- RQ1 ----------------------------------------------------------------------------------------------------------
def _rq1_counts(task: pd.DataFrame, cfg) -> str:
    """The primary metric's decided changes and the secondary family's, each named, and what they are about."""
    out = []
    if not (task["role"] == "primary").any():
        out.append(f"Primary metric ({label(cfg.primary_rq1)}, findings.primary_rq1): not in this run's tables (the "
                   "bias_metrics stage writes it; `bias-atlas run CONFIG` again).")  # fmt: skip
    for role, what in (("primary", f"Primary metric ({label(cfg.primary_rq1)}, findings.primary_rq1)"),
                       ("secondary", "Secondary metrics (BH-corrected as one family)")):  # fmt: skip
        rows = task[task["role"] == role]
        if rows.empty:
            continue
        moved = rows[rows["decided"]]
        named = "; ".join(f"{r['variant']} {label(r['metric'])} {'lower' if r['lowers'] else 'higher'}"
                          for _, r in moved.iterrows())  # fmt: skip
        out.append(f"{what}: {len(moved)} of {len(rows)} readable comparisons change detectably "
                   f"({int(moved['lowers'].sum())} lower, {int((~moved['lowers']).sum())} higher{': ' + named if named else ''}).")  # fmt: skip
    k = int(task["n_seeds"].max())
    if k < cfg.min_seeds:
        out.append(f"With {'one seed' if k == 1 else f'{k} seeds'} per variant these are statements about the trained "
                   f"models, not about the compression methods; {cfg.min_seeds} seeds test the methods (seed x example "
                   "bootstrap).")  # fmt: skip
    else:
        out.append(f"Over {k} seeds, decided by the seed x example bootstrap: statements about the methods.")
    return " ".join(out)


def _rq1_short(readable: pd.DataFrame, task: pd.DataFrame, cfg) -> str:
    """RQ1 in one sentence: the primary metric's decided changes (any bias metric's when it is absent)."""
    if readable.empty:
        return "Cannot decide: no compressed model has a readable comparison."
    primary = task[task["role"] == "primary"] if len(task) else task
    if primary.empty:
        moved = readable[readable["decided"]]
        return (f"{len(moved)} of {len(readable)} readable bias comparisons change detectably (no primary metric in "
                "this run).")  # fmt: skip
    moved, what = primary[primary["decided"]], label(cfg.primary_rq1)
    seeds = int(primary["n_seeds"].max())
    about = " (one seed: about these trained models, not the methods)" if seeds < cfg.min_seeds else ""
    if moved.empty:
        return f"No compressed model changes the {what} detectably (q < {cfg.alpha}){about}."
    names = changed_names(moved)
    return (f"Compression changes the {what} detectably in {len(moved)} of {len(primary)} comparisons "
            f"({names}){about}.")  # fmt: skip


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
    primary = cfg.primary_rq1
    task = headline_rows(readable, headline_metrics(primary))
    if not task.empty:
        answer = "Task-level bias, against the fine-tuned teacher on the same training set. " + _rq1_counts(task, cfg)
        original = task[~task["variant"].str.contains("@")]
        shown = original if len(original) else task
        bias_table = f.inputs.get("bias_metrics")
        for variant in sorted(set(shown["variant"]), key=variant_sort_key):
            rows = shown[shown["variant"] == variant]
            acc = pooled[(pooled["variant"] == variant) & (pooled["metric"] == "accuracy")]
            cost = f"; accuracy Δ {accuracy_cost(acc.iloc[0], cfg)}" if len(acc) else ""
            parts = [moves(r, cfg, gap_floor(bias_table, (r["reference"], variant)) if r["metric"] == "gap_rms"
                           else "") for _, r in rows.iterrows()]  # fmt: skip
            answer += f" {variant}: " + ", ".join(parts) + cost + "."
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
        if int(pooled["n_seeds"].max()) < cfg.min_seeds and task.empty:
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
        _rq1_short(readable, task, cfg),
    )


# ---- RQ2 ----------------------------------------------------------------------------------------------------------
