"""The report's answer to "Does compression rewire the bias circuit?" from the ``circuit_overlap`` findings
(:mod:`pipeline.findings.circuits`).

A student's circuit is *rewired* when the interval of its edge Jaccard overlap with the teacher's circuit lies
below 0.5 (fewer than half of the two circuits' edges are shared), *kept* when it lies above 0.5, and the data
cannot decide otherwise, or when the overlap has no interval (no per-example edge scores and no ``eap_edges``
table). Two edge sets are *not comparable* as circuits when either does not carry the circuit share of its model's
bias (``circuit_recovered`` below :data:`pipeline.method_registry.CIRCUIT_SHARE`: the edge budget ran out first;
such a set spent its whole budget, so its ``circuit_size`` is the budget the run used): the bias is spread over more
edges, and the overlap of two top-k lists says nothing about a circuit.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.findings.compute import Findings
from pipeline.method_registry import CIRCUIT_MAX_EDGES, CIRCUIT_SHARE
from pipeline.report.claims import Section, ci, fmt

__all__ = ["TITLE", "circuits_section", "verdict"]

TITLE = "RQ7 Does compression rewire the bias circuit?"
_HOW = (
    'Switch the circuit tables on with [attribution] extra_methods = ["eap", "circuit"] and attribute the '
    "fine-tuned teacher and at least one distilled student (attribution.variants)."
)

_INTERVALS = {
    "examples": "Intervals resample the examples that ranked the edges (the same draws for teacher and student when "
    "both were ranked on the same examples), re-rank the stored top edges and retake each circuit at its size; the "
    "percentile interval is widened to contain the overlap of the circuits themselves (nearly tied edges push the "
    "resampled overlaps below it).",
    "edge_scores": "Intervals draw every edge's EAP score within its bootstrap interval, independently, with each "
    "circuit's size fixed: they show how firmly the edge ranking fixes the overlap, not a joint resampling of "
    "examples (this run's circuit table holds no per-example edge scores).",
}
_BUDGET = "every edge of the graph" if CIRCUIT_MAX_EDGES is None else f"{CIRCUIT_MAX_EDGES} edges"
_CIRCUITS = (
    f"Circuits are the smallest top-EAP edge sets carrying {100 * CIRCUIT_SHARE:g}% of each model's bias, found on a "
    f"geometric grid of sizes refined by bisection within {_BUDGET} (circuit table, circuit_recovered); the "
    "bisection finds a crossing of the share, the smallest one where the faithfulness curve rises monotonically. "
    "One seed speaks about the trained models, not the compression method."
)


def verdict(row: pd.Series) -> str:
    """``rewired``, ``kept`` or ``undecided`` from an ``edge_jaccard`` row's interval (module docstring)."""
    low, high = row["ci_low"], row["ci_high"]
    if not (np.isfinite(low) and np.isfinite(high)):
        return "undecided"
    return "rewired" if high < 0.5 else "kept" if low > 0.5 else "undecided"


def _model_rows(f: Findings, metric: str) -> dict[tuple[str, int], float]:
    """(variant, seed) -> the ``circuit`` table's ``metric`` row (``circuit_recovered``: the share of its bias its
    circuit carries; ``circuit_size``); empty without the table."""
    circuit = (f.inputs | f.tables).get("circuit")
    if circuit is None:
        return {}
    rows = circuit[circuit["metric"] == metric]
    return {(str(v), int(s)): float(x) for v, s, x in zip(rows["variant"], rows["seed"], rows["value"])}


def _cannot(f: Findings) -> Section:
    """The refusal, with the rows the run holds of each table the answer needs (the table behind it)."""
    notes = [*f.missing.get("circuit_overlap", []), _HOW]
    if "circuit_overlap" in f.errors:
        notes.insert(0, f"circuit_overlap could not be computed: {f.errors['circuit_overlap']}")
    present = pd.DataFrame({"table": ["eap_edges", "circuit", "circuit_overlap"]})
    present["rows"] = [len((f.inputs | f.tables).get(n, ())) for n in present["table"]]
    return Section("circuits", TITLE, "Cannot decide: the run has no teacher and student circuits to compare.",
                   table=present, notes=list(dict.fromkeys(notes)),
                   short="Cannot decide: the run has no teacher and student circuits.")  # fmt: skip


def _edges(n: float) -> str:
    """``n`` edges (the budget a short circuit spent), or ``its budget`` when the size is not in the table."""
    return f"{int(n)} edges" if np.isfinite(n) else "its budget"


def circuits_section(f: Findings) -> Section:
    """Each student's circuit against the teacher's: edge and node overlap with intervals, and the verdict."""
    table = f.get("circuit_overlap")
    if table is None:
        return _cannot(f)
    numbers, verdicts, short = [], {}, {}
    recovered, sizes = _model_rows(f, "circuit_recovered"), _model_rows(f, "circuit_size")
    for (variant, seed), rows in table.groupby(["variant", "seed"], sort=True):
        by = rows.set_index("metric")
        teacher = (str(by.loc["edge_jaccard", "reference"]), int(by.loc["edge_jaccard", "reference_seed"]))
        models = ((teacher[0], teacher), (variant, (variant, seed)))
        shares = {name: (recovered.get(key, np.nan), sizes.get(key, np.nan)) for name, key in models}
        below = {name: x for name, x in shares.items() if np.isfinite(x[0]) and x[0] < CIRCUIT_SHARE}
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
        carried = ", ".join(f"{name} {fmt(100 * x, 2)}% within {_edges(n)}" for name, (x, n) in sorted(short.items()))
        answer += (f" Not comparable: no circuit carries {fmt(100 * CIRCUIT_SHARE, 2)}% of the bias within its edge "
                   f"budget ({carried}), so the top edge sets are not circuits and their overlap says nothing about "
                   "rewiring; the bias is spread over more edges, and a larger edge budget would decide.")  # fmt: skip
    notes = [_INTERVALS[r] for r in _INTERVALS if (table["resampled"] == r).any()] + [_CIRCUITS]
    if (table["resampled"] == "none").any():
        notes.append(
            "Some overlaps have no interval: their models have neither per-example edge scores nor an eap_edges table."
        )
    headline = "Bias circuit, teacher to student: " + "; ".join(parts) + "."
    return Section("circuits", TITLE, answer, numbers, table=table, notes=notes, short=headline)
