"""Bias-aware head pruning, in the spirit of FASP (Zayed et al. 2024, "Fairness-Aware Structured Pruning in
Transformers", AAAI), beside importance pruning at the same head count (Michel et al. 2019).

Every head gets two scores on the model about to be pruned: its *bias effect*, how much removing it alone lowers
the model's bias on the dev split (single-head zero ablation of the counterfactual gap; computed by the caller, see
:mod:`pipeline.runs.mitigation_build`, because the ablation engine sits on the analysis floor), and its
*importance* for the task, ``E|dL/dg_h|`` (:func:`pipeline.compress.prune.head_importance`). The share ``protect``
of heads most important for the task is never removed (FASP's gamma); among the others the ``n`` heads with the
largest bias effect are removed, physically (:func:`pipeline.compress.prune.remove_heads`), each layer keeping at
least one head. Importance pruning at the same count removes the ``n`` least important heads under the same
one-head-per-layer rule, so the two variants differ only in which heads go.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from pipeline.anatomy import Anatomy
from pipeline.compress.prune import remove_heads

__all__ = ["PruneChoice", "bias_prune", "heads_to_remove", "importance_prune", "protected_heads", "select_removal"]

Head = tuple[int, int]  # (layer, position among the layer's current heads)


@dataclass(frozen=True)
class PruneChoice:
    """Which heads went: ``removed`` and ``protected`` as (layer, position), ``kept`` as original ids per layer."""

    removed: tuple[Head, ...]
    protected: tuple[Head, ...]
    kept: list[list[int]]


def heads_to_remove(
    heads_per_layer: tuple[int, ...], *, count: int | None = None, fraction: float | None = None
) -> int:
    """The number of heads to remove: ``count``, or ``round(fraction * heads)``.

    Raises:
        ValueError: neither or both given, or more than the model can lose while each layer keeps one head.
    """
    if (count is None) == (fraction is None):
        raise ValueError("give the number of heads to remove (count) or their share (fraction), not both.")
    total, n_layers = sum(heads_per_layer), len(heads_per_layer)
    n = int(count) if count is not None else round(float(fraction) * total)
    asked = f"{count} heads" if count is not None else f"fraction {fraction} ({n} of {total} heads)"
    if n < 1 or n > total - n_layers:
        raise ValueError(
            f"cannot remove {asked}: the model has {total} heads in {n_layers} layers "
            f"({list(heads_per_layer)} per layer) and each layer keeps at least one, so "
            f"1..{total - n_layers} heads can go. Fix: ask for fewer heads."
        )
    return n


def _present(scores: Tensor) -> list[tuple[float, int, int]]:
    return [
        (float(scores[l, h]), l, h)
        for l in range(scores.shape[0])
        for h in range(scores.shape[1])
        if not torch.isnan(scores[l, h])
    ]


def protected_heads(importance: Float[Tensor, "layer head"], share: float) -> set[Head]:
    """The ``round(share * heads)`` heads with the largest task importance (NaN = absent head)."""
    if not 0.0 <= share < 1.0:
        raise ValueError(f"protect={share!r} must lie in [0, 1): the share of heads kept for accuracy.")
    present = sorted(_present(importance), key=lambda t: (-t[0], t[1], t[2]))
    return {(l, h) for _, l, h in present[: round(share * len(present))]}


def select_removal(
    scores: Float[Tensor, "layer head"], n_remove: int, *, protected: set[Head] | frozenset[Head] = frozenset()
) -> tuple[list[list[int]], list[Head]]:
    """Remove the ``n_remove`` highest-scoring heads (ties by layer, head), never a protected one, never a layer's
    last; returns (positions kept per layer, heads removed in order).

    Raises:
        ValueError: fewer than ``n_remove`` heads can go under these rules.
    """
    present = _present(scores)
    keep = {l: {h for _, ll, h in present if ll == l} for l in range(scores.shape[0])}
    removed: list[Head] = []
    for _, layer, head in sorted(present, key=lambda t: (-t[0], t[1], t[2])):
        if len(removed) == n_remove:
            break
        if (layer, head) not in protected and len(keep[layer]) > 1:
            keep[layer].discard(head)
            removed.append((layer, head))
    if len(removed) < n_remove:
        raise ValueError(
            f"only {len(removed)} of the {n_remove} heads asked for can be removed: {len(protected)} "
            "are protected for accuracy and each layer keeps one head. Fix: lower the number of heads "
            "or compress.biasprune.protect."
        )
    return [sorted(keep[l]) for l in range(scores.shape[0])], removed


def bias_prune(
    anatomy: Anatomy,
    bias_effect: Float[Tensor, "layer head"],
    importance: Float[Tensor, "layer head"],
    n_remove: int,
    *,
    protect: float = 0.0,
) -> PruneChoice:
    """Remove in place the ``n_remove`` unprotected heads whose removal lowers bias most (largest ``bias_effect``),
    protecting the ``protect`` share most important for the task."""
    _check_shapes(anatomy, bias_effect, importance)
    guard = protected_heads(importance, protect)
    keep, removed = select_removal(bias_effect, n_remove, protected=guard)
    return PruneChoice(tuple(removed), tuple(sorted(guard)), remove_heads(anatomy, keep))


def importance_prune(anatomy: Anatomy, importance: Float[Tensor, "layer head"], n_remove: int) -> PruneChoice:
    """Remove in place the ``n_remove`` least important heads (Michel et al. 2019), each layer keeping one."""
    _check_shapes(anatomy, importance, importance)
    keep, removed = select_removal(-importance, n_remove)
    return PruneChoice(tuple(removed), (), remove_heads(anatomy, keep))


def _check_shapes(anatomy: Anatomy, *scores: Tensor) -> None:
    for s in scores:
        if tuple(s.shape) != (anatomy.n_layers, anatomy.n_heads):
            raise ValueError(
                f"head scores have shape {tuple(s.shape)}; the model has (layer, head) = "
                f"{(anatomy.n_layers, anatomy.n_heads)}."
            )
