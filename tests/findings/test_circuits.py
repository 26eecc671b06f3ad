"""Teacher vs student circuits: overlap after the layer map, its intervals from resampled examples (or, without
per-example scores, from the edge scores), and the report's answer (pipeline.findings.circuits,
pipeline.report.answers_circuits)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pipeline.findings.circuits import circuit_overlap, map_node
from pipeline.findings.compute import Findings, FindingsConfig
from pipeline.report.answers_circuits import circuits_section, verdict
from pipeline.runs.runfolder import RunFolder
from pipeline.schema import tidy

CFG = FindingsConfig(n_boot=200)
TEACHER = ["emb->L0.H1", "L0.H1->L2.H3", "L2.H3->readout", "L1.H0->readout"]  # L1 has no student layer
STUDENT = ["emb->L0.H1", "L0.H1->L1.H3", "L1.H2->readout"]  # map [0, 2]: teacher L2 is student L1
OTHER = ["emb->L0.H0", "L0.H0->readout", "L1.H1->readout", "emb->L1.H1"]


def _edge(name: str, **row) -> dict:
    source, target = name.split("->")
    layer = lambda n: int(n[1]) if n.startswith("L") else -1
    head = lambda n: int(n.split(".H")[1]) if ".H" in n else -1
    return {"unit": "edge", "subset": name, "source": source, "target": target, "source_layer": layer(source),
            "source_head": head(source), "layer": layer(target), "head": head(target), **row}  # fmt: skip


def _tables(spread: float = 1e-6) -> dict[str, pd.DataFrame]:
    """Circuits of the teacher and a 2-layer student; edge scores whose ranking puts each circuit first, with
    intervals of half-width ``spread``."""
    circuit, edges = [], []
    for variant, names in (("teacher-ft", TEACHER), ("distil-ft_before", STUDENT)):
        circuit += [_edge(n, variant=variant, metric="circuit_edge", value=1.0, rank=i + 1, n=6)
                    for i, n in enumerate(names)]  # fmt: skip
        scores = [(n, 1.0 - 0.1 * i) for i, n in enumerate(names)] + [(n, 0.45 - 0.1 * i) for i, n in enumerate(OTHER)]
        edges += [_edge(n, variant=variant, metric="eap", value=v, ci_low=v - spread, ci_high=v + spread, n=6)
                  for n, v in scores]  # fmt: skip
    return {"circuit": tidy(circuit, seed=0), "eap_edges": tidy(edges, seed=0)}


def test_teacher_nodes_move_to_the_student_layers():
    assert [map_node(n, {0: 0, 2: 1}) for n in ("emb", "readout", "L2.H3", "L2.FFN", "L1.H0")] == [
        "emb", "readout", "L1.H3", "L1.FFN", None
    ]  # fmt: skip


def test_overlap_after_the_layer_map_with_tight_intervals():
    table = circuit_overlap(_tables(), CFG).set_index("metric")
    # teacher edges mapped: emb->L0.H1, L0.H1->L1.H3, L1.H3->readout (L1.H0->readout unmapped)
    assert table.loc["edge_jaccard", "value"] == pytest.approx(2 / 4)
    assert table.loc["node_jaccard", "value"] == pytest.approx(2 / 3)  # {L0.H1, L1.H3} vs {.., L1.H2}
    assert table.loc["teacher_edges_kept", "value"] == pytest.approx(2 / 3)
    assert table.loc["teacher_unmapped", "value"] == 1
    assert set(table["variant"]) == {"distil-ft_before"} and set(table["layer_map"]) == {"0,2"}
    rows = table.loc[["edge_jaccard", "node_jaccard", "teacher_edges_kept"]]
    np.testing.assert_allclose(rows["ci_low"], rows["value"])
    np.testing.assert_allclose(rows["ci_high"], rows["value"])
    assert set(rows["resampled"]) == {"edge_scores"} and not rows["paired"].any()


def test_the_layer_map_of_the_students_config_is_used(tmp_path):
    folder = tmp_path / "models" / "distil-ft_before" / "seed0"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"layer_map": [1, 2]}))
    table = circuit_overlap(_tables(), CFG, tmp_path).set_index("metric")
    # map [1, 2]: teacher L0 is lost (emb->L0.H1, L0.H1->L2.H3 unmapped), L2.H3->readout becomes L1.H3->readout
    assert table.loc["teacher_unmapped", "value"] == 2 and table.loc["edge_jaccard", "value"] == 0.0
    assert set(table["layer_map"]) == {"1,2"}


def test_wide_edge_intervals_widen_the_overlap_interval_and_no_edge_table_gives_none():
    wide = circuit_overlap(_tables(spread=1.0), CFG).set_index("metric").loc["edge_jaccard"]
    assert wide["ci_low"] < 0.5 < wide["ci_high"]
    none = circuit_overlap({"circuit": _tables()["circuit"]}, CFG).set_index("metric").loc["edge_jaccard"]
    assert none["resampled"] == "none" and np.isnan(none["ci_low"]) and none["value"] == pytest.approx(0.5)
    assert circuit_overlap({}, CFG).empty


EDGES = ["emb->L0.H0", "emb->L0.H1", "L0.H0->readout", "L0.H1->readout", "emb->readout", "L0.H2->readout",
         "emb->L0.H2", "L0.H3->readout"]  # fmt: skip
MEANS = np.array([3.0, 2.5, 2.0, 1.5, 0.3, 0.2, 0.1, 0.0])


def _example_tables(scores: dict[str, np.ndarray], k: int = 3, offset: dict[str, int] | None = None) -> dict:
    """A ``circuit`` table from per-example scores (variant -> (example, edge) over ``EDGES``): each circuit is the
    top ``k`` edges by |mean| (one layer, so the layer map is [0]); ``offset`` shifts a model's example ids."""
    rows = []
    for variant, matrix in scores.items():
        mean, first = matrix.mean(0), (offset or {}).get(variant, 0)
        top = np.argsort(-np.abs(mean), kind="stable")[:k]
        rows += [_edge(EDGES[i], variant=variant, metric="circuit_edge", value=mean[i], rank=r + 1, n=6)
                 for r, i in enumerate(top)]  # fmt: skip
        rows += [_edge(EDGES[j], variant=variant, metric="edge_example_eap", value=matrix[e, j], example=first + e, n=1)
                 for e in range(len(matrix)) for j in range(len(EDGES))]  # fmt: skip
    return {"circuit": tidy(rows, seed=0)}


