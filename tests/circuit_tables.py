"""Hand-built ``circuit`` and ``eap_edges`` tables for the circuit figure's tests (tests/ is on the import path)."""

from __future__ import annotations

import pandas as pd

from pipeline.schema import tidy


def _edge(name: str, variant: str, metric: str, value: float) -> dict:
    source, target = name.split("->")
    layer = lambda n: int(n[1:].split(".")[0]) if n.startswith("L") else -1
    head = lambda n: int(n.split(".H")[1]) if ".H" in n else -1
    return {"variant": variant, "unit": "edge", "metric": metric, "value": value, "subset": name, "source": source,
            "target": target, "source_layer": layer(source), "source_head": head(source), "layer": layer(target),
            "head": head(target)}  # fmt: skip


def circuit_tables(n_teacher: int = 12, n_student: int = 6) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(circuit, eap_edges) of a teacher with ``n_teacher`` layers of 12 heads beside a student with ``n_student``:
    four circuit edges each (one negative), every embedding edge scored 0 (they give the models' shapes)."""
    circuit, edges = [], []
    for variant, n in (("teacher-ft", n_teacher), ("distil-ft_before", n_student)):
        names = ["emb->L0.H1", f"L0.H1->L{n - 1}.H11", f"L{n - 1}.H11->readout", "L0.FFN->readout"]
        circuit += [_edge(e, variant, "circuit_edge", v) for e, v in zip(names, (0.3, 0.2, 0.1, -0.05), strict=True)]
        circuit.append({"variant": variant, "unit": "model", "metric": "circuit_recovered", "value": 0.85})
        edges += [_edge(f"emb->L{l}.H{h}", variant, "eap", 0.0) for l in range(n) for h in range(12)]
    return tidy(circuit, seed=0), tidy(edges, seed=0)
