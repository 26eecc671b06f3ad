"""The Circuits page (issue #31): a model's bias circuit at an adjustable threshold, linked to the Head inspector,
on the test demo run with hand-made ``eap_edges`` and ``circuit`` tables (known scores)."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from viewer_helpers import open_app, show

from pipeline.schema import tidy, write_table
from pipeline.viewer.viewer_circuits import shown_edges

# (variant, edge, score, interval half-width); the circuit found by the run: the first two edges of each model
EDGES = [
    ("teacher-ft", "emb->L1.H2", 0.30, 0.05),
    ("teacher-ft", "L1.H2->readout", -0.20, 0.05),
    ("teacher-ft", "L0.H1->L3.H0", 0.10, 0.15),  # interval covers 0
    ("teacher-ft", "L2.FFN->readout", 0.05, 0.01),
    ("distil-ft_before", "emb->L0.H3", 0.25, 0.05),
    ("distil-ft_before", "L0.H3->readout", 0.15, 0.05),
    ("distil-ft_before", "L1.FFN->readout", -0.02, 0.05),
]


def _where(node: str) -> tuple[int, int]:
    """(layer, head) of a node name as the eap_edges table writes them (-1 where not applicable)."""
    if node in ("emb", "readout"):
        return -1, -1
    layer, part = node[1:].split(".")
    return int(layer), int(part[1:]) if part.startswith("H") else -1


def _edge_rows() -> pd.DataFrame:
    rows = []
    for variant, edge, score, half in EDGES:
        source, target = edge.split("->")
        (layer, head), (source_layer, source_head) = _where(target), _where(source)
        rows.append({"variant": variant, "unit": "edge", "layer": layer, "head": head, "metric": "eap_score",
                     "subset": edge, "value": score, "ci_low": score - half, "ci_high": score + half, "n": 48,
                     "source": source, "target": target, "source_layer": source_layer,
                     "source_head": source_head})  # fmt: skip
    return tidy(rows, seed=0)


def _circuit_rows() -> pd.DataFrame:
    rows = []
    for variant in ("teacher-ft", "distil-ft_before"):
        found = [e for e in EDGES if e[0] == variant][:2]
        for _, edge, score, _ in found:
            source, target = edge.split("->")
            rows.append({"variant": variant, "unit": "edge", "metric": "circuit_edge", "subset": edge, "value": score,
                         "source": source, "target": target})  # fmt: skip
        rows += [{"variant": variant, "unit": "model", "metric": "circuit_size", "value": 2.0},
                 {"variant": variant, "unit": "model", "metric": "circuit_recovered", "value": 0.85}]  # fmt: skip
    return tidy(rows, seed=0)


@pytest.fixture(scope="module")
def circuit_run(tmp_path_factory, demo_run):
    run_dir = tmp_path_factory.mktemp("runs_circuits") / "circuits"
    shutil.copytree(demo_run, run_dir, ignore=shutil.ignore_patterns(".cache"))
    write_table(_edge_rows(), run_dir / "tables" / "eap_edges.parquet")
    write_table(_circuit_rows(), run_dir / "tables" / "circuit.parquet")
    return run_dir


def test_the_threshold_keeps_the_top_edges_of_each_model():
    edges = _edge_rows()
    top = shown_edges(edges, 2)
    for variant, rows in top.groupby("variant"):
        brute = sorted((e for e in EDGES if e[0] == variant), key=lambda e: -abs(e[2]))[:2]
        assert list(rows["source"] + "->" + rows["target"]) == [e[1] for e in brute]
    firm = shown_edges(edges, 10, excluding_zero=True)
    assert "L0.H1->L3.H0" not in set(firm["source"] + "->" + firm["target"])
    assert "L1.FFN->readout" not in set(firm["source"] + "->" + firm["target"])
    assert len(firm) == sum(1 for e in EDGES if abs(e[2]) > e[3])


def test_the_page_draws_the_found_circuit_and_opens_a_head_in_the_inspector(circuit_run):
    at = show(open_app(circuit_run.parent), "Circuits")
    assert at.slider(key="circuit_k").value == 2  # the circuits' size
    shown = at.dataframe[0].value
    assert sorted(shown["value"].round(2)) == sorted([0.30, -0.20, 0.25, 0.15])
    assert at.image, "the circuit figure is drawn"
    at.slider(key="circuit_k").set_value(4).run()
    assert len(at.dataframe[0].value) == 4 + 3  # the teacher's four edges, the student's three
    at.checkbox(key="circuit_firm").check().run()
    assert np.all((at.dataframe[0].value["ci_low"] > 0) | (at.dataframe[0].value["ci_high"] < 0))
    at.selectbox(key="circuit_inspect_model").set_value("teacher-ft").run()
    at.selectbox(key="circuit_inspect_head").set_value("L1.H2").run()
    at.button(key="circuit_open").click().run()
    assert not at.exception
    assert at.session_state["page"] == "Head inspector"
    assert at.selectbox(key="inspect_model").value[1:] == ("teacher-ft", 0)
    assert (at.selectbox(key="inspect_layer").value, at.selectbox(key="inspect_head").value) == (1, 2)