def _noisy(seed: int, means: np.ndarray = MEANS, n: int = 30) -> np.ndarray:
    return means + np.random.default_rng(seed).normal(0, 1.0, size=(n, len(means)))


def test_a_student_identical_to_its_teacher_overlaps_fully_under_paired_example_resampling(tmp_path):
    same = _noisy(0)
    overlap = circuit_overlap(_example_tables({"teacher-ft": same, "distil-ft_before": same}), CFG)
    rows = overlap.set_index("metric").loc[["edge_jaccard", "node_jaccard", "teacher_edges_kept"]]
    assert rows[["value", "ci_low", "ci_high"]].to_numpy().tolist() == [[1.0, 1.0, 1.0]] * 3
    assert set(rows["resampled"]) == {"examples"} and set(rows["paired"]) == {True}
    section = _section(tmp_path, circuit_overlap=overlap)
    assert section.answer == "Bias circuit, teacher to student: kept for distil-ft_before."
    assert section.notes[0].startswith("Intervals resample the examples that ranked the edges")


def test_shuffled_scores_overlap_less_and_the_interval_holds_the_point():
    teacher = _noisy(0)
    shuffled = teacher[:, [7, 6, 5, 4, 3, 2, 1, 0]]  # the top edges' scores moved to the weakest edges
    low = circuit_overlap(_example_tables({"teacher-ft": teacher, "distil-ft_before": shuffled}), CFG)
    low = low.set_index("metric").loc["edge_jaccard"]
    assert low["value"] == 0.0 and low["ci_high"] < 1.0
    near = teacher[:, [0, 1, 4, 3, 2, 5, 6, 7]]  # two of three circuit edges shared, separated from the rest
    near = circuit_overlap(_example_tables({"teacher-ft": teacher, "distil-ft_before": near}), CFG).set_index("metric")
    jaccard = near.loc["edge_jaccard"]
    assert jaccard["value"] == pytest.approx(2 / 4) and jaccard["ci_low"] <= jaccard["value"] <= jaccard["ci_high"]


