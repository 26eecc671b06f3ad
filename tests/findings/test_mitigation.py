"""Mitigation findings: each mitigated variant against its unmitigated twin (paired, as RQ1), the bias-accuracy
frontier with its Pareto front, their figures and the RQ6 section of the report."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from findings_fixtures import FAST, LABELS, planted_predictions

from pipeline.figures.frontier import frontier_figure, pruning_curve_figure
from pipeline.findings.compute import Findings
from pipeline.findings.fitness import fitness_table
from pipeline.findings.mitigation import frontier_table, mitigation_pairs, mitigation_table, pareto_mask, recipe_parts
from pipeline.report.remedies import mitigation_section
from pipeline.schema import tidy


@pytest.fixture(scope="module")
def predictions() -> pd.DataFrame:
    """prune4h-ft_before harms women of class 0; biasprune4h-ft_before does not; teacher-ft@cda copies teacher-ft."""
    return planted_predictions(["teacher-ft", "teacher-ft@cda", "biasprune4h-ft_before"], ["prune4h-ft_before"])[0]


def test_pairs_and_recipe_parts():
    present = {
        "teacher",
        "teacher-ft",
        "teacher-ft@cda",
        "prune4h-ft_before",
        "biasprune4h-ft_before",
        "erase-ft_none",
        "erase-ft_before@cda",
        "distil_mixup-ft_after",
    }
    assert mitigation_pairs(present) == [
        ("teacher-ft@cda", "cda", "teacher-ft"),
        ("biasprune4h-ft_before", "biasprune", "prune4h-ft_before"),
        ("erase-ft_none", "erase", "teacher"),
        ("erase-ft_before@cda", "erase", "teacher-ft@cda"),
    ]
    # erase-ft_before@cda's cda twin (erase-ft_before) and distil_mixup's twin (distil-ft_after) are absent
    assert recipe_parts("erase-ft_before@cda") == ("teacher", "cda+erase")
    assert recipe_parts("distil_mixup-ft_after") == ("distil", "mixup")
    assert recipe_parts("tiny-ft_before") == ("tiny", "none")


def test_a_mitigation_is_compared_with_its_twin_paired(predictions):
    fitness = fitness_table(predictions, None, FAST)
    table = mitigation_table(predictions, None, fitness, LABELS, FAST)
    assert set(zip(table["variant"], table["mitigation"], table["twin"])) == {
        ("teacher-ft@cda", "cda", "teacher-ft"),
        ("biasprune4h-ft_before", "biasprune", "prune4h-ft_before"),
    }
    pooled = table[table["level"] == "pooled"].set_index(["variant", "metric", "subset"])
    fixed = pooled.loc[("biasprune4h-ft_before", "accuracy_gap", "")]
    assert fixed["value"] > 0 and fixed["q"] < 0.05 and fixed["n_seeds"] == 3 and fixed["interpretable"]
    same = pooled.loc[("teacher-ft@cda", "accuracy", "")]
    assert same["value"] == 0 and same["p"] == 1


def test_untrained_heads_get_no_task_level_comparison(predictions):
    task = tidy([{"metric": "head_trained", "value": 0.0}], variant="teacher-ft@cda", seed=0)
    table = mitigation_table(predictions, None, None, LABELS, FAST, task)
    assert "teacher-ft@cda" not in set(table["variant"])


def test_pareto_front_maximises_accuracy_and_minimises_absolute_bias():
    accuracy = np.array([0.9, 0.8, 0.85, 0.7, np.nan, 0.9])
    bias = np.array([0.3, 0.1, -0.2, 0.05, 0.0, 0.35])
    assert pareto_mask(accuracy, bias).tolist() == [True, True, True, True, False, False]


def _bias_metrics() -> pd.DataFrame:
    rows = []
    for variant, acc, gap in (("teacher-ft", 0.80, 0.30), ("teacher-ft@cda", 0.78, 0.10),
                              ("erase-ft_before", 0.70, 0.20), ("distil-ft_before", 0.60, 0.05)):  # fmt: skip
        for seed, jitter in ((0, -0.01), (1, 0.01)):
            rows += [{"variant": variant, "seed": seed, "metric": "accuracy", "subset": "all", "value": acc + jitter,
                      "ci_low": acc - 0.05, "ci_high": acc + 0.05, "n": 100},
                     {"variant": variant, "seed": seed, "metric": "gap_rms", "subset": "", "value": gap + jitter,
                      "ci_low": gap - 0.04, "ci_high": gap + 0.04, "n": 100},
                     {"variant": variant, "seed": seed, "metric": "cf_prob_gap", "subset": "all", "value": -gap,
                      "ci_low": -gap - 0.02, "ci_high": -gap + 0.02, "n": 100}]  # fmt: skip
    return tidy(rows)


def _all_fit(bias: pd.DataFrame) -> pd.DataFrame:
    """A fitness table saying every variant of ``bias`` is fit to be read (unknown fitness is never read as fit)."""
    pairs = bias[["variant", "seed"]].drop_duplicates()
    return tidy([{"variant": v, "seed": int(s), "metric": "accuracy", "value": 0.8, "fit": True}
                 for v, s in zip(pairs["variant"], pairs["seed"])])  # fmt: skip


def test_frontier_pools_seeds_marks_recipes_and_the_front_of_fit_variants():
    fitness = tidy([{"variant": "distil-ft_before", "seed": s, "metric": "accuracy", "value": 0.6, "fit": False}
                    for s in (0, 1)] + [{"variant": v, "seed": 0, "metric": "accuracy", "value": 0.8, "fit": True}
                                        for v in ("teacher-ft", "teacher-ft@cda", "erase-ft_before")])  # fmt: skip
    frontier = frontier_table(_bias_metrics(), fitness)
    gap = frontier[frontier["metric"] == "gap_rms"].set_index("variant")
    assert gap.loc["teacher-ft", "value"] == pytest.approx(0.30) and gap.loc["teacher-ft", "n_seeds"] == 2
    assert gap.loc["teacher-ft", "accuracy"] == pytest.approx(0.80)
    assert gap["pareto"].to_dict() == {
        "distil-ft_before": False,
        "erase-ft_before": False,
        "teacher-ft": True,
        "teacher-ft@cda": True,
    }  # distil is lowest but not fit to be read
    assert gap.loc["erase-ft_before", ["compression", "mitigation"]].tolist() == ["teacher", "erase"]
    assert set(frontier["metric"]) == {"gap_rms", "cf_prob_gap"}
    fig = frontier_figure(frontier)
    assert len(fig.axes) == 2 and "|counterfactual gap|" in fig.axes[1].get_ylabel()
    with pytest.raises(ValueError, match="no frontier rows"):
        frontier_figure(frontier, ["seat_effect_size"])


def test_pruning_curve_figure_draws_every_order():
    rows = [{"metric": m, "value": v, "ci_low": v - 0.01, "ci_high": v + 0.01, "order": o, "step": k,
             "fraction": k / 4, "order_min": v, "order_max": v}
            for o in ("bias", "importance", "random") for k in range(5)
            for m, v in (("abs_cf_gap", 0.2 - 0.04 * k), ("accuracy", 0.8 - 0.05 * k))]  # fmt: skip
    fig = pruning_curve_figure(tidy(rows, variant="teacher-ft", seed=0))
    assert len(fig.axes) == 2 and len(fig.axes[0].lines) == 3
    with pytest.raises(ValueError, match="no 'cf_gap' rows"):
        pruning_curve_figure(tidy(rows, variant="teacher-ft", seed=0), bias_metric="cf_gap")


def test_the_rq6_section_states_each_remedy_its_bias_change_its_cost_and_the_front(predictions):
    fitness = fitness_table(predictions, None, FAST)
    findings = Findings(run=None, config=FAST, tables={
        "mitigation": mitigation_table(predictions, None, fitness, LABELS, FAST),
        "frontier": frontier_table(_bias_metrics(), _all_fit(_bias_metrics()))})  # fmt: skip
    section = mitigation_section(findings)
    assert section.key == "rq6" and section.figure is not None
    assert section.answer.startswith("Primary metric (skew-oriented counterfactual gap, findings.primary_rq6): not in")
    assert (
        "Secondary metrics (BH-corrected as one family): 1 of 2 readable comparisons over 2 mitigated variants are "
        "lower detectably than the unmitigated twin, 0 higher (biasprune4h-ft_before vs prune4h-ft_before GAP_RMS lower)"
    ) in section.answer
    assert "biasprune (biasprune4h-ft_before vs prune4h-ft_before): GAP_RMS 0.419 -> 0.138" in section.answer
    assert "over 3 seeds (seed x example bootstrap p = 0.01); lower); accuracy changes by 0.103" in section.answer
    assert "cda (teacher-ft@cda vs teacher-ft): GAP_RMS 0.138 -> 0.138 (Δ 0 [0, 0], p = 1" in section.answer
    assert "no detectable change" in section.answer
    assert "3 of 4 readable variants are not significantly dominated (teacher-ft, teacher-ft@cda, distil-ft_before" in (
        section.answer
    )
    assert set(section.table["mitigation"]) == {"cda", "biasprune"}
    empty = mitigation_section(Findings(run=None, config=FAST, tables={}))
    assert "cannot answer" in empty.answer


def test_remedies_trained_on_swaps_are_judged_on_the_held_out_words():
    from pipeline.report.remedies import _cf_subset

    held = {m: _cf_subset(m) for m in ("cda", "mixup", "fairdistil", "biasprune", "eoreg", "eo", "reweighed")}
    assert held == {"cda": "heldout", "mixup": "heldout", "fairdistil": "heldout", "biasprune": "heldout",
                    "eoreg": "all", "eo": "all", "reweighed": "all"}  # fmt: skip
