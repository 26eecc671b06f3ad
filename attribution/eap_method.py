"""The runners of the ``eap_edges`` and ``circuit`` records of the method registry: EAP edge scores and the bias
circuit of a variant, written as tidy ``edge`` rows (:mod:`pipeline.schema`: the reader's layer and head, the edge
name in ``subset``, the sender in ``source``, ``source_layer``, ``source_head``).

Both explain the single-view form of the skew-oriented gap (:func:`attribution.analysis.patching_score`) with the
gender-swapped twins, so a score without twins (SEAT, masked LMs) or a non-BERT encoder gets one skipped row.
Fixed settings: plain EAP (no IG steps), exact confirmation of the top 20 edges, a circuit carrying
``CIRCUIT_SHARE`` (80%) of the bias within ``CIRCUIT_MAX_EDGES`` edges (None: every edge of the graph, scanned on the
grid of :func:`attribution.circuit.edge_grid`), 5 random edge sets per grid size.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from attribution.analysis import AttributionJob, patching_score
from attribution.circuit import Circuit, find_circuit
from attribution.data import split_rows
from attribution.eap import EdgeAttributionPatching
from attribution.eap_graph import Node
from pipeline.method_registry import CIRCUIT_MAX_EDGES, CIRCUIT_SHARE
from pipeline.schema import tidy

__all__ = ["CIRCUIT_MAX_EDGES", "CIRCUIT_SHARE", "circuit_rows", "edge_frame", "run_circuit", "run_eap"]

N_RANDOM, CONFIRM_TOP = 5, 20


def _skipped(metric: str, reason: str) -> pd.DataFrame:
    return tidy([{"unit": "model", "metric": metric, "value": np.nan, "skipped": reason}], variant="")


def _patcher(job: AttributionJob) -> EdgeAttributionPatching | str:
    """The EAP object of ``job``, or why it cannot run."""
    score = patching_score(job.score)
    if score is None or not job.data.has_counterfactual:
        return f"{job.score!r} on {job.data.name!r} has no gender-swapped twins"
    if job.loaded.anatomy.family != "bert":
        return f"edge attribution supports BERT-shaped encoders; {job.loaded.anatomy.family!r} is not one"
    return EdgeAttributionPatching(job.loaded, score)


def edge_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """:meth:`EdgeAttributionPatching.attribute`'s frame (or any frame with ``source``, ``target``, their layers and
    heads) as tidy ``edge`` rows."""
    out = frame.rename(columns={"target_layer": "layer", "target_head": "head"})
    out["subset"] = out["source"] + "->" + out["target"]
    return tidy(out.assign(unit="edge"), variant="")


def run_eap(job: AttributionJob) -> pd.DataFrame:
    """EAP score of every edge with its interval, p and q, the top edges confirmed by exact edge patching."""
    eap = _patcher(job)
    if isinstance(eap, str):
        return _skipped("eap", eap)
    cfg = job.cfg
    frame = eap.attribute(job.data, confirm_top=CONFIRM_TOP, batch_size=cfg.batch_size, **job.common)
    return edge_frame(frame)


def _keys(u: Node, v: Node) -> dict:
    return {"source": u.name, "target": v.name, "source_layer": u.layer, "source_head": u.head,
            "target_layer": v.layer, "target_head": v.head}  # fmt: skip


def _example_rows(circuit: Circuit, eap: EdgeAttributionPatching, examples: np.ndarray) -> pd.DataFrame:
    """Per-example EAP scores of the stored top edges (metric ``edge_example_eap``, ``rank`` from 1, ``example``:
    the pair's row in the attributed data, as ``head_examples`` writes it)."""
    n_ex, n_edges = circuit.example_scores.shape
    keys = pd.DataFrame([_keys(eap.graph.original(u), eap.graph.original(v)) for u, v in circuit.stored])
    rows = keys.loc[np.repeat(np.arange(n_edges), n_ex)].reset_index(drop=True)
    return rows.assign(metric="edge_example_eap", value=circuit.example_scores.T.ravel(),
                       rank=np.repeat(np.arange(1, n_edges + 1), n_ex), example=np.tile(examples, n_edges), n=1)  # fmt: skip


def circuit_rows(circuit: Circuit, eap: EdgeAttributionPatching, n_confirm: int, examples: np.ndarray) -> pd.DataFrame:
    """The circuit as tidy rows: its edges (metric ``circuit_edge``: mean EAP score, ``rank`` from 1), the shares
    (``circuit_recovered``, ``circuit_left``, ``circuit_random_left``), ``circuit_size`` (the whole budget when the
    share was not reached), the faithfulness curve (metric ``faithfulness``, ``subset`` ``top`` or
    ``random``, column ``k``) and the per-example scores of the top edges on the selection half (``edge_example_eap``,
    :func:`attribution.circuit.n_stored` edges; ``examples``: the attributed data's row of each selection
    example), which the findings resample by example."""
    original = [(eap.graph.original(u), eap.graph.original(v)) for u, v in circuit.edges]
    edges = pd.DataFrame([_keys(u, v) for u, v in original])
    edges = edges.assign(metric="circuit_edge", value=circuit.ranking["eap"].to_numpy()[: len(original)],
                         rank=np.arange(1, len(original) + 1), n=n_confirm)  # fmt: skip
    shares = {"circuit_recovered": circuit.recovered, "circuit_left": circuit.left,
              "circuit_random_left": circuit.random_left, "circuit_size": float(len(original))}  # fmt: skip
    model = tidy([{"metric": m, "value": v, "n": n_confirm} for m, v in shares.items()], variant="")
    curve = circuit.curve.rename(columns={"kept": "subset", "recovered": "value"})
    curve = tidy(curve.assign(metric="faithfulness", n=n_confirm), variant="")
    per_example = edge_frame(_example_rows(circuit, eap, examples))
    return pd.concat([edge_frame(edges), model, curve, per_example], ignore_index=True)


def run_circuit(job: AttributionJob) -> pd.DataFrame:
    """The smallest top-EAP edge set carrying ``CIRCUIT_SHARE`` of the bias, with its faithfulness curve and
    completeness, measured on the examples not used to rank the edges."""
    eap = _patcher(job)
    if isinstance(eap, str):
        return _skipped("circuit", eap)
    cfg = job.cfg
    kept = eap.pairs(job.data)
    if len(kept) < 2:
        return _skipped("circuit", f"{len(kept)} aligned pair(s): too few to rank edges on one half, test on the other")
    circuit = find_circuit(eap, kept, share=CIRCUIT_SHARE, max_edges=CIRCUIT_MAX_EDGES, n_random=N_RANDOM,
                           seed=cfg.seed, batch_size=cfg.batch_size)  # fmt: skip
    examples = job.data.aligned_rows()[circuit.examples]
    return circuit_rows(circuit, eap, len(split_rows(len(kept), cfg.seed)[1]), examples)
