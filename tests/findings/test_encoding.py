"""RQ5 on hand-made probe and erasure tables: an erasure that leaves the gender probe above chance is reported as
incomplete (the amnesic question untested), never as "does not change"; a complete one is judged on the gap; encoding
is tested against the embedding layer as well as chance; erasure q-values are corrected within each metric."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pipeline.findings.compute import Findings, FindingsConfig
from pipeline.findings.encoding import encoding_table
from pipeline.report.answers_structure import rq5_section
from pipeline.runs.runfolder import RunFolder


def _probe(layer: int, value: float, half: float = 0.02, pooling: str = "cls") -> dict:
    return {"variant": "teacher-ft", "seed": 0, "unit": "layer", "layer": layer, "metric": "probe_accuracy",
            "subset": "gender", "value": value, "ci_low": value - half, "ci_high": value + half, "n": 400,
            "chance": 0.5, "pooling": pooling}  # fmt: skip


def _erasure(after_probe: float, gap_before: float, gap_after: float) -> pd.DataFrame:
    rows = []
    for condition, probe, gap in (("before", 0.8, gap_before), ("after", after_probe, gap_after)):
        rows.append({**_probe(6, probe), "condition": condition, "erased_layer": 6})
        rows.append({"variant": "teacher-ft", "seed": 0, "unit": "model", "layer": -1, "metric": "cf_prob_gap",
                     "subset": "all", "value": gap, "ci_low": gap - 0.002, "ci_high": gap + 0.002, "n": 400,
                     "condition": condition, "erased_layer": 6, "pooling": ""})  # fmt: skip
    return pd.DataFrame(rows)


def _findings(tmp_path: Path, erasure: pd.DataFrame) -> Findings:
    layers = pd.DataFrame([_probe(0, 0.85), _probe(3, 0.86), _probe(6, 0.8)])
    tables = {"probes_layers": layers, "erasure": erasure}
    cfg = FindingsConfig()
    (tmp_path / "tables").mkdir(exist_ok=True)
    return Findings(RunFolder(tmp_path), cfg, tables={"encoding": encoding_table(tables, cfg)})


def test_an_erasure_above_chance_is_incomplete_not_no_change(tmp_path):
    findings = _findings(tmp_path, _erasure(after_probe=0.75, gap_before=-0.012, gap_after=-0.005))
    rows = findings.tables["encoding"]
    erased = rows[rows["metric"].str.startswith("erasure_")]
    assert not erased["erasure_complete"].any() and not erased["removes_bias"].any()
    answer = rq5_section(findings).answer
    assert "is incomplete" in answer and "not tested" in answer and "does not change" not in answer


def test_a_complete_erasure_is_judged_on_the_gap(tmp_path):
    findings = _findings(tmp_path, _erasure(after_probe=0.51, gap_before=-0.012, gap_after=0.0))
    erased = findings.tables["encoding"].query("metric.str.startswith('erasure_')", engine="python")
    assert erased["erasure_complete"].all() and erased["removes_bias"].all()
    answer = rq5_section(findings).answer
    assert "brings the gender probe to chance" in answer and "removes the detectable counterfactual gap" in answer


def test_encoding_is_tested_against_the_embedding_layer(tmp_path):
    rows = _findings(tmp_path, _erasure(0.51, -0.012, 0.0)).tables["encoding"]
    probe = rows[rows["metric"] == "probe_accuracy"].set_index("layer")
    assert probe["encoded"].all()  # every layer beats chance (0.5) ...
    assert not probe["beyond_embeddings"].any()  # ... but none reads gender better than the embeddings (0.85)
    se = np.hypot(0.02, 0.02) / stats.norm.ppf(0.975)  # two 95% half-widths of 0.02, combined as independent
    assert probe["p_embed"].isna()[0] and probe["p_embed"][3] == pytest.approx(stats.norm.sf((0.86 - 0.85) / se))


def test_erasure_q_values_are_corrected_within_each_metric(tmp_path):
    rows = _findings(tmp_path, _erasure(0.51, -0.012, 0.0)).tables["encoding"]
    erased = rows[rows["metric"].str.startswith("erasure_")]
    assert (erased["q"] == erased["p"]).all()  # one row per metric: each is its own family