def test_students_ranked_on_other_examples_are_resampled_unpaired():
    tables = _example_tables({"teacher-ft": _noisy(0), "distil-ft_before": _noisy(1)}, offset={"teacher-ft": 100})
    row = circuit_overlap(tables, CFG).set_index("metric").loc["edge_jaccard"]
    assert row["resampled"] == "examples" and not row["paired"] and row["value"] == 1.0
    assert row["ci_low"] <= row["value"] <= row["ci_high"]


def _section(tmp_path, **tables) -> str:
    return circuits_section(Findings(RunFolder(tmp_path), CFG, tables=tables))


def test_the_report_answers_with_intervals_and_refuses_without_circuits(tmp_path):
    row = lambda low, high: pd.Series({"ci_low": low, "ci_high": high})
    assert [verdict(row(0.1, 0.4)), verdict(row(0.6, 0.9)), verdict(row(0.4, 0.6)), verdict(row(np.nan, np.nan))] == [
        "rewired", "kept", "undecided", "undecided"
    ]  # fmt: skip
    missing = _section(tmp_path)
    assert missing.answer.startswith("Cannot decide") and any("extra_methods" in n for n in missing.notes)
    assert missing.table.to_dict("list") == {"table": ["eap_edges", "circuit", "circuit_overlap"], "rows": [0, 0, 0]}
    table = circuit_overlap(_tables(), CFG)
    answered = _section(tmp_path, circuit_overlap=table)
    assert answered.answer == (
        "Bias circuit, teacher to student: undecided for distil-ft_before. Where undecided, the data cannot decide: "
        "the overlap interval spans 0.5 or is missing."
    )  # edge Jaccard 0.5 [0.5, 0.5] is not above 0.5
    assert answered.numbers[0].startswith("distil-ft_before (seed 0) vs teacher-ft: edge Jaccard 0.5 [0.5, 0.5]")
    table.loc[table["metric"] == "edge_jaccard", ["ci_low", "ci_high"]] = [0.1, 0.3]
    assert (
        _section(tmp_path, circuit_overlap=table).answer
        == "Bias circuit, teacher to student: rewired for distil-ft_before."
    )


def test_edge_sets_that_carry_too_little_of_the_bias_are_not_compared_as_circuits(tmp_path):
    table = circuit_overlap(_tables(), CFG)
    table.loc[table["metric"] == "edge_jaccard", ["ci_low", "ci_high"]] = [0.1, 0.3]  # "rewired" if they were circuits
    shares = tidy([{"variant": v, "metric": "circuit_recovered", "value": x} for v, x in
                   (("teacher-ft", 0.9), ("distil-ft_before", 0.3))], seed=0)  # fmt: skip
    answer = _section(tmp_path, circuit_overlap=table, circuit=shares).answer
    assert answer.startswith("Bias circuit, teacher to student: not comparable for distil-ft_before.")
    assert (
        "no circuit carries 80% of the bias within its edge budget (distil-ft_before 30% within its budget)" in answer
    )
    sizes = tidy([{"variant": "distil-ft_before", "metric": "circuit_size", "value": 20.0}], seed=0)
    answer = _section(tmp_path, circuit_overlap=table, circuit=pd.concat([shares, sizes])).answer
    assert "within its edge budget (distil-ft_before 30% within 20 edges)" in answer
    shares.loc[shares["variant"] == "distil-ft_before", "value"] = 0.85
    assert _section(tmp_path, circuit_overlap=table, circuit=shares).answer.endswith("rewired for distil-ft_before.")
