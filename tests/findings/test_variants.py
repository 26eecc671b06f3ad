"""Findings about whole variants on hand-made predictions: fitness flags, paired comparisons against the right
reference, pooling over seeds, and GAP_RMS as the bias-metric stage defines it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from findings_fixtures import FAST, LABELS, N, planted_predictions, prediction_rows

from pipeline.findings.comparisons import comparisons_table, extrinsic_stats, reference_of
from pipeline.findings.compute import Findings
from pipeline.findings.fitness import fitness_table
from pipeline.metrics.extrinsic import gap_rms, tpr_gaps
from pipeline.report.answers import rq1_section
from pipeline.schema import tidy
from pipeline.stats import paired_bootstrap


@pytest.fixture(scope="module")
def predictions() -> pd.DataFrame:
    """teacher-ft (3 seeds, 80% right), int8-ft_before (its exact copy), distil-ft_before (3 seeds, wrong on most
    women of class 0) and a collapsed tiny-ft_before (always class 0)."""
    frame, labels, genders = planted_predictions(["teacher-ft", "int8-ft_before"], ["distil-ft_before"])
    collapsed = prediction_rows("tiny-ft_before", 0, labels, genders, np.zeros(N, dtype=int))
    return pd.concat([frame, collapsed], ignore_index=True)


def test_references():
    present = {"teacher", "teacher-ft", "teacher-ft@balanced", "distil-ft_after"}
    assert reference_of("distil-ft_after", "extrinsic", present) == "teacher-ft"
    assert reference_of("distil-ft_after@balanced", "task", present) == "teacher-ft@balanced"
    assert reference_of("distil-ft_after", "intrinsic", present) == "teacher"
    assert reference_of("teacher-ft", "task", present) is None and reference_of("bad name", "task", present) is None


def test_extrinsic_stats_match_the_bias_metric_definitions():
    rng = np.random.default_rng(1)
    labels, genders, preds = rng.integers(0, 3, 50), rng.integers(0, 2, 50), rng.integers(0, 3, 50)
    stats = extrinsic_stats(labels, genders, preds, 3)
    gaps = tpr_gaps(labels, preds, genders, 3)["gap"].to_numpy()
    assert stats[0] == pytest.approx((labels == preds).mean())
    assert stats[2] == pytest.approx(gap_rms(gaps)) and np.allclose(stats[3:], gaps, equal_nan=True)


def test_fitness_flags_collapse_and_keeps_good_models(predictions):
    fit = fitness_table(predictions, None, FAST).drop_duplicates(["variant", "seed"]).set_index(["variant", "seed"])
    assert fit.loc[("teacher-ft", 0), "fit"] and fit.loc[("teacher-ft", 0), "reason"] == ""
    assert not fit.loc[("tiny-ft_before", 0), "fit"]
    assert (
        "collapse" in fit.loc[("tiny-ft_before", 0), "reason"]
        and "baseline" in fit.loc[("tiny-ft_before", 0), "reason"]
    )


def test_identical_variants_differ_by_zero_with_p_one(predictions):
    table = comparisons_table(predictions, None, None, LABELS, FAST)
    rows = table[(table["variant"] == "int8-ft_before") & table["value"].notna()]
    assert len(rows) and (rows["value"] == 0).all() and (rows["p"] == 1).all() and (rows["q"] == 1).all()
    assert set(rows["reference"]) == {"teacher-ft"}


def test_a_seed_row_is_the_paired_bootstrap_and_pooled_rows_average_seeds(predictions):
    table = comparisons_table(predictions, None, None, LABELS, FAST)
    distil = table[(table["variant"] == "distil-ft_before") & (table["metric"] == "gap_rms")]
    seed1 = distil[distil["seed"] == 1].iloc[0]
    arrays = []
    for variant in ("distil-ft_before", "teacher-ft"):
        rows = predictions[(predictions["variant"] == variant) & (predictions["seed"] == 1)].sort_values("example")
        arrays.append(tuple(rows[c].to_numpy() for c in ("label", "gender", "pred")))
    direct = paired_bootstrap(lambda *a: extrinsic_stats(*a, 3), *arrays, n_boot=FAST.n_boot, seed=FAST.seed)
    assert seed1["value"] == pytest.approx(direct.delta[2]) and seed1["ci_low"] == pytest.approx(direct.ci_low[2])
    pooled = distil[distil["level"] == "pooled"].iloc[0]
    per_seed = distil[distil["level"] == "seed"]
    assert pooled["n_seeds"] == 3 and pooled["value"] == pytest.approx(per_seed["value"].mean())
    assert pooled["sd"] == pytest.approx(per_seed["value"].std(ddof=1)) and np.isfinite(pooled["p_seeds"])
    accuracy_gap = table[(table["variant"] == "distil-ft_before") & (table["metric"] == "accuracy_gap")
                         & (table["level"] == "pooled")].iloc[0]  # fmt: skip
    assert accuracy_gap["value"] < 0 and accuracy_gap["q"] < 0.05  # the planted harm to women of class 0


def test_unfit_models_make_extrinsic_rows_uninterpretable(predictions):
    fitness = fitness_table(predictions, None, FAST)
    table = comparisons_table(predictions, None, fitness, LABELS, FAST)
    tiny = table[table["variant"] == "tiny-ft_before"]
    assert len(tiny) and not tiny["interpretable"].any()
    assert table[table["variant"] == "distil-ft_before"]["interpretable"].all()


def test_interval_metrics_compare_through_their_intervals():
    rows = [
        {
            "variant": v,
            "seed": 0,
            "metric": "seat_effect_size",
            "subset": "weat6",
            "pooling": "cls",
            "value": val,
            "ci_low": val - 0.2,
            "ci_high": val + 0.2,
            "n": 16,
        }
        for v, val in (("teacher", 0.5), ("teacher-ft", 0.5), ("distil-ft_before", 1.5))
    ]
    table = comparisons_table(None, tidy(rows), None, LABELS, FAST)
    pooled = table[table["level"] == "pooled"].set_index("variant")
    assert set(pooled["reference"]) == {"teacher"} and set(pooled["method"]) == {"intervals"}
    assert pooled.loc["teacher-ft", "value"] == 0 and pooled.loc["teacher-ft", "p"] == 1
    assert pooled.loc["distil-ft_before", "value"] == pytest.approx(1.0) and pooled.loc["distil-ft_before", "p"] < 1e-6
    assert pooled.loc["distil-ft_before", "subset"] == "weat6/cls"


def _cf_rows(variant: str, seed: int, gaps: np.ndarray, flips: np.ndarray) -> pd.DataFrame:
    examples = np.arange(0, 2 * len(gaps), 2)  # the texts with a gendered word: not every test example
    return tidy([{"metric": m, "value": float(v), "example": int(e), "gender": int(e % 4 == 0), "label": 0}
                 for m, values in (("cf_prob_gap", gaps), ("cf_flip_rate", flips))
                 for e, v in zip(examples, values)], variant=variant, seed=seed)  # fmt: skip


def test_counterfactual_metrics_are_paired_over_the_same_texts():
    """The counterfactual rows come from a paired bootstrap over the per-example values (not from the intervals);
    an identical variant differs by 0 with p = 1."""
    rng = np.random.default_rng(3)
    n = 80
    gap_t, flip_t = rng.normal(0.02, 0.05, n), (rng.random(n) < 0.1).astype(float)
    gap_d = gap_t + rng.normal(0.03, 0.01, n)  # a shift small against the spread of the gaps, large when paired
    flip_d = np.maximum(flip_t, (rng.random(n) < 0.1).astype(float))
    cf = pd.concat([_cf_rows("teacher-ft", 0, gap_t, flip_t), _cf_rows("int8-ft_before", 0, gap_t, flip_t),
                    _cf_rows("distil-ft_before", 0, gap_d, flip_d)], ignore_index=True)  # fmt: skip
    bias = tidy(
        [
            {
                "variant": v,
                "seed": 0,
                "metric": m,
                "subset": "all",
                "value": 0.0,
                "ci_low": -1.0,
                "ci_high": 1.0,
                "n": n,
            }
            for v in ("teacher-ft", "int8-ft_before", "distil-ft_before")
            for m in ("cf_prob_gap", "cf_flip_rate")
        ]
    )  # fmt: skip  (wide intervals: must not be used)
    table = comparisons_table(None, bias, None, LABELS, FAST, cf=cf)
    seed_rows = table[table["level"] == "seed"].set_index(["variant", "metric"])
    assert set(table["method"]) == {"paired_bootstrap"} and len(seed_rows) == 6  # gap, |gap|, flip rate x 2
    for metric, mine, ref in (("cf_prob_gap", gap_d, gap_t), ("cf_prob_abs_change", np.abs(gap_d), np.abs(gap_t)),
                              ("cf_flip_rate", flip_d, flip_t)):  # fmt: skip
        direct = paired_bootstrap(np.mean, (mine,), (ref,), n_boot=FAST.n_boot, seed=FAST.seed)
        row = seed_rows.loc[("distil-ft_before", metric)]
        assert row["value"] == pytest.approx(direct.delta[0]) and row["p"] == pytest.approx(direct.p[0])
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((direct.ci_low[0], direct.ci_high[0]))
        same = seed_rows.loc[("int8-ft_before", metric)]
        assert same["value"] == 0 and same["p"] == 1
    assert seed_rows.loc[("distil-ft_before", "cf_prob_gap"), "p"] < 0.01
    assert seed_rows.loc[("distil-ft_before", "cf_prob_gap"), "n"] == n


def test_rq1_states_each_compressed_variants_task_level_change(predictions):
    """The RQ1 answer gives GAP_RMS of every compressed variant before -> after with its verdict: the student that
    harms women of class 0 raises it (over 3 seeds), the identical int8 copy does not change it."""
    fitness = fitness_table(predictions, None, FAST)
    table = comparisons_table(predictions, None, fitness, LABELS, FAST)
    answer = rq1_section(Findings(run=None, config=FAST, tables={"comparisons": table})).answer
    assert answer.startswith(
        "Task-level bias, against the fine-tuned teacher on the same training set. Primary "
        "metric (skew-oriented counterfactual gap, findings.primary_rq1): not in this run's"
    )
    assert (
        "1 of 2 readable comparisons change detectably (0 lower, 1 higher: distil-ft_before GAP_RMS higher)" in answer
    )
    assert "Over 3 seeds, decided by the seed x example bootstrap: statements about the methods." in answer
    # over 3 seeds the interval shown is the seed x example one the test decides on (wider than over examples)
    assert "distil-ft_before: GAP_RMS 0.138 -> 0.419 (Δ 0.281 [0.155, 0.361]" in answer
    assert "MDE 0.15, over 3 seeds (seed x example bootstrap p = 0.01); higher); accuracy Δ -0.103" in answer
    assert "int8-ft_before: GAP_RMS 0.138 -> 0.138 (Δ 0 [0, 0], p = 1, q = 1" in answer
    assert answer.endswith("no detectable change); accuracy Δ 0 [0, 0] (p = 1, q = 1, MDE 0).")
    assert "tiny-ft_before" not in answer  # collapsed: not fit to be read
