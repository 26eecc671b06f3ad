"""RQ3/RQ4 resampled over examples, on hand-made per-example head effects: a student that is an exact copy of its
teacher reads "reproduced", one with shuffled head effects "not reproduced", an identical Gini no detectable
difference; estimates lie inside their intervals; the no-effect Gini is the Gini of the same noise."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.findings.compute import Findings, FindingsConfig
from pipeline.findings.resampled import gini, split_half_ceiling, weights
from pipeline.findings.structure import concentration_table, stability_table
from pipeline.report.answers_structure import rq3_section, rq4_section
from pipeline.runs.runfolder import RunFolder

N_EX, LAYERS, HEADS = 48, 4, 4
CFG = FindingsConfig(n_boot=400)


def _teacher(seed: int = 0, *, concentrated: bool = False) -> np.ndarray:
    """(LAYERS, HEADS, N_EX): head means spread evenly from 0 to 0.1 (or, ``concentrated``, two heads at 0.1 and the
    rest at 0), per-example noise sd 0.02."""
    rng = np.random.default_rng(seed)
    spread = np.linspace(0, 0.1, LAYERS * HEADS)
    spread = np.where(np.arange(LAYERS * HEADS) >= LAYERS * HEADS - 2, 0.1, 0.0) if concentrated else spread
    means = spread.reshape(LAYERS, HEADS) * rng.choice([-1, 1], (LAYERS, HEADS))
    return means[..., None] + rng.normal(0, 0.02, (LAYERS, HEADS, N_EX))


def _frames(variant: str, effects: np.ndarray) -> tuple[list[dict], list[dict]]:
    examples, heads = [], []
    for layer in range(effects.shape[0]):
        for head in range(effects.shape[1]):
            x = effects[layer, head]
            examples += [{"variant": variant, "seed": 0, "unit": "head", "layer": layer, "head": head,
                          "example": i, "value": v, "metric": "delta_score", "method": "ablation"}
                         for i, v in enumerate(x)]  # fmt: skip
            se = x.std(ddof=1) / np.sqrt(len(x))
            heads.append({"variant": variant, "seed": 0, "unit": "head", "layer": layer, "head": head,
                          "metric": "delta_score", "mode": "single", "value": x.mean(), "ci_low": x.mean() - 2 * se,
                          "ci_high": x.mean() + 2 * se, "p": 0.001, "n": len(x), "score": "cf_skew_gap"})  # fmt: skip
    heads.append({"variant": variant, "seed": 0, "unit": "model", "layer": -1, "head": -1, "metric": "intact_score",
                  "mode": "single", "value": -0.2, "ci_low": -0.25, "ci_high": -0.15, "p": 0.001, "n": N_EX,
                  "score": "cf_skew_gap"})  # fmt: skip
    return examples, heads


def _tables(**models: np.ndarray) -> dict[str, pd.DataFrame]:
    examples, heads = [], []
    for variant, effects in models.items():
        e, h = _frames(variant.replace("_", "-").replace("distil-ft-before", "distil-ft_before"), effects)
        examples += e
        heads += h
    return {"head_examples": pd.DataFrame(examples), "head_ablation": pd.DataFrame(heads)}


def _student(teacher: np.ndarray) -> np.ndarray:
    return teacher[[0, 2]]  # the default layer map 2i: student layers 0, 1 <- teacher layers 0, 2


def _rq4(tmp_path, tables) -> tuple[pd.DataFrame, str]:
    stab = stability_table(tables, CFG)
    (tmp_path / "tables").mkdir(exist_ok=True)
    return stab, rq4_section(Findings(RunFolder(tmp_path), CFG, tables={"stability": stab})).answer


def test_a_copy_of_the_teacher_is_reproduced(tmp_path):
    teacher = _teacher()
    stab, answer = _rq4(tmp_path, _tables(teacher_ft=teacher, distil_ft_before=_student(teacher)))
    align = stab.set_index("metric")
    assert align.loc["align_spearman", "value"] == pytest.approx(1.0)
    assert align.loc["align_vs_ceiling", "verdict"] == "reproduced"
    assert "reproduced for distil-ft_before" in answer and "not reproduced" not in answer


def test_a_student_with_shuffled_head_effects_is_not_reproduced(tmp_path):
    teacher = _teacher()
    student = _student(teacher).reshape(2 * HEADS, N_EX)[np.random.default_rng(5).permutation(2 * HEADS)]
    stab, answer = _rq4(tmp_path, _tables(teacher_ft=teacher, distil_ft_before=student.reshape(2, HEADS, N_EX)))
    row = stab.set_index("metric").loc["align_vs_ceiling"]
    assert row["verdict"] == "not reproduced" and row["ci_high"] < 0
    assert "not reproduced for distil-ft_before" in answer


def test_estimates_lie_inside_their_intervals():
    teacher = _teacher()
    tables = _tables(teacher_ft=teacher, distil_ft_before=_student(_teacher(seed=3)))
    for frame in (stability_table(tables, CFG), concentration_table(tables, CFG)):
        rows = frame[frame["ci_low"].notna() & ~frame["metric"].eq("gini_null")]
        assert ((rows["ci_low"] <= rows["value"] + 1e-12) & (rows["value"] <= rows["ci_high"] + 1e-12)).all()


def test_an_identical_gini_reads_no_detectable_difference_and_the_no_effect_level(tmp_path):
    teacher = _teacher(concentrated=True)
    conc = concentration_table(_tables(teacher_ft=teacher, int8_ft_before=teacher.copy()), CFG)
    diff = conc[conc["metric"] == "gini_diff"].iloc[0]
    assert diff["value"] == 0 and diff["p"] == 1.0
    null = conc[(conc["metric"] == "gini_null") & (conc["variant"] == "teacher-ft")].iloc[0]
    w = weights(N_EX, CFG.n_boot, CFG.seed)
    x = teacher.reshape(-1, N_EX)
    expected = gini(w @ (x - x.mean(1, keepdims=True)).T)  # the same noise with every head mean at 0
    assert null["value"] == pytest.approx(np.nanmedian(expected))
    assert conc[(conc["metric"] == "gini") & (conc["variant"] == "teacher-ft")]["beyond_noise"].iloc[0]
    even = concentration_table(_tables(teacher_ft=_teacher()), CFG).set_index("metric")  # evenly spread effects
    assert even.loc["gini", "value"] < even.loc["gini_null", "ci_high"] and not even.loc["gini", "beyond_noise"]
    (tmp_path / "tables").mkdir()
    answer = rq3_section(Findings(RunFolder(tmp_path), CFG, tables={"concentration": conc})).answer
    assert "cannot decide" in answer and "no head mattering" in answer


def test_the_noise_ceiling_of_two_identical_rankings_is_their_reliability():
    x = _teacher().reshape(-1, N_EX)
    point, draws = split_half_ceiling(x, x, weights(N_EX, 50, 1), seed=0)
    assert 0.5 < point <= 1 and np.all((draws <= 1) | np.isnan(draws))
    rng = np.random.default_rng(2)  # no head matters: nothing reliable to reproduce (0 on average over data sets)
    noise = [split_half_ceiling(z, z, weights(N_EX, 10, 1), seed=0)[0] for z in rng.normal(0, 0.02, (12, *x.shape))]
    assert np.mean(noise) < 0.3 < point


def test_several_seed_pairs_per_model_are_counted_by_verdict(tmp_path):
    """With several pairs per model (5 seeds: 10 seed pairs, 5 teacher-student seeds) the answer counts each
    verdict per model instead of naming one model under two verdicts."""
    rows = [
        {"variant": "teacher-ft", "seed": 0, "method": "ablation", "metric": "seed_spearman", "subset": f"0-{k}",
         "unit": "model", "value": v, "ci_low": lo, "ci_high": hi, "agree": agree}
        for k, (v, lo, hi, agree) in enumerate([(0.9, 0.8, 0.95, True), (0.9, 0.7, 0.95, True),
                                                (0.2, -0.1, 0.4, False)], start=1)
    ]  # fmt: skip
    (tmp_path / "tables").mkdir()
    answer = rq4_section(Findings(RunFolder(tmp_path), CFG, tables={"stability": pd.DataFrame(rows)})).answer
    assert answer.startswith(
        "Location across seeds: teacher-ft (ablation) stable in 2, not reproduced in 1 of 3 seed pairs."
    )
