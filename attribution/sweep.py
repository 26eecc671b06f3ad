"""The single-head sweep: every head switched off in turn, fast (prefix-cached) and naive.

Switching off head h of layer l changes nothing below layer l, so the hidden state entering block l is the same
for all heads of that layer and for the unablated model. :func:`fast_sweep` computes the entering states of all
layers once per block of examples (one forward pass per view), then for each layer l expands the state over
(heads of l x examples), gives every row its own per-example gates (:class:`pipeline.gates.HeadGates`, one head
closed per row) and runs only blocks l..L-1 from the cache (:meth:`pipeline.anatomy.Anatomy.start_at`). The
compute is then ``sum_l H_l * cost(blocks l..L-1)`` instead of ``sum_l H_l * cost(blocks 0..L-1)``: about half
for many layers (see ``bench/sweep.py``). :func:`naive_sweep` is the reference: one full forward pass per head
with global gates. Both take any baseline, so activation patching (Vig et al. 2020) is the same sweep with the
counterfactual baseline; they agree to float precision (tested to 1e-5).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from attribution.baselines import ZERO, Baseline, expand_baseline
from attribution.batching import check_batch_size, example_chunks
from attribution.data import AttributionData
from attribution.engine import Collector, GridResult
from attribution.scores import Score, view_features
from pipeline.gates import HeadGates, ones_gates
from pipeline.models import LoadedModel

__all__ = ["fast_sweep", "naive_sweep", "single_head_gates", "sweep_heads"]


def sweep_heads(loaded: LoadedModel, layers: Sequence[int] | None = None) -> list[tuple[int, int]]:
    """The (layer, head) pairs of a sweep, layer-major (pruned layers have fewer heads)."""
    anatomy = loaded.anatomy
    chosen = range(anatomy.n_layers) if layers is None else layers
    for layer in chosen:
        anatomy.check_layer(layer)
    return [(layer, h) for layer in chosen for h in range(anatomy.heads_per_layer[layer])]


def _chosen_heads(
    loaded: LoadedModel, layers: Sequence[int] | None, heads: Sequence[tuple[int, int]] | None
) -> list[tuple[int, int]]:
    """The heads a sweep runs: ``heads`` as given (checked), else every head of ``layers`` (default all)."""
    if heads is None:
        return sweep_heads(loaded, layers)
    if layers is not None:
        raise ValueError("give layers= or heads= to restrict a sweep, not both.")
    chosen = [(int(layer), int(head)) for layer, head in heads]
    if not chosen or len(set(chosen)) != len(chosen):
        raise ValueError(f"heads={list(heads)!r}: give a non-empty list of distinct (layer, head) pairs.")
    for layer, head in chosen:
        loaded.anatomy.check_head(layer, head)
    return chosen


def single_head_gates(loaded: LoadedModel, heads: Sequence[tuple[int, int]]) -> Float[Tensor, "n_cond layer head"]:
    """One condition per head: all gates 1 except that head's."""
    gates = ones_gates(loaded.anatomy, batch=len(heads))
    for c, (layer, head) in enumerate(heads):
        loaded.anatomy.check_head(layer, head)
        gates[c, layer, head] = 0.0
    return gates


@torch.no_grad()
def naive_sweep(
    loaded: LoadedModel,
    score: Score,
    data: AttributionData,
    *,
    baseline: Baseline = ZERO,
    batch_size: int = 64,
    layers: Sequence[int] | None = None,
    heads: Sequence[tuple[int, int]] | None = None,
    progress: bool = True,
) -> tuple[GridResult, list[tuple[int, int]]]:
    """Reference sweep: for every head, full forward passes over all examples with that head's global gate 0.

    Returns:
        ``(result, heads)``: ``result.values[c]`` is the score with ``heads[c]`` switched off.
    """
    score.check(loaded, data)
    heads = _chosen_heads(loaded, layers, heads)
    collector = Collector(score, len(heads), len(data))
    chunks = list(example_chunks(len(data), check_batch_size(batch_size)))
    for c, gates in enumerate(tqdm(single_head_gates(loaded, heads), desc="naive sweep", disable=not progress)):
        for ex in chunks:
            batch = data.batch(ex, loaded.device)
            with HeadGates(loaded.anatomy, gates.to(loaded.device), baseline=baseline(loaded, batch)):
                feats = {v: view_features(loaded, score, batch.view(v)) for v in score.views}
            collector.add(torch.tensor([c]), ex, feats)
    return collector.finish(data, loaded.device), heads


@torch.no_grad()
def fast_sweep(
    loaded: LoadedModel,
    score: Score,
    data: AttributionData,
    *,
    baseline: Baseline = ZERO,
    batch_size: int = 64,
    layers: Sequence[int] | None = None,
    heads: Sequence[tuple[int, int]] | None = None,
    progress: bool = True,
) -> tuple[GridResult, list[tuple[int, int]]]:
    """Prefix-cached sweep: blocks 0..l-1 run once per block of examples, blocks l..L-1 per (head, example).

    Args:
        loaded: the model.
        score: the score to evaluate with each head switched off.
        data: the examples.
        baseline: what the closed head outputs (zero, mean, or the counterfactual run for patching).
        batch_size: rows per forward pass; ``batch_size // heads`` examples are expanded over a layer's heads.
        layers: restrict the sweep to these layers.
        heads: restrict the sweep to these (layer, local head) pairs instead (e.g. one process's share).
        progress: show a progress bar.

    Returns:
        ``(result, heads)`` exactly as :func:`naive_sweep`.
    """
    score.check(loaded, data)
    anatomy, device = loaded.anatomy, loaded.device
    heads = _chosen_heads(loaded, layers, heads)
    cond_of = {pair: c for c, pair in enumerate(heads)}
    by_layer: dict[int, list[int]] = {}
    for layer, head in heads:
        by_layer.setdefault(layer, []).append(head)
    collector = Collector(score, len(heads), len(data))
    per_block = max(1, check_batch_size(batch_size) // max(anatomy.n_heads, 1))
    for ex in tqdm(list(example_chunks(len(data), per_block)), desc="fast sweep", disable=not progress):
        batch = data.batch(ex, device)
        base = baseline(loaded, batch)
        entering = {v: anatomy.hidden_states(batch.view(v).input_ids, batch.view(v).attention_mask)
                    for v in score.views}  # fmt: skip
        e = len(ex)
        for layer, local in by_layer.items():
            n_h = len(local)
            rows = batch.repeat(n_h)
            gates = ones_gates(anatomy, batch=n_h * e, device=device)  # (n_h * e, layer, head)
            which = torch.tensor(local, device=device).repeat_interleave(e)  # head closed in each row
            gates[torch.arange(n_h * e, device=device), layer, which] = 0.0
            feats = {}
            for v in score.views:
                hidden = entering[v][layer].repeat(n_h, 1, 1)  # (n_h * e, seq, d_model)
                gated = HeadGates(anatomy, gates, baseline=expand_baseline(baseline, base, n_h), layers=[layer])
                with gated, anatomy.start_at(layer, hidden):  # hooks first: start_at hides blocks < layer
                    feats[v] = view_features(loaded, score, rows.view(v))
            collector.add(torch.tensor([cond_of[(layer, h)] for h in local]), ex, feats)
    return collector.finish(data, device), heads
