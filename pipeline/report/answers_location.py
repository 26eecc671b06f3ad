"""Report section RQ2 (where does the bias live?), from the findings' ``bias_units`` table (docs/FINDINGS.md,
"Bias-carrying units").

The answer says where a unit *carries* bias (causal, significant over the whole run, material, adding bias to a
detectable total), names the suppressors apart (units whose removal makes the model more biased), says "no detectable
bias to locate" for every model whose total is not detectable, and prints shares only where single-unit effects add
up to the total (otherwise the units interact, and a share is not a part of a whole)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.findings.bias_units import additivity
from pipeline.findings.compute import Findings
from pipeline.report.charts import units_figure
from pipeline.report.claims import Section, ci, fmt, power_clause, pq, unavailable
from pipeline.stats import minimum_detectable
from pipeline.variants import variant_sort_key

__all__ = ["ADDITIVE", "rq2_section"]

ADDITIVE = (0.5, 1.5)  # sum of single-head effects / total within this range: shares read as parts of the total


def _name(row) -> str:
    return (
        f"L{int(row['layer'])}.H{int(row['head'])}"
        if row["unit"] == "head"
        else f"L{row['layer']} neuron {row['head']}"
    )


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


def _models(units: pd.DataFrame) -> pd.DataFrame:
    """One row per (variant, seed) of the causal head rows: its total (ablation first), detectable or not."""
    causal = units[units["causal"].astype(bool) & (units["unit"] == "head")]
    if causal.empty:
        return causal
    order = {"ablation": 0, "patching": 1}
    first = causal.assign(o=causal["method"].map(order).fillna(2)).sort_values("o")
    models = first.drop_duplicates(["variant", "seed"])
    keys = sorted(zip(models["variant"], models["seed"]), key=lambda k: (variant_sort_key(k[0]), k[1]))
    return models.set_index(["variant", "seed"]).loc[keys].reset_index()


def _unit_line(row, additive: dict, how: str) -> str:
    ratio = additive.get((row["variant"], row["seed"], row["method"]), np.nan)
    part = (
        f"{fmt(row['share'], 2)} of the total"
        if ADDITIVE[0] <= ratio <= ADDITIVE[1]
        else f"|effect| / |total| = {fmt(row['share'], 2)} (single effects sum to {fmt(ratio, 2)} x the total: "
        "units interact, not a share)"
    )
    role = "adds bias" if row["carries"] else "suppresses bias"
    return (
        f"{row['variant']} s{row['seed']}: {_name(row)} (depth {fmt(row['depth'], 2)}) {role} by {row['method']}: "
        f"effect {ci(row)}, {pq(row)}, {part}; {how}"
    )


def rq2_section(f: Findings) -> Section:
    title = "RQ2 Where does the bias live?"
    missing = unavailable(f, "rq2", title, ("bias_units",), "where the bias lives")
    if missing:
        return missing
    cfg = f.config
    units = f.get("bias_units")
    if "direction" not in units:
        return Section(
            "rq2",
            title,
            "The findings predate direction-aware units: run `bias-atlas run CONFIG` again "
            "(the findings stage recomputes them from the stored tables).",
            [],
            None,
            None,
            [],
        )
    models = _models(units)
    causal = units[units["causal"].astype(bool)]
    if models.empty:
        answer = (
            "The data cannot decide: no causal method ran (only attributions are present); switch on "
            "[attribution] ablation or patching and run `bias-atlas run CONFIG` again."
        )
        return Section("rq2", title, answer, [], units_figure(units), None, [])
    detectable = models[models["total_detectable"].astype(bool)]
    none_here = models[~models["total_detectable"].astype(bool)]
    carriers, suppressors = causal[causal["carries"].astype(bool)], causal[causal["suppresses"].astype(bool)]
    additive = {(a.variant, a.seed, a.method): a.sum_over_total for a in additivity(units).itertuples()}
    n_tests = int(causal["p"].notna().sum())
    sentences, short = [], "No model has a detectable bias to locate, so no unit is flagged."
    if len(detectable):
        short = f"No unit carries the detectable bias of {', '.join(sorted(set(detectable['variant'])))}."
    if len(none_here):
        sentences.append(
            "No detectable bias to locate in "
            + ", ".join(
                f"{r['variant']} (seed {r['seed']}: bias {fmt(r['total'])} [{fmt(r['total_low'])}, "
                f"{fmt(r['total_high'])}], MDE "
                f"{fmt(minimum_detectable(r['total_low'], r['total_high'], alpha=cfg.alpha), 2)})"
                for _, r in none_here.iterrows()
            )
            + ": its interval covers 0, so no unit is flagged there; more examples (attribution.n_examples) would "
            "decide."
        )
    if len(detectable) and carriers.empty:
        sentences.append(
            f"In the {len(detectable)} model(s) with a detectable bias, no unit carries it: no head adds bias at "
            f"q < {cfg.alpha} (over all {n_tests} causal tests of the run) with at least {cfg.min_share:.0%} of the "
            "total."
        )
    elif len(carriers):
        per_model = carriers.drop_duplicates(["variant", "seed", "unit", "layer", "head"]).groupby(["variant", "seed"])
        top = carriers.sort_values("p").iloc[0]
        short = (f"Bias-carrying units are found in {per_model.ngroups} of {len(models)} models; the clearest is "
                 f"{_name(top)} of {top['variant']}.")  # fmt: skip
        sentences.append(
            f"Bias-carrying units (removing them moves the bias towards 0) are found in {per_model.ngroups} of "
            f"{len(models)} models; the clearest is {_name(top)} of {top['variant']} (seed {top['seed']}, depth "
            f"{fmt(top['depth'], 2)}, {top['method']}: effect {ci(top)} on a total of {fmt(top['total'])}, {pq(top)}). "
            f"False flags are controlled at q < {cfg.alpha} over all {n_tests} causal tests of the run."
        )
    heads_tested = causal[(causal["unit"] == "head") & causal["p"].notna()]
    power = power_clause(heads_tested, cfg, "a single head's effect").strip()
    if power:
        sentences.append(power)
    if len(suppressors):
        names = ", ".join(sorted({f"{_name(r)} of {r['variant']}" for _, r in suppressors.iterrows()}))
        sentences.append(f"Suppressors (removing them makes the model more biased; keep them when pruning): {names}.")
    numbers = []
    for _, row in pd.concat([carriers, suppressors]).sort_values("p").head(12).iterrows():
        numbers.append(_unit_line(row, additive, _agreement(f, row["variant"], row["seed"])[1]))
    notes = [
        f"{r['variant']} s{r['seed']} ({r['method']}): single-head effects sum to {fmt(r['sum_over_total'], 2)} x the "
        "total; shares are printed only within "
        f"{ADDITIVE[0]}-{ADDITIVE[1]}x."
        for r in additivity(units).to_dict("records")
        if np.isfinite(r["sum_over_total"]) and not ADDITIVE[0] <= r["sum_over_total"] <= ADDITIVE[1]
    ]
    fitness = f.get("fitness")
    if fitness is not None:
        unfit = sorted(
            {v for v, fit in zip(fitness["variant"], fitness["fit"]) if not fit} & set(causal["variant"]),
            key=variant_sort_key,
        )
        if unfit:
            notes.append(
                f"{', '.join(unfit)} are not fit to be read: their attributions explain the bias score of a "
                "classifier that does not beat the majority class (see the first section)."
            )
    heads = causal[causal["unit"] == "head"]
    flagged = heads[heads["carries"].astype(bool) | heads["suppresses"].astype(bool)]
    table = pd.concat([flagged, heads.sort_values("p").groupby(["variant", "seed", "method"]).head(3)])
    table = table.drop_duplicates(["variant", "seed", "method", "layer", "head"])[
        [
            "variant",
            "seed",
            "method",
            "layer",
            "head",
            "depth",
            "value",
            "ci_low",
            "ci_high",
            "total",
            "direction",
            "share",
            "p",
            "q",
            "carries",
            "suppresses",
        ]
    ]
    answer = " ".join(sentences) or "No causal unit rows."
    return Section("rq2", title, answer, numbers, units_figure(units), table.reset_index(drop=True), notes, short)
