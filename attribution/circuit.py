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

The edge budget: the top ``k`` edges are measured for ``k`` on a geometric grid (:func:`edge_grid`: 1, 2, 3, 5, 8,
13, 21, 34, 54, 86, 138, ..., each point about 1.6 times the last, ending at every edge of the graph or at the cap
``max_edges``), the scan stopping at the first grid ``k`` that carries the share; a bisection between that ``k``
and the grid point before it then gives the circuit (:func:`smallest_k`). ``recovered`` need not grow with ``k``
(an edge can cancel another's bias), so the bisection finds *a* crossing of the share in that interval, the
smallest ``k`` only where the curve is monotone there. The faithfulness curve holds every measured ``k`` (grid and
bisection points) and, at the grid points, the mean over ``n_random`` random edge sets of the same size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from attribution.batching import check_batch_size, example_chunks
from attribution.data import AttributionData, split_rows
from attribution.eap import EdgeAttributionPatching
from attribution.eap_graph import Node

__all__ = ["GROWTH", "Circuit", "carried", "edge_grid", "find_circuit", "n_stored", "smallest_k"]

Edge = tuple[Node, Node]
GROWTH = 1.6  # ratio of consecutive grid sizes


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
        stored: the top :func:`n_stored` edges of the ranking, best first.
        examples: row ids (in the aligned pairs of the data given to :func:`find_circuit`) of the selection examples.
        example_scores: per-example EAP scores of the ``stored`` edges: (n selection examples, n stored edges).
    """

    edges: list[Edge]
    recovered: float
    left: float
    random_left: float
    curve: pd.DataFrame
    ranking: pd.DataFrame
    stored: list[Edge]
    examples: np.ndarray
    example_scores: np.ndarray


def edge_grid(n_edges: int, max_edges: int | None = None) -> list[int]:
    """Circuit sizes to scan: 1, then each point ``max(last + 1, round(GROWTH * last))``, ending with the budget
    ``min(n_edges, max_edges)`` (about ``log(budget) / log(1.6)`` points: 21 for 12,000 edges)."""
    budget = n_edges if max_edges is None else min(n_edges, max_edges)
    if budget < 1:
        raise ValueError(f"an edge budget of {budget} (n_edges={n_edges}, max_edges={max_edges}) holds no circuit.")
    grid = [1]
    while grid[-1] < budget:
        grid.append(min(budget, max(grid[-1] + 1, round(GROWTH * grid[-1]))))
    return grid


def smallest_k(recovered: Callable[[int], float], grid: list[int], share: float) -> tuple[int, dict[int, float]]:
    """Scan ``grid`` in order until ``recovered(k) >= share``, then bisect between that point and the one before
    (0 before the first: the empty set carries nothing); the circuit size and every measured ``recovered(k)``.

    Calls ``recovered`` at most once per grid point up to the crossing plus ``ceil(log2(gap))`` times for a gap
    between grid points. Exact for a curve that is monotone between the two points; otherwise *a* crossing. Without
    any crossing, the last grid point."""
    seen: dict[int, float] = {}
    low = 0
    for k in grid:
        seen[k] = recovered(k)
        if seen[k] >= share:
            break
        low = k
    else:
        return grid[-1], seen
    high = k
    while high - low > 1:
        mid = (low + high) // 2
        seen[mid] = recovered(mid)
        low, high = (low, mid) if seen[mid] >= share else (mid, high)
    return high, seen


def n_stored(size: int, n_edges: int) -> int:
    """How many top edges keep their per-example scores: ``max(4 * size, 200)``, at most every edge. Resampling
    examples rarely lifts an edge from below rank ``4 * size`` into the top ``size``."""
    return min(n_edges, max(4 * size, 200))


def carried(eap: EdgeAttributionPatching, data: AttributionData, sets: list[list[Edge]], *, keep: bool = True,
            batch_size: int = 16) -> tuple[Tensor, Tensor]:  # fmt: skip
    """Per-example bias carried by each edge set (``keep``: only its edges live) or left without it (``keep=False``:
    its edges frozen), and the model's bias: ((n_sets, n_ex), (n_ex,)), both from ``M_0`` (module docstring).

    Cost per example: 3 passes (text contributions, all edges frozen, the plain twin) plus one per set."""
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
    max_edges: int | None = None,
    n_random: int = 5,
    steps: int = 0,
    seed: int = 0,
    batch_size: int = 16,
) -> Circuit:
    """Rank edges by |mean EAP score| on one half of ``data`` (:func:`attribution.data.split_rows` with ``seed``);
    on the other half, the circuit is the top-k found by :func:`smallest_k` on :func:`edge_grid` whose edges alone
    carry ``share`` of the bias (the whole budget if none does). Pairs whose twin changes token length are left out.

    Cost on each confirmation example, with ``g`` grid points scanned and ``b`` bisection steps: ``g (4 +
    n_random) + 4 b + 4 + n_random`` forward passes (:func:`carried`; a circuit of about 70 edges: ``g = 10``,
    ``b = 5``, 119 passes with 5 random sets; every ``k`` up to 20 costs 135).

    Raises:
        ValueError: ``share`` outside (0, 1], or ``max_edges`` < 1.
    """
    if not 0 < share <= 1 or (max_edges is not None and max_edges < 1):
        raise ValueError(f"share={share} must be in (0, 1] and max_edges={max_edges} at least 1 (or None: no cap).")
    data = eap.pairs(data)
    select_rows, confirm_rows = split_rows(len(data), seed)
    select, confirm = data.subset(select_rows), data.subset(confirm_rows)
    per_example = eap.estimates(select, batch_size=batch_size, steps=steps).double()  # (n, writer, reader)
    edges = list(eap.graph.edges())
    rows, cols = [eap.graph.row[u] for u, _ in edges], [eap.graph.col[v] for _, v in edges]
    scores = per_example[:, rows, cols].numpy()  # (n, edge)
    mean = scores.mean(0)
    order = np.argsort(-np.abs(mean), kind="stable")
    ranked = [edges[i] for i in order]
    rng = np.random.default_rng(seed)
    random = lambda k: [[edges[i] for i in rng.choice(len(edges), k, replace=False)] for _ in range(n_random)]
    grid = edge_grid(len(edges), max_edges)
    baseline: dict[int, float] = {}

    def recovered(k: int) -> float:
        sets = [ranked[:k]] + (random(k) if k in grid else [])
        values, total = carried(eap, confirm, sets, batch_size=batch_size)
        shares = _share(values, total)
        if k in grid:
            baseline[k] = float(shares[1:].mean())
        return float(shares[0])

    size, top = smallest_k(recovered, grid, share)
    circuit = ranked[:size]
    left, total = carried(eap, confirm, [circuit] + random(size), keep=False, batch_size=batch_size)
    left_share = _share(left, total)
    ks, rand = sorted(top), sorted(baseline)
    curve = pd.DataFrame({"k": ks + rand, "kept": ["top"] * len(ks) + ["random"] * len(rand),
                          "recovered": [top[k] for k in ks] + [baseline[k] for k in rand]})  # fmt: skip
    names = [(eap.graph.original(u).name, eap.graph.original(v).name) for u, v in ranked]
    ranking = pd.DataFrame({"source": [u for u, _ in names], "target": [v for _, v in names],
                            "eap": mean[order]})  # fmt: skip
    kept = order[: n_stored(size, len(edges))]
    return Circuit(circuit, top[size], float(left_share[0]), float(left_share[1:].mean()), curve, ranking,
                   ranked[: len(kept)], select_rows, scores[:, kept])  # fmt: skip
