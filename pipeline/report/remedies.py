"""The report's mitigation section (RQ6: what removes the bias, at what accuracy cost): each mitigated variant against
its unmitigated twin (``mitigation`` finding) and the bias-accuracy frontier of every variant (``frontier``).

One primary bias metric (``findings.primary_rq6``, default the skew-oriented counterfactual gap) is decided on its
own BH q-value over the mitigated variants; the other headline metrics (GAP_RMS, mean |counterfactual gap|, flip rate
above its neutral-edit control) are secondary and BH-corrected as one family. A remedy trained on word swaps (CDA,
mixup) is judged on the held-out swap words (:mod:`pipeline.data.swap_split`), not on the swaps it trained on. With
fewer than ``min_seeds`` seeds a sentence is about the trained models; with more, the seed x example bootstrap decides
and the sentence is about the method. Headline metrics are tested as themselves ("lower": the tested change is
negative); stored benchmark scores compare their distance to a fair model's (0; 50 for stereotype percentages).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.compress.registry import remedies
from pipeline.figures.frontier import frontier_figure
from pipeline.findings.compute import Findings
from pipeline.metrics.registry import intrinsic_prefixes
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
    unavailable,
)
from pipeline.variants import variant_sort_key

__all__ = ["mitigation_section"]

TITLE = "RQ6 What removes the bias, and at what accuracy cost?"
_SHOWN = ("accuracy", "gap_rms", "accuracy_gap", "cf_skew_gap", "cf_prob_gap", "cf_prob_abs_change", "cf_flip_rate",
          "cf_flip_excess", "seat_effect_size")  # fmt: skip


def _cf_subset(mitigation: str) -> str:
    """``heldout`` for a remedy trained on word swaps (CDA's training set, a record's ``Remedy.heldout``): judged on
    the held-out swap words it never saw; ``all`` otherwise."""
    trained_on_swaps = {"cda"} | {r.name for r in remedies() if r.heldout}
    return "heldout" if mitigation in trained_on_swaps else "all"


def _headline_mask(rows: pd.DataFrame) -> pd.Series:
    """The rows a remedy is judged on: GAP_RMS over all examples, the counterfactual metrics on the held-out swap
    words for a remedy trained on swaps and on all of them otherwise."""
    cf_subset = rows["mitigation"].map(_cf_subset)
    return pd.Series(np.where(rows["metric"].str.startswith("cf_"), rows["subset"] == cf_subset,
                              rows["subset"].isin(("", "all"))), index=rows.index)  # fmt: skip


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
        point = rows[rows["pareto_point"].astype(bool)] if "pareto_point" in rows else front
        sentences.append(
            f"on the {metric}{' (' + rows['subset'].iloc[0] + ')' if rows['subset'].iloc[0] else ''} frontier "
            f"{len(front)} of {fit} readable variants are not significantly dominated ({', '.join(front['variant'])}; "
            f"on point estimates alone {len(point)} are Pareto-optimal)"
        )
        numbers += [
            f"{metric} frontier: {r['variant']} ({r['compression']}, mitigation {r['mitigation']}): accuracy "
            f"{fmt(r['accuracy'])} [{fmt(r['accuracy_low'])}, {fmt(r['accuracy_high'])}], {metric} {ci(r)}"
            for _, r in front.iterrows()
        ]
    text = "; ".join(sentences)
    return (text[:1].upper() + text[1:] + ".") if text else "", numbers


def _headline(pooled: pd.DataFrame, cfg, bias: pd.DataFrame | None) -> list[str]:
    """One sentence per mitigation: its pair on the simplest twin (the fine-tuned teacher when there is one), the
    change of each headline bias metric (primary first) and of accuracy."""
    out = []
    for mitigation, rows in pooled.groupby("mitigation", sort=False):
        twins = sorted(set(rows["twin"]), key=variant_sort_key)
        pair = rows[rows["twin"] == twins[0]]
        metrics = headline_metrics(cfg.primary_rq6)
        parts = [moves(r, cfg, gap_floor(bias, (r["twin"], r["variant"])) if r["metric"] == "gap_rms" else "")
                 for _, r in headline_rows(pair, metrics, _cf_subset(str(mitigation))).iterrows()]  # fmt: skip
        acc = pair[pair["metric"] == "accuracy"]
        cost = f"; accuracy changes by {accuracy_cost(acc.iloc[0], cfg)}" if len(acc) else ""
        if parts:
            out.append(f"{mitigation} ({pair['variant'].iloc[0]} vs {twins[0]}): " + ", ".join(parts) + cost)
    return out


def _eo_sources(f: Findings, variants: list[str]) -> list[str]:
    """For each equal-opportunity (``eo``) variant: its rule needs each input's gender at prediction time, and where
    this run took it from (``compress.eo.gender`` of the manifest; with the inferred gender, the share of dev texts
    with none that the build recorded in ``training``)."""
    if not variants:
        return []
    section = ((f.run.manifest.get("config") or {}).get("compress") or {}).get("eo") or {}
    gender = section.get("gender")
    shares = {}
    if gender == "inferred" and f.run.has("training"):
        try:
            training = f.run.table("training")
        except (OSError, ValueError):  # a damaged table: the share is left out
            training = None
        if training is not None:
            rows = training[training["metric"] == "eo_dev_unknown_gender_share"]
            shares = rows.groupby("variant")["value"].mean().to_dict()
    source = {
        "given": "the data's gender labels (compress.eo.gender = 'given'): the remedy can only be deployed where "
        "each input comes with a gender label",
        "inferred": "the gendered words of each text (compress.eo.gender = 'inferred'): a text with none, or as many "
        "of each, keeps the model's own prediction, and TPRs are equalised by the inferred gender, not the data's",
    }.get(gender, "a gender source this run's manifest does not record")
    out = []
    for variant in variants:
        share = shares.get(variant, np.nan)
        none = f"; {fmt(100 * share, 2)}% of its dev texts had no inferred gender" if np.isfinite(share) else ""
        out.append(f"{variant} is equal opportunity by post-processing, which needs each input's gender at "
                   f"prediction time; this run used {source}{none}. It outputs drawn decisions, not probabilities, "
                   "so its gaps in probability (counterfactual and skew-oriented gap, mean |gap|) are undefined and "
                   "it is compared on decisions only: accuracy, GAP_RMS and flip rates.")  # fmt: skip
    return out


def _intrinsic_summary(rows: pd.DataFrame) -> str:
    """``SEAT: 3 of 24 lower, 2 higher`` over the intrinsic comparisons of one pair (decided ones counted)."""
    parts = []
    for prefix in intrinsic_prefixes():
        mine = rows[rows["metric"].str.startswith(prefix)]
        if len(mine):
            parts.append(f"{prefix.rstrip('_').upper()}: {int((mine['decided'] & mine['lowers']).sum())} of "
                         f"{len(mine)} lower, {int((mine['decided'] & ~mine['lowers']).sum())} higher")  # fmt: skip
    return "; ".join(parts)


def _short(task: pd.DataFrame, cfg) -> str:
    """RQ6 in one sentence: which remedies lower (or raise) the primary metric against their twins."""
    rows = task[(task["role"] == "primary") & task["interpretable"].astype(bool)]
    if rows.empty:
        return "Cannot decide: no remedy has a readable comparison on the primary metric."
    moved = rows[rows["decided"]]
    about = " (one seed: about these trained models)" if int(rows["n_seeds"].max()) < cfg.min_seeds else ""
    if moved.empty:
        return f"No remedy changes the {label(cfg.primary_rq6)} detectably against its twin{about}."
    names = changed_names(moved, twins=True)
    return (f"{len(moved)} of {len(rows)} remedy comparisons change the {label(cfg.primary_rq6)} detectably against "
            f"their twins ({names}){about}.")  # fmt: skip


def _counts(task: pd.DataFrame, pairs: pd.DataFrame, cfg) -> str:
    """The primary metric's decided changes over the mitigated variants, the secondary family's, each named, and
    what they are about (the trained models or, over enough seeds, the methods)."""
    out = []
    roles = (("primary", f"Primary metric ({label(cfg.primary_rq6)}, findings.primary_rq6)"),
             ("secondary", "Secondary metrics (BH-corrected as one family)"))  # fmt: skip
    for role, what in roles:
        rows = task[(task["role"] == role) & task["interpretable"].astype(bool)]
        if rows.empty:
            if role == "primary":
                out.append(f"{what}: not in this run's tables.")
            continue
        lower, higher = rows[rows["decided"] & rows["lowers"]], rows[rows["decided"] & ~rows["lowers"]]
        named = [f"{r['variant']} vs {r['twin']} {label(r['metric'])}"
                 f"{' (held-out words)' if r['subset'] == 'heldout' else ''} {way}"
                 for way, part in (("lower", lower), ("higher", higher)) for _, r in part.iterrows()]  # fmt: skip
        out.append(f"{what}: {len(lower)} of {len(rows)} readable comparisons over {pairs['variant'].nunique()} "
                   f"mitigated variants are lower detectably than the unmitigated twin, {len(higher)} higher"
                   f"{' (' + '; '.join(named) + ')' if named else ''}.")  # fmt: skip
        if role == "primary" and lower.empty and higher.empty:
            best = rows.sort_values("q_used").iloc[0]
            out.append(f"None is decided (smallest q = {fmt(best['q_used'], 2)}); more test examples "
                       f"(n = {int(best['n'])}) or seeds would decide.")  # fmt: skip
    k = int(task["n_seeds"].max())
    out.append(f"With {'one seed' if k == 1 else f'{k} seeds'} per variant these are statements about the trained "
               f"models, not about the remedies; {cfg.min_seeds} seeds test the remedies (seed x example bootstrap)."
               if k < cfg.min_seeds else f"Over {k} seeds, decided by the seed x example bootstrap: statements "
               "about the remedies.")  # fmt: skip
    return " ".join(out)


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
            "No variant of this run is a mitigated twin of another (no @cda / @balanced / @reweighed training set, "
            "[compress.biasprune], [compress.erase] or distil mixup), so no remedy can be compared. " + front
        )
        return Section(
            "rq6",
            TITLE,
            answer.strip(),
            front_numbers[:12],
            figure,
            notes=f.missing.get("mitigation", []),
            short="No remedy can be compared: no variant is a mitigated twin of another.",
        )
    pooled = table[(table["level"] == "pooled") & table["value"].notna()]
    pooled = judged(pooled, cfg, cfg.primary_rq6, _headline_mask(pooled))
    bias = pooled[pooled["metric"] != "accuracy"]
    task = bias[bias["role"] != "other"]
    pairs = pooled[["variant", "mitigation", "twin"]].drop_duplicates()
    short = "Cannot decide: no remedy has a readable comparison with its twin."
    if task.empty or not task["interpretable"].astype(bool).any():
        answer = (
            "The data cannot decide: no mitigated variant has a readable GAP_RMS or counterfactual comparison "
            f"with its twin (no trained classifier, or models not fit to be read). {front}"
        )
    else:
        answer = " ".join([_counts(task, pairs, cfg), *(h + "." for h in _headline(pooled, cfg, f.inputs.get(
            "bias_metrics"))), front])  # fmt: skip
        short = _short(task, cfg)
    numbers = []
    for _, pair in pairs.iterrows():
        rows = pooled[(pooled["variant"] == pair["variant"]) & (pooled["twin"] == pair["twin"])]
        parts = [f"Δ {r['metric']}{' (' + r['subset'] + ')' if r['subset'] else ''} = {ci(r)} ({pq(r)})"
                 for _, r in rows[rows["metric"].isin(_SHOWN) & ~rows["metric"].str.startswith(intrinsic_prefixes())
                                  & rows["subset"].isin(("", "all", "heldout"))].iterrows()]  # fmt: skip
        intrinsic = _intrinsic_summary(rows)
        if parts or intrinsic:
            line = f"{pair['variant']} vs {pair['twin']} [{pair['mitigation']}]: " + "; ".join(parts)
            numbers.append(line + (f"; intrinsic (decided at q < {cfg.alpha}): {intrinsic}" if intrinsic else ""))
    eo = sorted(set(pairs.loc[pairs["mitigation"] == "eo", "variant"]), key=variant_sort_key)
    notes = _eo_sources(f, eo)
    if (~bias["interpretable"].astype(bool)).any():
        notes.append(
            f"{int((~bias['interpretable'].astype(bool)).sum())} comparisons involve a model not fit to be "
            "read and are not interpreted."
        )
    notes.append(
        "Accuracy, GAP_RMS, TPR gaps and the counterfactual metrics are paired bootstraps over the same test "
        "examples (method column); intrinsic metrics are compared through their stored intervals (conservative). "
        "Counterfactual rows of subset 'heldout' swap only the held-out words, which no remedy trained on; 'all' "
        "swaps every pair (for CDA and mixup partly the edits they trained on). Frontier points pool seeds (means "
        "of values and interval bounds); a variant leaves the front only when another beats it with non-overlapping "
        "intervals."
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
        short,
    )
