"""The report's answer to "Does compression rewire the bias circuit?" from the ``circuit_overlap`` findings
(:mod:`pipeline.findings.circuits`).

A student's circuit is *rewired* when the interval of its edge Jaccard overlap with the teacher's circuit lies
below 0.5 (fewer than half of the two circuits' edges are shared), *kept* when it lies above 0.5, and the data
cannot decide otherwise, or when the overlap has no interval (no ``eap_edges`` table). Two edge sets are *not
comparable* as circuits when either does not carry the circuit share of its model's bias (``circuit_recovered``
below :data:`pipeline.method_registry.CIRCUIT_SHARE`: the edge budget ran out first): the bias is spread over more
edges, and the overlap of two top-k lists says nothing about a circuit.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.findings.compute import Findings
from pipeline.method_registry import CIRCUIT_SHARE, MAX_EDGES
from pipeline.report.claims import Section, ci, fmt

__all__ = ["TITLE", "circuits_section", "verdict"]

TITLE = "RQ7 Does compression rewire the bias circuit?"
_HOW = (
    'Switch the circuit tables on with [attribution] extra_methods = ["eap", "circuit"] and attribute the '
    "fine-tuned teacher and at least one distilled student (attribution.variants)."
)

_INTERVALS = (
    "Intervals draw every edge's EAP score within its bootstrap interval, independently, with each circuit's size "
    "fixed: they show how firmly the edge ranking fixes the overlap, not a joint resampling of examples (per-example "
    "edge scores are not stored)."
)
_CIRCUITS = (
    "Circuits are the smallest top-EAP edge sets carrying 80% of each model's bias within 20 edges (circuit table, "
    "circuit_recovered); one seed speaks about the trained models, not the compression method."
)


def verdict(row: pd.Series) -> str:
    """``rewired``, ``kept`` or ``undecided`` from an ``edge_jaccard`` row's interval (module docstring)."""
    low, high = row["ci_low"], row["ci_high"]
    if not (np.isfinite(low) and np.isfinite(high)):
        return "undecided"
    return "rewired" if high < 0.5 else "kept" if low > 0.5 else "undecided"


def _recovered(f: Findings) -> dict[tuple[str, int], float]:
    """(variant, seed) -> the share of its bias its circuit carries (``circuit`` table; empty without it)."""
    circuit = (f.inputs | f.tables).get("circuit")
    if circuit is None:
        return {}
    rows = circuit[circuit["metric"] == "circuit_recovered"]
    return {(str(v), int(s)): float(x) for v, s, x in zip(rows["variant"], rows["seed"], rows["value"])}


def _cannot(f: Findings) -> Section:
    """The refusal, with the rows the run holds of each table the answer needs (the table behind it)."""
    notes = [*f.missing.get("circuit_overlap", []), _HOW]
    if "circuit_overlap" in f.errors:
        notes.insert(0, f"circuit_overlap could not be computed: {f.errors['circuit_overlap']}")
    present = pd.DataFrame({"table": ["eap_edges", "circuit", "circuit_overlap"]})
    present["rows"] = [len((f.inputs | f.tables).get(n, ())) for n in present["table"]]
    return Section("circuits", TITLE, "Cannot decide: the run has no teacher and student circuits to compare.",
                   table=present, notes=list(dict.fromkeys(notes)))  # fmt: skip


def circuits_section(f: Findings) -> Section:
    """Each student's circuit against the teacher's: edge and node overlap with intervals, and the verdict."""
    table = f.get("circuit_overlap")
    if table is None:
        return _cannot(f)
    numbers, verdicts, short = [], {}, {}
    recovered = _recovered(f)
    for (variant, seed), rows in table.groupby(["variant", "seed"], sort=True):
        by = rows.set_index("metric")
        teacher = (str(by.loc["edge_jaccard", "reference"]), int(by.loc["edge_jaccard", "reference_seed"]))
        shares = {name: recovered.get(key, np.nan) for name, key in ((teacher[0], teacher), (variant, (variant, seed)))}
        below = {name: x for name, x in shares.items() if np.isfinite(x) and x < CIRCUIT_SHARE}
        word = "not comparable" if below else verdict(by.loc["edge_jaccard"])
        short.update(below)
        verdicts.setdefault(word, []).append(variant)
        numbers.append(
            f"{variant} (seed {seed}) vs {by.loc['edge_jaccard', 'reference']}: edge Jaccard "
            f"{ci(by.loc['edge_jaccard'])}, node Jaccard {ci(by.loc['node_jaccard'])}, teacher edges kept "
            f"{ci(by.loc['teacher_edges_kept'])} ({int(by.loc['edge_jaccard', 'student_edges'])} vs "
            f"{int(by.loc['edge_jaccard', 'teacher_edges'])} circuit edges, layer map "
            f"{by.loc['edge_jaccard', 'layer_map']}, {fmt(by.loc['teacher_unmapped', 'value'])} teacher edge(s) "
            f"in layers the student lacks); {word}"
        )
    parts = [f"{word} for {', '.join(v)}" for word, v in sorted(verdicts.items())]
    answer = "Bias circuit, teacher to student: " + "; ".join(parts) + "."
    if "undecided" in verdicts:
        answer += " Where undecided, the data cannot decide: the overlap interval spans 0.5 or is missing."
    if short:
        carried = ", ".join(f"{name} {fmt(100 * x, 2)}%" for name, x in sorted(short.items()))
        answer += (f" Not comparable: within {MAX_EDGES} edges no circuit carries {fmt(100 * CIRCUIT_SHARE, 2)}% of "
                   f"the bias ({carried} of it), so the top edge sets are not circuits and their overlap says nothing "
                   "about rewiring; the bias is spread over more edges, and a larger edge budget would decide.")  # fmt: skip
    notes = [_INTERVALS, _CIRCUITS]
    if (table["resampled"] == "none").any():
        notes.append("Some overlaps have no interval: the eap_edges table is missing for their models.")
    return Section("circuits", TITLE, answer, numbers, table=table, notes=notes)
