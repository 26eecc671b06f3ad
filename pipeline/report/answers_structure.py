"""Report sections RQ3 (concentrated or spread), RQ4 (stable across seeds and from teacher to student) and RQ5
(is gender encoded, and does erasing it remove the bias); see :mod:`pipeline.report.answers`."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.findings.compute import Findings
from pipeline.report.charts import concentration_figure, encoding_figure, stability_figure
from pipeline.report.claims import Section, ci, fmt, power_clause, pq, unavailable
from pipeline.variants import variant_sort_key

__all__ = ["rq3_section", "rq4_section", "rq5_section"]


def _by_variant(frame: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    return sorted(frame.groupby("variant"), key=lambda kv: variant_sort_key(str(kv[0])))


# ---- RQ3 ----------------------------------------------------------------------------------------------------------
def rq3_section(f: Findings) -> Section:
    title = "RQ3 Is the bias concentrated in few heads or spread?"
    missing = unavailable(f, "rq3", title, ("concentration",), "whether the bias is concentrated")
    if missing:
        return missing
    cfg = f.config
    conc = f.get("concentration")
    method = "ablation" if (conc["method"] == "ablation").any() else str(conc["method"].iloc[0])
    rows = conc[conc["method"] == method]
    null = rows[rows["metric"] == "gini_null"].set_index(["variant", "seed"])
    numbers = [
        f"{r['variant']} s{r['seed']}: Gini {ci(r)}"
        + (
            f" vs {fmt(null.loc[(r['variant'], r['seed']), 'value'])} "
            f"[{fmt(null.loc[(r['variant'], r['seed']), 'ci_low'])}, {fmt(null.loc[(r['variant'], r['seed']), 'ci_high'])}]"
            f" with no head mattering ({pq(r)})"
            if (r["variant"], r["seed"]) in null.index
            else ""
        )
        for _, r in rows[rows["metric"] == "gini"].iterrows()
    ]
    claims, undecided = [], []
    for variant, group in _by_variant(rows[rows["metric"] == "gini_diff"]):
        q = group["q"] if "q" in group else group["p"]
        numbers += [f"{variant} s{r['seed']} - {r['reference']}: Gini Δ {ci(r)}, {pq(r)}" for _, r in group.iterrows()]
        signs = set(np.sign(group["value"]))
        if (q < cfg.alpha).all() and len(signs) == 1:
            shape = "more concentrated" if signs.pop() > 0 else "more evenly spread"
            claims.append(
                f"{variant}'s head effects are {shape} than {group['reference'].iloc[0]}'s "
                f"(Gini Δ {ci(group.iloc[0])}, q = {fmt(q.max(), 2)}, {len(group)} seed(s))"
            )
        else:
            undecided.append(variant)
    teacher = rows[(rows["metric"] == "gini") & rows["variant"].astype(str).str.startswith("teacher")]
    short = "Cannot decide: no model has head effects with a reference to compare with."
    if claims:
        answer = "; ".join(claims) + "."
        short = claims[0].split(" (")[0] + (f"; for {len(undecided)} other(s) the data cannot decide." if undecided
                                            else ".")  # fmt: skip
        if undecided:
            answer += f" For {', '.join(undecided)} the data cannot decide."
    elif undecided:
        answer = (
            f"The data cannot decide: no student's Gini differs from its teacher's at q < {cfg.alpha} "
            f"({', '.join(undecided)}); narrower head intervals (more attribution.n_examples) or more seeds "
            "would decide."
        )
        short = "Cannot decide whether compression concentrates or spreads the bias over heads."
    elif len(teacher):
        answer = (
            f"Only the teacher was attributed (Gini {ci(teacher.iloc[0])}): attribute a student "
            "(attribution.variants) to compare."
        )
        short = "Cannot decide: only the teacher was attributed."
    else:
        answer = "The data cannot decide: no model has head effects with a reference to compare with."
    answer += power_clause(rows[rows["metric"] == "gini_diff"], cfg, "a Gini difference from the reference")
    fitness = f.get("fitness")
    shown = set(rows["variant"].astype(str))
    fit = set() if fitness is None else {str(v) for v, ok in zip(fitness["variant"], fitness["fit"]) if ok}
    if shown and not shown & fit:
        answer += (
            " Fitness is unknown (the findings have no fitness table), so"
            if fitness is None
            else " None of these models is fit to be read (see the first section), so"
        ) + " these head effects explain the bias score of classifiers not known to do the task."
    if len(teacher) and (claims or undecided):
        t = teacher.iloc[0]
        key = (t["variant"], t["seed"])
        if key in null.index:
            level = null.loc[key]
            beyond = "more concentrated than" if bool(t.get("beyond_noise", False)) else "not distinguishable from"
            answer += (
                f" For scale: the teacher's Gini is {ci(t)}, {beyond} the {fmt(level['value'])} "
                f"[{fmt(level['ci_low'])}, {fmt(level['ci_high'])}] that the same noise gives with no head mattering."
            )
        else:
            answer += f" For scale: the teacher's Gini is {ci(t)} (0 = all heads equal; no no-effect level stored)."
    resampled = rows.get("resampled", pd.Series("parametric", index=rows.index)).fillna("parametric")
    notes = []
    if (resampled == "examples").any():
        notes.append(
            "Gini intervals resample the examples (paired across models: the same resamples); the no-effect level is "
            "the Gini of the same per-example noise with every head's mean set to 0."
        )
    if (resampled == "parametric").any():
        notes.append(
            "Some intervals are a parametric bootstrap from the stored per-head intervals (no per-example effects "
            "stored for that method): noise enters twice there, which pushes Gini up and agreement down."
        )
    if not rows["has_intervals"].astype(bool).all():
        notes.append("Some head tables have no intervals (attribution.n_boot = 0): their Gini has no uncertainty.")
    table = rows[["variant", "seed", "metric", "value", "ci_low", "ci_high"] + [c for c in ("p", "q", "reference")
                                                                                if c in rows]]  # fmt: skip
    return Section("rq3", title, answer, numbers[:12], concentration_figure(conc), table.reset_index(drop=True), notes,
                   short)  # fmt: skip


# ---- RQ4 ----------------------------------------------------------------------------------------------------------
def _stable_word(row) -> str:
    if isinstance(row.get("verdict"), str) and row["verdict"]:
        return row["verdict"]
    if bool(row.get("agree", False)):
        return "stable"
    if np.isfinite(row["ci_high"]) and row["ci_high"] < 0.5:
        return "not reproduced"
    return "undecided"


def rq4_section(f: Findings) -> Section:
    title = "RQ4 Is the location stable across seeds and from teacher to student?"
    missing = unavailable(f, "rq4", title, ("stability",), "whether the location is stable")
    if missing:
        seeds = f.run.manifest.get("seeds", [])
        if len(seeds) < 2 and f.get("bias_units") is not None:
            missing.answer = (
                f"The data cannot decide: the run has {len(seeds)} seed(s) and no distilled student was "
                "attributed; run.seeds = [0, 1, 2] (and a student in attribution.variants) would."
            )
        return missing
    cfg = f.config
    stab = f.get("stability")
    rows_all = stab
    seed_rows = stab[stab["metric"] == "seed_spearman"]
    align_rows = stab[stab["metric"] == "align_spearman"]
    numbers, parts = [], []
    for label, rows in (("across seeds", seed_rows), ("teacher to student", align_rows)):
        if rows.empty:
            continue
        words, counts = {}, {}
        for _, r in rows.iterrows():
            word, key = _stable_word(r), f"{r['variant']} ({r['method']})"
            words.setdefault(word, []).append(key)
            counts.setdefault(key, {}).setdefault(word, 0)
            counts[key][word] += 1
            pair = (
                f"seeds {r['subset']}"
                if label == "across seeds"
                else f"s{r['seed']} vs {r['subset']} s{int(r['reference_seed'])}"
            )
            ceiling = rows_all[(rows_all["metric"] == "align_ceiling") & (rows_all["variant"] == r["variant"])
                               & (rows_all["seed"] == r["seed"]) & (rows_all["method"] == r["method"])]  # fmt: skip
            against = f", noise ceiling {ci(ceiling.iloc[0])}" if len(ceiling) else ""
            numbers.append(f"{label}: {r['variant']} {pair} ({r['method']}): Spearman {ci(r)}{against}; {word}")
        if all(sum(c.values()) == 1 for c in counts.values()):  # one pair per model: name them by verdict
            summary = "; ".join(f"{w} for {', '.join(dict.fromkeys(v))}" for w, v in words.items())
        else:  # several seed pairs (or seeds) per model: count each verdict, so no model reads two ways unexplained
            unit = "seed pairs" if label == "across seeds" else "seeds"
            summary = "; ".join(
                f"{key} {', '.join(f'{w} in {n}' for w, n in c.items())} of {sum(c.values())} {unit}"
                for key, c in counts.items()
            )
        parts.append(f"{label}: {summary}")
    answer = "Location " + ". Location ".join(parts) + "."
    short = answer
    answer += power_clause(
        stab[stab["metric"] == "align_vs_ceiling"], cfg, "a teacher-student Spearman below its noise ceiling"
    )
    if "undecided" in answer:
        answer += (
            " Undecided means the interval of the rank correlation covers both weak and strong agreement: "
            f"more examples per head (attribution.n_examples) or seeds (have {len(f.run.manifest.get('seeds', []))}"
            f", {cfg.min_seeds} allow a test over seeds) would decide."
        )
    notes = [
        (
            "Teacher to student, resampled over examples: reproduced = Spearman's interval above 0 and not detectably "
            "below the noise ceiling (the split-half reliability of the two rankings, sqrt(r_teacher r_student): what "
            "two measurements of the same ranking reach at this noise); not reproduced = detectably below it. "
            f"Otherwise (parametric rows): stable = Spearman's interval above 0 and top-k overlap >= "
            f"{cfg.agree_overlap:.0%}; not reproduced = the interval's upper end below 0.5. Teacher-student pairs map "
            "student layer i to the teacher layer it was initialised from (the saved layer_map, default 2i)."
        )
    ]
    if align_rows.empty:
        notes.append("No distilled student with a mapped teacher was attributed: add one to attribution.variants.")
    table = stab[[c for c in ("variant", "seed", "method", "metric", "subset", "value", "ci_low", "ci_high", "p",
                              "agree", "verdict") if c in stab]]  # fmt: skip
    return Section("rq4", title, answer, numbers[:12], stability_figure(stab), table.reset_index(drop=True), notes,
                   short)  # fmt: skip


# ---- RQ5 ----------------------------------------------------------------------------------------------------------
def _erasure_verdict(bias, alpha: float) -> str:
    """What erasure did to the counterfactual gap (``bias``: its erasure row)."""
    change = f"{fmt(bias['before'])} -> {fmt(bias['after'])}, Δ {ci(bias)}, q = {fmt(bias['q'], 2)}"
    if bias["before_low"] <= 0 <= bias["before_high"]:
        return f"there was no detectable counterfactual gap to remove ({change})"
    if bias["q"] >= alpha:
        return f"does not change the counterfactual gap detectably ({change})"
    if bias["after_low"] <= 0 <= bias["after_high"]:
        return f"removes the detectable counterfactual gap ({change})"
    word = "reduces" if abs(bias["after"]) < abs(bias["before"]) else "increases"
    return f"{word} the counterfactual gap, which remains ({change})"


def _erasure_sentence(rows: pd.DataFrame, alpha: float, unfit: set[str]) -> tuple[str, list[str], str]:
    """(the erasure sentence, its numbers, the verdict alone for the one-sentence answer)."""
    numbers, sentences, incomplete, brief = [], [], [], []
    for (variant, seed, layer), group in rows.groupby(["variant", "seed", "layer"]):
        for _, r in group.iterrows():
            numbers.append(
                f"{variant} s{seed}, layer {layer}: {r['metric']} after - before = {ci(r)} ({pq(r)}); "
                f"{fmt(r['before'])} -> {fmt(r['after'])}"
            )
    first = rows[rows["seed"] == rows.groupby("variant")["seed"].transform("min")]
    for (variant, layer), group in sorted(
        first.groupby(["variant", "layer"]), key=lambda kv: variant_sort_key(kv[0][0])
    ):
        by = group.set_index("metric")
        seed = int(group["seed"].iloc[0])
        text = f"erasing gender at layer {layer} of {variant} (seed {seed})"
        if "erasure_probe_accuracy" in by.index:
            probe = by.loc["erasure_probe_accuracy"]
            if not probe["after_low"] <= probe["chance"] <= probe["after_high"]:
                below = probe["after_high"] < probe["chance"]  # over-corrected: the probe learns the flipped rule
                sentences.append(
                    f"{text} is incomplete: after it the gender probe reads {fmt(probe['after'])} "
                    f"[{fmt(probe['after_low'])}, {fmt(probe['after_high'])}], "
                    + (
                        f"below chance {fmt(probe['chance'], 2)} (gender is still linearly readable, with the sign "
                        "flipped: the in-sample eraser over-corrects the held-out folds)"
                        if below
                        else f"above chance {fmt(probe['chance'], 2)}"
                    )
                    + ", so the amnesic question (does removing gender remove the bias?) is not tested there; an "
                    "eraser that brings a held-out probe to chance (fitted on more data, probes.fit_on) would decide"
                )
                incomplete.append(variant)
                continue
            text += " brings the gender probe to chance"
        if "erasure_cf_prob_gap" in by.index:
            text += " and " + _erasure_verdict(by.loc["erasure_cf_prob_gap"], alpha)
            if variant in unfit:
                text += " (a model not fit to be read: not interpretable)"
        sentences.append(text)
        brief.append(text.replace(f" (seed {seed})", "").split(" (")[0])  # the verdict without its numbers
    if incomplete:
        names = ", ".join(dict.fromkeys(incomplete))
        brief.insert(0, f"erasing it is incomplete in {names}, so the amnesic question is not tested there")
    return "; ".join(sentences), numbers, "; ".join(brief)


def rq5_section(f: Findings) -> Section:
    title = "RQ5 Is gender encoded, and does erasing it remove the bias?"
    missing = unavailable(f, "rq5", title, ("encoding",), "whether gender is encoded")
    if missing:
        return missing
    cfg = f.config
    enc = f.get("encoding")
    probe = enc[enc["metric"] == "probe_accuracy"]
    select = enc[enc["metric"] == "selectivity"]
    numbers, parts = [], []
    encoded, beyond = [], []
    for variant, group in _by_variant(probe):
        best = group.sort_values("value", ascending=False).iloc[0]
        numbers.append(
            f"{variant} s{best['seed']}: peak gender probe accuracy {ci(best)} at depth "
            f"{fmt(best['depth'], 2)} (chance {fmt(best['chance'], 2)}, q = {fmt(best['q'], 2)}"
            + (f"; above the embedding layer: q = {fmt(best['q_embed'], 2)})" if "q_embed" in best else ")")
        )
        if group["encoded"].astype(bool).any():
            encoded.append(variant)
        if "beyond_embeddings" in group and group["beyond_embeddings"].astype(bool).any():
            beyond.append(variant)
    if len(probe):
        not_enc = sorted(set(probe["variant"]) - set(encoded), key=variant_sort_key)
        parts.append(
            f"gender is linearly encoded in {', '.join(encoded)}" if encoded else "no probe beats chance at q < alpha"
        )
        if not_enc:
            parts.append(f"not detectably in {', '.join(not_enc)}")
        if encoded:
            parts.append(
                f"more than in the embeddings (the gendered words themselves) in {', '.join(beyond)}"
                if beyond
                else "but no layer reads gender better than the embedding layer does (the gendered words themselves)"
            )
    if len(select):
        selective = sorted(set(select.loc[select["encoded"].astype(bool), "variant"]), key=variant_sort_key)
        parts.append(
            f"selectively (above the control task) in {', '.join(selective)}"
            if selective
            else "selectivity over the control task is not distinguishable from 0 (the probe may memorise)"
        )
    erase, erased = enc[enc["metric"].str.startswith("erasure_")], ""
    if len(erase):
        fitness = f.get("fitness")
        unfit = set() if fitness is None else {v for v, fit in zip(fitness["variant"], fitness["fit"]) if not fit}
        sentence, lines, brief = _erasure_sentence(erase, cfg.alpha, unfit)
        numbers += lines
        if sentence:
            parts.append(sentence)
            erased = f"; {brief}"
    answer = (
        (parts[0][0].upper() + parts[0][1:] + ("; " + "; ".join(parts[1:]) if parts[1:] else "") + ".")
        if parts
        else "The data cannot decide: the probe tables hold no gender rows."
    )
    short = (parts[0][0].upper() + parts[0][1:] + (erased if len(parts) > 1 else "") + ".") if parts else answer
    answer += power_clause(probe, cfg, "a gender probe accuracy above chance")
    notes = [m for m in f.missing.get("encoding", [])]
    notes.append(
        "Probe p-values are one-sided against the stored chance rate, from the stored bootstrap intervals "
        "(normal approximation); erasure compares the stored before/after intervals (conservative)."
    )
    table = enc[["variant", "seed", "layer", "metric", "subset", "value", "ci_low", "ci_high", "p", "q"]]
    return Section("rq5", title, answer, numbers[:14], encoding_figure(enc), table.reset_index(drop=True), notes,
                   short)  # fmt: skip
