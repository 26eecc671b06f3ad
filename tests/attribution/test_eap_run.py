"""A tiny run with ``extra_methods = ["eap", "circuit"]`` writes the ``eap_edges`` and ``circuit`` tables for the
fine-tuned teacher and its distilled student (tests/run_fixtures.py); the findings compare the two circuits and
the report answers "Does compression rewire the bias circuit?" and `bias-atlas figures` draws them."""

from __future__ import annotations

import pytest
from run_fixtures import demo_config, run_pipeline, save_teacher

from pipeline.figures.run_figures import make_figures
from pipeline.findings.compute import FindingsConfig, compute_findings
from pipeline.report.answers_circuits import circuits_section
from pipeline.schema import read_table

# 25 s for the tiny run: keeps the default suite under 10 minutes (`pytest -m slow` runs it); the EAP, circuit,
# overlap and report units are tested without a run in test_eap.py, test_circuit.py and tests/findings/test_circuits.py
pytestmark = pytest.mark.slow

VARIANTS = ["teacher-ft", "distil-ft_before"]
OFF = ("ablation", "importance", "head_ig", "neuron_ig", "token_ig", "cumulative", "patching")


@pytest.fixture(scope="module")
def circuit_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("circuits")
    config = demo_config(out / "runs", save_teacher(out / "teacher"), name="circuits", analyses=["attribution"])
    config["run"]["seeds"] = [0]
    config["compress"] = {"distil": config["compress"]["distil"]}
    config["attribution"] |= {"variants": VARIANTS, "extra_methods": ["eap", "circuit"]} | dict.fromkeys(OFF, False)
    run_pipeline(config)
    return out / "runs" / "circuits"


def test_the_run_writes_edge_scores_and_circuits_for_the_teacher_and_its_student(circuit_run):
    edges = read_table(circuit_run / "tables" / "eap_edges.parquet")
    circuit = read_table(circuit_run / "tables" / "circuit.parquet")
    assert set(edges["variant"]) == set(circuit["variant"]) == set(VARIANTS)
    teacher = edges[edges["variant"] == "teacher-ft"]
    # 4 layers x 4 heads: 21 writers; a layer-l head reads 5l + 1 of them, its FFN 5l + 5, the readout all 21
    assert len(teacher) == sum(4 * (5 * l + 1) + 5 * l + 5 for l in range(4)) + 21
    assert set(edges["unit"]) == {"edge"} and edges["ci_low"].notna().all()
    student = edges[edges["variant"] == "distil-ft_before"]
    assert len(student) < len(teacher)  # the student has fewer layers
    for variant in VARIANTS:
        rows = circuit[circuit["variant"] == variant].set_index("metric")
        size, n_edges = rows.loc["circuit_size", "value"], (edges["variant"] == variant).sum()
        assert 1 <= size <= n_edges and (circuit.query("variant == @variant")["metric"] == "circuit_edge").sum() == size
        assert rows.loc["circuit_recovered", "value"] >= 0.8  # no cap: the grid can reach every edge
        stored = circuit[(circuit["variant"] == variant) & (circuit["metric"] == "edge_example_eap")]
        assert stored["subset"].nunique() == min(n_edges, max(4 * size, 200))


def test_the_findings_compare_the_student_circuit_with_the_teachers_and_the_report_answers(circuit_run):
    findings = compute_findings(circuit_run, FindingsConfig(n_boot=200))
    overlap = findings.get("circuit_overlap").set_index("metric")
    assert set(overlap["variant"]) == {"distil-ft_before"} and set(overlap["reference"]) == {"teacher-ft"}
    assert set(overlap["resampled"]) == {"examples"} and overlap["paired"].all()  # the same test sample
    jaccard = overlap.loc["edge_jaccard"]
    assert 0 <= jaccard["ci_low"] <= jaccard["value"] <= jaccard["ci_high"] <= 1  # widened to contain the point
    section = circuits_section(findings)
    assert section.answer.startswith("Bias circuit, teacher to student: ")
    assert section.numbers[0].startswith("distil-ft_before (seed 0) vs teacher-ft: edge Jaccard ")


def test_bias_atlas_figures_draws_the_circuits(circuit_run, tmp_path):
    written = make_figures(circuit_run, tmp_path, formats=["png"])
    assert tmp_path / "circuit.png" in written
