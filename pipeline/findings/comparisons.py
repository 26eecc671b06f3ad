"""Findings about whole variants (2): how each variant's bias differs from its reference (fitness:
:mod:`pipeline.findings.fitness`).

Comparisons (RQ1). Every variant is evaluated on the same test examples, so the change of a metric between a
variant and its reference is paired: :func:`pipeline.stats.paired_bootstrap` over the examples of the
``predictions`` table for accuracy, the accuracy gap, GAP_RMS and the per-class TPR gaps (De-Arteaga et al. 2019).
The counterfactual metrics (:data:`CF_METRICS`: the signed gap, the per-example |gap|, the skew-oriented gap, the flip
rate and its excess over the neutral-edit control) are paired too, over the same texts and their twins, from the
``counterfactual_examples`` table, on all swap pairs (subset ``all``) and on the held-out ones (``heldout``); runs
made before that table existed fall back to their intervals. A change of |gap| is tested as the change of the
per-example |gap| (``cf_prob_abs_change``), never read off a test of the signed gap. Metrics stored
only as a value with an interval (SEAT, CrowS-Pairs, StereoSet, WinoBias, Winogender) are compared through their
intervals: ``delta = v - r`` with ``se = sqrt(se_v^2 + se_r^2)``
(``se`` = interval width / 3.92) and a normal p-value; ignoring the positive correlation of two models scored on the
same items makes this interval wider, i.e. conservative. References: the fine-tuned teacher (on the same training
set) for task-level metrics, the pretrained ``teacher`` for intrinsic ones. Seeds: seed s of a variant is paired
with seed s of its reference (else the reference's first seed); the ``pooled`` row averages the per-seed differences
draw by draw (the same resamples of the same examples: a statement about these trained models), reports their spread
``sd`` and, with ``min_seeds`` or more seeds, the two-stage seed x example bootstrap of :mod:`pipeline.hierarchical`
(``p_seeds``, ``ci_low_seeds``, ``ci_high_seeds``; seeds as the units: a statement about the method); rows compared
through intervals have no draws and get a t-test over seeds instead. q-values: Benjamini-Hochberg
within each metric, over all its variants and subsets, per level (``seed`` rows, ``pooled`` rows).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats as sstats

from pipeline.data.task import FEMALE, MALE
from pipeline.findings.fitness import empty_table, head_trained, prediction_arrays
from pipeline.hierarchical import hierarchical_delta
from pipeline.metrics.registry import intrinsic_prefixes
from pipeline.schema import tidy
from pipeline.stats import bh_qvalues, paired_bootstrap, seeds_ttest, summarise_draws
from pipeline.variants import Variant

__all__ = [
    "CF_METRICS",
    "bias_rows",
    "compared_metrics",
    "comparisons_table",
    "extrinsic_stats",
    "finish_comparisons",
    "interval_rows",
    "paired_cf_rows",
    "paired_rows",
    "reference_of",
]

# Which metrics are intrinsic comes from the bias-metric registry (pipeline.metrics.registry.intrinsic_prefixes): a new
# intrinsic family is compared with the pretrained teacher because its record says so, not because a list remembers.
_NOT_COMPARED = (
    "accuracy",
    "macro_f1",
    "gap_rms",
    "accuracy_gap",
    "gap_rms_excluded_classes",
    "cf_unchanged_texts",
    "cf_control_flip_rate",
    "gap_rms_nogap",
    "gap_rms_corrected",
    "gap_rms_n_needed",
)  # the first four come paired from the predictions; the rest are no bias metric (or the control of one)
_Z = sstats.norm.ppf(0.975)
# paired from ``counterfactual_examples``, on all swap pairs (subset "all") and on the held-out ones ("heldout"):
# the signed gap, the per-example |gap| (Garg et al.'s CTF), the skew-oriented gap (the attribution target), the flip
# rate and its excess over the gender-neutral control edit
CF_METRICS = ("cf_prob_gap", "cf_prob_abs_change", "cf_skew_gap", "cf_flip_rate", "cf_flip_excess")


def reference_of(variant: str, family: str, present: set[str]) -> str | None:
    """The reference of ``variant`` for a metric ``family`` (``intrinsic``: the pretrained teacher; else the
    fine-tuned teacher on the same training set, or on the original one), or None (itself, or not in the run)."""
    try:
        parsed = Variant.parse(variant)
    except ValueError:
        return None
    if family == "intrinsic":
        ref = "teacher"
    else:
        same_set = Variant("teacher", "ft", parsed.training_set).name
        ref = same_set if same_set in present else "teacher-ft"
    return ref if ref in present and ref != variant else None


# ---- per-example statistics ---------------------------------------------------------------------------------------
def extrinsic_stats(labels: np.ndarray, genders: np.ndarray, preds: np.ndarray, n_classes: int) -> np.ndarray:
    """``[accuracy, accuracy_gap, gap_rms, tpr_gap_0 .. tpr_gap_{C-1}]`` of one classifier (docs/DESIGN.md section 6):
    ``accuracy_gap`` = accuracy(female) - accuracy(male), ``Gap_y = TPR(y, female) - TPR(y, male)`` (NaN where a
    gender has no example of class y), ``GAP_RMS = sqrt(mean_y Gap_y^2)`` over the defined gaps."""
    correct = labels == preds
    out = [correct.mean() if len(correct) else np.nan]
    acc = [correct[genders == g].mean() if (genders == g).any() else np.nan for g in (FEMALE, MALE)]
    out.append(acc[0] - acc[1])
    tpr = []
    for g in (FEMALE, MALE):
        sel = genders == g
        pos = np.bincount(labels[sel], minlength=n_classes).astype(float)  # (C,)
        hit = np.bincount(labels[sel & correct], minlength=n_classes).astype(float)  # (C,)
        with np.errstate(invalid="ignore", divide="ignore"):
            tpr.append(np.where(pos > 0, hit / pos, np.nan))
    gaps = tpr[0] - tpr[1]  # (C,)
    defined = gaps[np.isfinite(gaps)]
    out.append(np.sqrt(np.mean(defined**2)) if len(defined) else np.nan)
    return np.concatenate([np.asarray(out, dtype=float), gaps])


# ---- comparisons --------------------------------------------------------------------------------------------------
def _seed_pairs(seeds: list[int], ref_seeds: list[int]) -> list[tuple[int, int]]:
    return [(s, s if s in ref_seeds else min(ref_seeds)) for s in seeds]


def _paired_rows(preds: pd.DataFrame, labels_names: list[str], variant: str, ref: str, cfg) -> list[dict]:
    """Per-seed and pooled rows of the paired metrics of ``variant`` against ``ref``."""
    seeds = sorted(int(s) for s in set(preds.loc[preds["variant"] == variant, "seed"]))
    ref_seeds = sorted(int(s) for s in set(preds.loc[preds["variant"] == ref, "seed"]))
    n_classes = max(len(labels_names), int(preds["label"].max()) + 1, int(preds["pred"].max()) + 1)
    keys = [("model", "accuracy", ""), ("model", "accuracy_gap", ""), ("model", "gap_rms", "")] + [
        ("class", "tpr_gap", labels_names[c] if c < len(labels_names) else str(c)) for c in range(n_classes)
    ]
    per_seed = []
    for seed, ref_seed in _seed_pairs(seeds, ref_seeds):
        ex_v, *arrays_v = prediction_arrays(preds, variant, seed)
        ex_r, *arrays_r = prediction_arrays(preds, ref, ref_seed)
        if not np.array_equal(ex_v, ex_r):
            raise ValueError(
                f"predictions of {variant!r} seed {seed} and {ref!r} seed {ref_seed} cover different "
                "test examples; the comparison must be paired. Re-run the task_metrics stage."
            )
        result = paired_bootstrap(lambda y, g, p: extrinsic_stats(y, g, p, n_classes), arrays_v, arrays_r,
                                  n_boot=cfg.n_boot, seed=cfg.seed)  # fmt: skip
        values = extrinsic_stats(*arrays_v, n_classes), extrinsic_stats(*arrays_r, n_classes)
        per_seed.append((seed, ref_seed, result, values))
    with warnings.catch_warnings():  # a class without both genders has NaN gaps in every seed
        warnings.simplefilter("ignore", RuntimeWarning)
        return _seed_and_pooled_rows(variant, ref, keys, per_seed, cfg)


def _cf_values(cf: pd.DataFrame, variant: str, seed: int) -> dict[tuple[str, str], pd.Series]:
    """(metric, swap subset) -> per-example values (indexed by example) of one variant and seed; the per-example
    |gap| (``cf_prob_abs_change``, Garg et al.'s CTF gap) is the absolute value of each ``cf_prob_gap`` row."""
    rows = cf[(cf["variant"] == variant) & (cf["seed"] == seed)]
    subset = rows["subset"].fillna("").replace("", "all") if "subset" in rows else pd.Series("all", index=rows.index)
    out = {}
    for (metric, part), group in rows.groupby([rows["metric"], subset], sort=False):
        values = group.set_index("example")["value"].astype(np.float64).sort_index()
        if values.index.has_duplicates:
            raise ValueError(f"counterfactual_examples of {variant!r} seed {seed} is damaged; re-run bias_metrics.")
        out[(str(metric), str(part))] = values
        if metric == "cf_prob_gap":
            out[("cf_prob_abs_change", str(part))] = values.abs()
    return out


def paired_cf_rows(cf: pd.DataFrame, variant: str, ref: str, cfg) -> list[dict]:
    """Per-seed and pooled rows of the counterfactual metrics of ``variant`` against ``ref``: a paired bootstrap of
    the mean of each per-example value (:data:`CF_METRICS`, on all swap pairs and on the held-out ones) over the same
    texts, from the ``counterfactual_examples`` table."""
    seeds = sorted(int(s) for s in set(cf.loc[cf["variant"] == variant, "seed"]))
    ref_seeds = sorted(int(s) for s in set(cf.loc[cf["variant"] == ref, "seed"]))
    pairs = [(s, r, _cf_values(cf, variant, s), _cf_values(cf, ref, r)) for s, r in _seed_pairs(seeds, ref_seeds)]
    rows = []
    for subset in ("all", "heldout"):
        for metric in CF_METRICS:
            if not all((metric, subset) in v and (metric, subset) in r for _, _, v, r in pairs):
                continue
            per_seed = []
            for seed, ref_seed, mine, theirs in pairs:
                v, r = mine[(metric, subset)], theirs[(metric, subset)]
                if not v.index.equals(r.index) or not len(v):
                    raise ValueError(
                        f"counterfactual examples ({metric}, {subset}) of {variant!r} seed {seed} and {ref!r} seed "
                        f"{ref_seed} are not the same texts; the comparison must be paired. Re-run bias_metrics."
                    )
                result = paired_bootstrap(np.mean, (v.to_numpy(),), (r.to_numpy(),), n_boot=cfg.n_boot, seed=cfg.seed)
                per_seed.append((seed, ref_seed, result, (np.array([v.mean()]), np.array([r.mean()]))))
            rows += _seed_and_pooled_rows(variant, ref, [("model", metric, subset)], per_seed, cfg)
    return rows


def _seed_and_pooled_rows(variant: str, ref: str, keys: list[tuple[str, str, str]], per_seed: list,
                          cfg) -> list[dict]:  # fmt: skip
    """Per-seed rows and the pooled row; with ``cfg.min_seeds`` or more seeds the pooled row also carries the
    two-stage seed x example bootstrap (:mod:`pipeline.hierarchical`): ``p_seeds``, ``ci_low_seeds``,
    ``ci_high_seeds``, the test of a method effect with seeds as units."""
    rows = []
    for seed, ref_seed, r, (v, rv) in per_seed:
        for j, (unit, metric, subset) in enumerate(keys):
            rows.append(_row(variant, ref, seed, ref_seed, "seed", unit, metric, subset, r.delta[j], r.ci_low[j],
                             r.ci_high[j], r.p[j], r.n, 1, v[j], rv[j], "paired_bootstrap"))  # fmt: skip
    per_seed_draws = np.stack([r.draws for _, _, r, _ in per_seed])  # (n_seeds, n_boot, n_stats)
    draws = np.nanmean(per_seed_draws, axis=0)  # (n_boot, n_stats)
    deltas = np.stack([r.delta for _, _, r, _ in per_seed])  # (n_seeds, n_stats)
    pooled = summarise_draws(np.nanmean(deltas, axis=0), draws, per_seed[0][2].n)
    hier = None
    if len(per_seed) >= cfg.min_seeds:
        hier = hierarchical_delta(deltas, per_seed_draws, per_seed[0][2].n, n_boot=cfg.n_boot, seed=cfg.seed)
    for j, (unit, metric, subset) in enumerate(keys):
        row = _row(variant, ref, -1, -1, "pooled", unit, metric, subset, pooled.delta[j], pooled.ci_low[j],
                   pooled.ci_high[j], pooled.p[j], pooled.n, len(per_seed),
                   np.nanmean([v[j] for *_, (v, _) in per_seed]), np.nanmean([rv[j] for *_, (_, rv) in per_seed]),
                   "paired_bootstrap")  # fmt: skip
        seeds = {"p_seeds": np.nan, "ci_low_seeds": np.nan, "ci_high_seeds": np.nan}
        if hier is not None:
            seeds = {"p_seeds": hier.p[j], "ci_low_seeds": hier.ci_low[j], "ci_high_seeds": hier.ci_high[j]}
        rows.append({**row, "sd": _sd(deltas[:, j]), **seeds})
    return rows


def _sd(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(np.std(finite, ddof=1)) if len(finite) >= 2 else float("nan")


def _row(variant, ref, seed, ref_seed, level, unit, metric, subset, delta, low, high, p, n, n_seeds, value_v,
         value_r, method) -> dict:  # fmt: skip
    family = (
        "intrinsic" if metric.startswith(intrinsic_prefixes()) else ("task" if metric == "accuracy" else "extrinsic")
    )
    return {
        "variant": variant,
        "seed": seed,
        "unit": unit,
        "metric": metric,
        "subset": subset,
        "value": float(delta),
        "delta": float(delta),
        "ci_low": float(low),
        "ci_high": float(high),
        "p": float(p),
        "n": int(n),
        "n_seeds": n_seeds,
        "reference": ref,
        "reference_seed": ref_seed,
        "level": level,
        "family": family,
        "method": method,
        "value_variant": float(value_v),
        "value_reference": float(value_r),
    }


def _interval_metrics(bias: pd.DataFrame) -> pd.DataFrame:
    rows = bias[(bias["unit"] == "model") & ~bias["metric"].isin(_NOT_COMPARED)
                & ~bias["metric"].str.endswith(("_p_value", "_excluded_classes"))
                & ~bias["subset"].fillna("").isin(("female", "male"))]  # fmt: skip
    rows = rows[np.isfinite(rows["value"])]
    pooling = rows["pooling"].fillna("").astype(str) if "pooling" in rows else ""
    subset = rows["subset"].fillna("").astype(str)
    return rows.assign(key=np.where(pooling != "", subset + "/" + pooling, subset))


def _interval_rows(bias: pd.DataFrame, variant: str, metric: str, key: str, ref: str) -> list[dict]:
    rows = _interval_metrics(bias)
    sel = rows[(rows["metric"] == metric) & (rows["key"] == key)]
    mine, theirs = sel[sel["variant"] == variant], sel[sel["variant"] == ref]
    if mine.empty or theirs.empty:
        return []
    ref_seeds = sorted(int(s) for s in theirs["seed"])
    out, deltas, ses = [], [], []
    for seed, ref_seed in _seed_pairs(sorted(int(s) for s in mine["seed"]), ref_seeds):
        v = mine[mine["seed"] == seed].iloc[0]
        r = theirs[theirs["seed"] == ref_seed].iloc[0]
        se = np.hypot((v["ci_high"] - v["ci_low"]) / (2 * _Z), (r["ci_high"] - r["ci_low"]) / (2 * _Z))
        delta = v["value"] - r["value"]
        p = 2 * sstats.norm.sf(abs(delta) / se) if se > 0 else float(delta == 0) if np.isfinite(se) else np.nan
        deltas.append(delta)
        ses.append(se)
        out.append(
            _row(
                variant,
                ref,
                seed,
                ref_seed,
                "seed",
                "model",
                metric,
                key,
                delta,
                delta - _Z * se,
                delta + _Z * se,
                p,
                min(v["n"], r["n"]),
                1,
                v["value"],
                r["value"],
                "intervals",
            )
        )
    delta, se = float(np.mean(deltas)), float(np.sqrt(np.sum(np.square(ses)))) / len(ses)
    p = 2 * sstats.norm.sf(abs(delta) / se) if se > 0 else float(delta == 0) if np.isfinite(se) else np.nan
    pooled = _row(variant, ref, -1, -1, "pooled", "model", metric, key, delta, delta - _Z * se, delta + _Z * se, p,
                  out[0]["n"], len(out), np.mean([o["value_variant"] for o in out]),
                  np.mean([o["value_reference"] for o in out]), "intervals")  # fmt: skip
    out.append({**pooled, "sd": _sd(np.asarray(deltas)), "p_seeds": seeds_ttest(deltas)})  # no draws: t-test
    return out


def comparisons_table(preds: pd.DataFrame | None, bias: pd.DataFrame | None, fitness: pd.DataFrame | None,
                      label_names: list[str], cfg, task: pd.DataFrame | None = None,
                      cf: pd.DataFrame | None = None) -> pd.DataFrame:  # fmt: skip
    """The ``comparisons`` table (module docstring): one row per (variant, seed or pooled, metric, subset) with
    ``value`` = ``delta`` = variant - reference, its interval, ``p``, ``q`` and, on pooled rows, ``sd``,
    ``p_seeds``, ``q_seeds``; ``interpretable`` is False for extrinsic rows of a model not fit to be read. Variants
    whose classifier head was never trained (``head_trained`` 0 in ``task``) get no task-level comparison. ``cf``:
    the ``counterfactual_examples`` table, for paired counterfactual comparisons."""
    rows: list[dict] = []
    trained = head_trained(task)
    untrained = {v for (v, _), t in trained.items() if not t}
    present_p = set(preds["variant"]) - untrained if preds is not None else set()
    for variant in sorted(present_p):
        ref = reference_of(variant, "task", present_p)
        if ref is not None:
            rows += _paired_rows(preds, label_names, variant, ref, cfg)
    if bias is not None:
        metrics = _interval_metrics(bias)
        present_b = set(metrics["variant"])
        for (metric, key), _ in metrics.groupby(["metric", "key"], sort=True):
            family = "intrinsic" if metric.startswith(intrinsic_prefixes()) else "extrinsic"
            for variant in sorted(present_b - (untrained if family != "intrinsic" else set())):
                ref = reference_of(variant, family, present_b)
                if ref is not None:
                    rows += _bias_rows(bias, cf, variant, metric, key, ref, cfg)
    return finish_comparisons(rows, fitness)


def _bias_rows(bias: pd.DataFrame, cf: pd.DataFrame | None, variant: str, metric: str, key: str, ref: str,
               cfg) -> list[dict]:  # fmt: skip
    """Rows of one bias metric: paired for the counterfactual ones when both models have per-example values (all
    of them at once, on the ``cf_prob_gap`` row of subset ``all``)."""
    paired = cf is not None and {variant, ref} <= set(cf["variant"])
    if metric not in CF_METRICS or key not in ("all", "heldout") or not paired:
        return _interval_rows(bias, variant, metric, key, ref)
    return paired_cf_rows(cf, variant, ref, cfg) if (metric, key) == ("cf_prob_gap", "all") else []


def finish_comparisons(rows: list[dict], fitness: pd.DataFrame | None) -> pd.DataFrame:
    """The tidy table of comparison ``rows`` (:func:`paired_rows`, :func:`interval_rows`): BH q-values within each
    metric and level, and ``interpretable`` (intrinsic, or both models fit to be read)."""
    if not rows:
        return empty_table()
    table = pd.DataFrame(rows)
    for column in ("sd", "p_seeds", "ci_low_seeds", "ci_high_seeds"):
        table[column] = table.get(column, np.nan)
    table["q"], table["q_seeds"] = np.nan, np.nan
    for _, group in table.groupby(["metric", "level"], sort=False):
        table.loc[group.index, "q"] = bh_qvalues(group["p"].to_numpy())
        table.loc[group.index, "q_seeds"] = bh_qvalues(group["p_seeds"].to_numpy())
    fit = _fit_map(fitness)
    table["interpretable"] = [family == "intrinsic" or (fit.get((v, s), True) and fit.get((r, rs), True))
                              for family, v, s, r, rs in zip(table["family"], table["variant"], table["seed"],
                                                             table["reference"], table["reference_seed"])]  # fmt: skip
    return tidy(table)


def _fit_map(fitness: pd.DataFrame | None) -> dict[tuple[str, int], bool]:
    """(variant, seed) -> fit; seed -1 (pooled rows): fit when every seed is."""
    if fitness is None or fitness.empty:
        return {}
    per = fitness.drop_duplicates(["variant", "seed"])
    out = {(str(v), int(s)): bool(f) for v, s, f in zip(per["variant"], per["seed"], per["fit"])}
    for variant, group in per.groupby("variant"):
        out[(str(variant), -1)] = bool(group["fit"].all())
    return out


# The pairing helpers under public names, for comparisons with other references (pipeline.findings.mitigation).
paired_rows = _paired_rows
interval_rows = _interval_rows
bias_rows = _bias_rows
compared_metrics = _interval_metrics
