"""Bias-aware pruning curves: bias and accuracy as heads are removed in bias order, in importance order and at
random, on the same examples (docs/DESIGN.md section 9; Zayed et al. 2024, Michel et al. 2019).

Orders of removal over all heads of the model:

- ``bias``: by bias effect, largest first (:func:`head_bias_effects`: how much switching the head off alone lowers
  the bias), the ``protect`` share of heads most important for the task last (FASP's protection);
- ``importance``: by task importance ``E|dL/dg_h|`` (Michel et al.; l2-normalised per layer), least first;
- ``random``: ``n_random`` seeded permutations, averaged.

At each step k the first k heads of the order are switched off together (zero ablation: what physical pruning
does) and every example is scored: the counterfactual gap (``cf_gap``, signed mean), the bias (``abs_cf_gap``,
mean |gap|) and the accuracy, each with a bootstrap interval over examples. Random rows average the values and the
interval bounds over the permutations and add the range over permutations (``order_min``, ``order_max``).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from attribution.data import AttributionData
from attribution.effect_rows import mean_ci
from attribution.engine import evaluate
from attribution.importance import GradientHeadImportance
from attribution.scores import CounterfactualGap, TaskLoss
from attribution.sweep import fast_sweep
from pipeline.gates import ones_gates
from pipeline.models import LoadedModel
from pipeline.schema import tidy

__all__ = ["ORDERS", "bias_of", "head_bias_effects", "pruning_curve", "task_importance"]

ORDERS: tuple[str, ...] = ("bias", "importance", "random")
Objective = Literal["abs_gap", "gap"]
_METRICS = ("cf_gap", "abs_cf_gap", "accuracy")


def bias_of(gaps: Float[Tensor, "... n"], objective: Objective) -> Tensor:
    """The bias a set of per-example counterfactual gaps amounts to: mean |gap| (``abs_gap``) or |mean gap|."""
    return gaps.abs().mean(-1) if objective == "abs_gap" else gaps.mean(-1).abs()


@torch.no_grad()
def head_bias_effects(
    loaded: LoadedModel, data: AttributionData, *, objective: Objective = "abs_gap", batch_size: int = 64
) -> tuple[Float[Tensor, "layer head"], float]:
    """``bias(intact) - bias(head off)`` for every head (zero ablation on the prefix-cached sweep), NaN for heads a
    pruned layer lacks, and the intact model's bias."""
    score, anatomy = CounterfactualGap(), loaded.anatomy
    intact = evaluate(loaded, score, data, ones_gates(anatomy, batch=1), batch_size=batch_size).values[0]
    swept, heads = fast_sweep(loaded, score, data, batch_size=batch_size, progress=False)
    before, after = bias_of(intact, objective), bias_of(swept.values, objective)
    effect = torch.full((anatomy.n_layers, anatomy.n_heads), float("nan"))
    for c, (layer, head) in enumerate(heads):
        effect[layer, head] = float(before - after[c])
    return effect, float(before)


def task_importance(loaded: LoadedModel, data: AttributionData, *, batch_size: int = 32) -> Float[Tensor, "layer head"]:
    """Michel et al.'s ``E|dL/dg_h|`` of the task loss, l2-normalised within each layer; NaN for absent heads."""
    grads = GradientHeadImportance(loaded, TaskLoss()).gradients(data, batch_size=batch_size, progress=False)
    importance = grads.abs().mean(0)  # (layer, head)
    importance = importance / importance.norm(dim=1, keepdim=True).clamp_min(1e-12)
    for layer, n in enumerate(loaded.anatomy.heads_per_layer):
        importance[layer, n:] = float("nan")
    return importance


def _order(scores: Tensor, *, descending: bool, last: set[tuple[int, int]] = frozenset()) -> list[tuple[int, int]]:
    present = [
        (float(scores[l, h]), l, h)
        for l in range(scores.shape[0])
        for h in range(scores.shape[1])
        if not torch.isnan(scores[l, h])
    ]
    key = lambda t: ((t[1], t[2]) in last, -t[0] if descending else t[0], t[1], t[2])
    return [(l, h) for _, l, h in sorted(present, key=key)]


