"""Bias circuits: the smallest set of edges, ranked by EAP, that carries a stated share of the model's bias,
confirmed by exact edge patching on examples not used to rank them.

How much bias a set of edges ``C`` carries: run the gender-swapped twin with every edge *outside* ``C`` frozen to
the text's contribution (:meth:`~attribution.eap.EdgeAttributionPatching.patched`), so the swap reaches the
readout only along ``C``. With ``M_C`` that run's metric, ``M_0`` the run with every edge frozen (``C`` empty) and
``M_G`` the plain twin run (every edge kept), per example (with the gender sign of :mod:`attribution.eap`):

- bias carried by ``C`` = ``M_C - M_0``; the model's bias = ``M_G - M_0``; ``recovered`` = the ratio of the means.
- bias left when ``C`` is removed (completeness) = ``M_(G minus C) - M_0``, as a share of the model's bias.

``M_0`` is the text's own metric up to the LayerNorm constants of the twin pass (:mod:`attribution.eap_graph`);
measuring from ``M_0`` makes the empty set carry exactly 0 and the whole graph exactly 1.
The faithfulness curve gives ``recovered`` for the top ``k`` edges, ``k = 1..max_edges``, beside the mean over
``n_random`` random edge sets of the same size (the baseline).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from attribution.batching import check_batch_size, example_chunks
from attribution.data import AttributionData, split_rows
from attribution.eap import EdgeAttributionPatching
from attribution.eap_graph import Node

__all__ = ["Circuit", "carried", "find_circuit"]

Edge = tuple[Node, Node]


@dataclass(frozen=True)
class Circuit:
    """A found circuit.

    Attributes:
        edges: the circuit, best EAP score first.
        recovered: share of the model's bias the circuit carries, on the confirmation examples.
        left: share of the bias left when the circuit is removed (completeness: 0 = complete).
        random_left: the same for random edge sets of the circuit's size (mean over the sets).
        curve: the faithfulness curve: ``k``, ``kept`` (``top`` or ``random``), ``recovered``.
        ranking: every edge's mean EAP score on the selection examples, best first (``source``, ``target`` with
            original head ids, ``eap``).
    """

    edges: list[Edge]
    recovered: float
    left: float
    random_left: float
    curve: pd.DataFrame
    ranking: pd.DataFrame


def carried(eap: EdgeAttributionPatching, data: AttributionData, sets: list[list[Edge]], *, keep: bool = True,
            batch_size: int = 16) -> tuple[Tensor, Tensor]:  # fmt: skip
    """Per-example bias carried by each edge set (``keep``: only its edges live) or left without it (``keep=False``:
    its edges frozen), and the model's bias: ((n_sets, n_ex), (n_ex,)), both from ``M_0`` (module docstring)."""
    check_batch_size(batch_size)
    graph, out, total = eap.graph, [], []
    for ex in example_chunks(len(data), batch_size):
        batch = data.batch(ex, eap.loaded.device)
        clean, sign = eap.contributions(batch, "orig"), eap.sign(batch)
        frozen = eap.patched(batch, graph.mask.double(), run="cf", reference=clean)
        with torch.no_grad():
            total.append(((eap.metric(batch, "cf") - frozen) * sign).cpu())
        rows = []
        for edges in sets:
            chosen = torch.zeros(graph.mask.shape, dtype=torch.float64)
            for u, v in edges:
                chosen[graph.row[u], graph.col[v]] = 1.0
            gates = graph.mask.double() - chosen if keep else chosen
            rows.append(((eap.patched(batch, gates, run="cf", reference=clean) - frozen) * sign).cpu())
        out.append(torch.stack(rows))
    return torch.cat(out, dim=1), torch.cat(total)


def _share(values: Tensor, total: Tensor) -> np.ndarray:
    return (values.double().mean(-1) / total.double().mean()).numpy()


def find_circuit(
    eap: EdgeAttributionPatching,
    data: AttributionData,
    *,
    share: float = 0.8,
    max_edges: int = 20,
    n_random: int = 5,
    steps: int = 0,
    seed: int = 0,
    batch_size: int = 16,
) -> Circuit:
    """Rank edges by |mean EAP score| on one half of ``data`` (:func:`attribution.data.split_rows` with ``seed``);
    on the other half, the circuit is the smallest top-k (``k <= max_edges``) whose edges alone carry ``share`` of
    the bias (all ``max_edges`` if none does). Pairs whose twin changes token length are left out.

    Raises:
        ValueError: ``share`` outside (0, 1], or ``max_edges`` < 1.
    """
    if not 0 < share <= 1 or max_edges < 1:
        raise ValueError(f"share={share} must be in (0, 1] and max_edges={max_edges} at least 1.")
    data = eap.pairs(data)
    select, confirm = (data.subset(rows) for rows in split_rows(len(data), seed))
    scores = eap.estimates(select, batch_size=batch_size, steps=steps).double().mean(0)  # (writer, reader)
    edges = list(eap.graph.edges())
    mean = np.array([float(scores[eap.graph.row[u], eap.graph.col[v]]) for u, v in edges])
    order = np.argsort(-np.abs(mean), kind="stable")
    ranked = [edges[i] for i in order]
    ks = list(range(1, min(max_edges, len(edges)) + 1))
    rng = np.random.default_rng(seed)
    randoms = [[[edges[i] for i in rng.choice(len(edges), k, replace=False)] for _ in range(n_random)] for k in ks]
    top, total = carried(eap, confirm, [ranked[:k] for k in ks], batch_size=batch_size)
    rand, _ = carried(eap, confirm, [s for sets in randoms for s in sets], batch_size=batch_size)
    top_share = _share(top, total)
    rand_share = _share(rand, total).reshape(len(ks), n_random).mean(1)
    reached = np.flatnonzero(top_share >= share)
    size = ks[reached[0]] if len(reached) else ks[-1]
    circuit = ranked[:size]
    left, _ = carried(eap, confirm, [circuit] + randoms[size - 1], keep=False, batch_size=batch_size)
    left_share = _share(left, total)
    curve = pd.DataFrame({"k": ks * 2, "kept": ["top"] * len(ks) + ["random"] * len(ks),
                          "recovered": np.concatenate([top_share, rand_share])})  # fmt: skip
    names = [(eap.graph.original(u).name, eap.graph.original(v).name) for u, v in ranked]
    ranking = pd.DataFrame({"source": [u for u, _ in names], "target": [v for _, v in names],
                            "eap": mean[order]})  # fmt: skip
    return Circuit(circuit, float(top_share[size - 1]), float(left_share[0]), float(left_share[1:].mean()), curve,
                   ranking)  # fmt: skip
