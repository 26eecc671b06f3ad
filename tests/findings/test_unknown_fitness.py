"""Unknown fitness is never read as fit: without a fitness table no model is on the bias-accuracy frontier, and RQ3
says that the head effects belong to models not known (or known not) to do the task."""

from __future__ import annotations

import pandas as pd

from pipeline.findings.compute import Findings, FindingsConfig
from pipeline.findings.mitigation import frontier_table
from pipeline.report.answers_structure import rq3_section
from pipeline.runs.runfolder import RunFolder


def _bias() -> pd.DataFrame:
    rows = []
    for variant, accuracy, gap in (("teacher-ft", 0.8, 0.2), ("distil-ft_before", 0.7, 0.1)):
        rows += [{"variant": variant, "seed": 0, "unit": "model", "metric": "accuracy", "subset": "all",
                  "value": accuracy, "ci_low": accuracy - 0.01, "ci_high": accuracy + 0.01, "n": 400},
                 {"variant": variant, "seed": 0, "unit": "model", "metric": "gap_rms", "subset": "",
                  "value": gap, "ci_low": gap - 0.01, "ci_high": gap + 0.01, "n": 400}]  # fmt: skip
    return pd.DataFrame(rows)


def _fitness(fit: bool) -> pd.DataFrame:
    return pd.DataFrame([{"variant": v, "seed": 0, "fit": fit, "metric": "accuracy", "value": 0.3, "reason": ""}
                         for v in ("teacher-ft", "distil-ft_before")])  # fmt: skip


def test_no_model_of_unknown_or_failed_fitness_is_on_the_frontier():
    for fitness in (None, _fitness(False)):
        frontier = frontier_table(_bias(), fitness)
        assert not frontier["pareto"].any() and not frontier["fit"].any()
    assert frontier_table(_bias(), _fitness(True))["pareto"].all()  # both non-dominated once known to be fit


def test_rq3_says_when_no_model_is_known_to_be_fit(tmp_path):
    conc = pd.DataFrame([{"variant": "teacher-ft", "seed": 0, "unit": "model", "method": "ablation",
                          "metric": "gini", "value": 0.5, "ci_low": 0.4, "ci_high": 0.6, "has_intervals": True}])  # fmt: skip
    (tmp_path / "tables").mkdir()
    for tables, words in (({}, "Fitness is unknown"), ({"fitness": _fitness(False)}, "None of these models is fit")):
        findings = Findings(RunFolder(tmp_path), FindingsConfig(), tables={"concentration": conc, **tables})
        assert words in rq3_section(findings).answer