def _curve(
    loaded: LoadedModel,
    data: AttributionData,
    order: list[tuple[int, int]],
    steps: list[int],
    batch_size: int,
    n_boot: int,
    seed: int,
) -> dict[str, tuple[np.ndarray, ...]]:
    gates = ones_gates(loaded.anatomy, batch=len(steps))
    for c, k in enumerate(steps):
        for layer, head in order[:k]:
            gates[c, layer, head] = 0.0
    result = evaluate(loaded, CounterfactualGap(), data, gates, batch_size=batch_size)
    return {
        "cf_gap": mean_ci(result.values, n_boot=n_boot, seed=seed),
        "abs_cf_gap": mean_ci(result.values.abs(), n_boot=n_boot, seed=seed),
        "accuracy": mean_ci(result.correct, n_boot=n_boot, seed=seed),
    }


def pruning_curve(
    loaded: LoadedModel,
    data: AttributionData,
    *,
    importance: Tensor | None = None,
    bias_effect: Tensor | None = None,
    protect: float = 0.0,
    objective: Objective = "abs_gap",
    n_random: int = 5,
    steps: int = 0,
    batch_size: int = 64,
    n_boot: int = 200,
    seed: int = 0,
) -> pd.DataFrame:
    """The curves of the module docstring on a classifier and task data with gender-swapped twins.

    Args:
        loaded: the model (gradients needed when ``importance`` is not given).
        data: examples with twins (:meth:`AttributionData.from_task`).
        importance: (layer, head) task importance (default :func:`task_importance` on ``data``).
        bias_effect: (layer, head) bias effects (default :func:`head_bias_effects` on ``data``).
        protect: share of heads most important for the task moved to the end of the bias order.
        objective: the bias the bias order lowers (mean |gap| or |mean gap|).
        n_random: random orders averaged.
        steps: points per curve, evenly spaced over 0..heads (0 = every head count).
        batch_size: rows (step x example) per forward pass.
        n_boot: bootstrap resamples of the examples.
        seed: seed of the random orders and the bootstrap.

    Returns:
        Tidy rows of unit ``model``, metrics ``cf_gap``, ``abs_cf_gap``, ``accuracy``, with columns ``order``,
        ``step`` (heads removed), ``fraction`` (of all heads), ``n_orders``, ``order_min``, ``order_max``.
    """
    if not 0.0 <= protect < 1.0:
        raise ValueError(f"protect={protect!r} must lie in [0, 1).")
    if n_random < 1:
        raise ValueError(f"n_random={n_random!r}: average at least one random order.")
    importance = task_importance(loaded, data, batch_size=batch_size) if importance is None else importance
    effect = (
        head_bias_effects(loaded, data, objective=objective, batch_size=batch_size)[0]
        if bias_effect is None
        else bias_effect
    )
    by_importance = _order(importance, descending=True)
    guarded = set(by_importance[: round(protect * len(by_importance))])
    n_heads = len(by_importance)
    ks = list(range(n_heads + 1)) if not steps else sorted(set(np.linspace(0, n_heads, steps).round().astype(int)))
    rng = np.random.default_rng(seed)
    orders = {
        "bias": [_order(effect, descending=True, last=guarded)],
        "importance": [_order(importance, descending=False)],
        "random": [[by_importance[i] for i in rng.permutation(n_heads)] for _ in range(n_random)],
    }
    rows = []
    for name, perms in orders.items():
        curves = [_curve(loaded, data, perm, ks, batch_size, n_boot, seed) for perm in perms]
        for metric in _METRICS:
            stacked = np.stack([np.stack(c[metric]) for c in curves])  # (n_orders, 3, n_steps)
            mean = stacked.mean(0)
            for j, k in enumerate(ks):
                rows.append({"unit": "model", "metric": metric, "value": mean[0, j], "ci_low": mean[1, j],
                             "ci_high": mean[2, j], "n": len(data), "order": name, "step": k, "fraction": k / n_heads,
                             "n_orders": len(perms), "order_min": stacked[:, 0, j].min(),
                             "order_max": stacked[:, 0, j].max()})  # fmt: skip
    return tidy(rows, variant="", protect=protect, objective=objective)
