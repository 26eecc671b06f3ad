"""Pruning: attention heads by importance (Michel et al. 2019), and unstructured weight magnitude.

Head importance follows Michel, Levy and Neubig (2019), "Are Sixteen Heads Really Better than One?", NeurIPS:
each head's output is multiplied by a gate ``g_h`` (:class:`pipeline.gates.HeadGates`) and

    I_h = E_x | dL(x) / dg_h |   at g = 1,

with ``L`` the task cross-entropy. Gates are per example, shape (batch, layer, head), so one backward pass of the
summed loss gives every example's own gradient and the absolute value is taken per example, as in the paper.
Scores are l2-normalised within each layer before the global ranking (the paper's Appendix finds this matters).

:func:`prune_heads` removes the lowest-ranked fraction of heads over the whole model (keeping at least one head per
layer) by *physically* cutting the query/key/value rows and the output-projection columns of the removed heads,
so the saved model is smaller. The original ids of the kept heads are written to ``config.kept_heads`` (one list
per layer): :class:`pipeline.anatomy.Anatomy` reads them as ``head_ids``, and :func:`pipeline.models.load_model`
uses them to rebuild the shrunk shapes (:func:`shrink_heads`) before loading the weights.

:func:`magnitude_prune` zeroes the smallest-magnitude share of all encoder linear weights at once (global
unstructured L1 pruning with ``torch.nn.utils.prune``, made permanent with ``prune.remove``); :func:`keep_sparsity`
holds those zeros fixed while a pruned model is fine-tuned again.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from jaxtyping import Float
from torch import Tensor, nn
from torch.nn.utils import prune as torch_prune
from tqdm.auto import tqdm

from pipeline.anatomy import Anatomy, shrink_heads
from pipeline.gates import HeadGates, ones_gates

__all__ = [
    "encoder_linears",
    "head_importance",
    "keep_sparsity",
    "magnitude_prune",
    "prune_heads",
    "remove_heads",
    "select_heads",
    "sparsity",
]


def head_importance(
    anatomy: Anatomy,
    batches: Sequence[dict[str, Tensor]],
    *,
    normalise: bool = True,
) -> Float[Tensor, "layer head"]:
    """Michel et al.'s head importance ``E_x |dL(x)/dg_h|`` over labelled ``batches`` of a classifier.

    Args:
        anatomy: adapter over a sequence classifier (trained head: the loss must mean something).
        batches: dicts with ``input_ids``, ``attention_mask`` (and ``token_type_ids``) and ``labels``, on the
            model's device.
        normalise: divide each layer's scores by their l2 norm.

    Returns:
        (layer, head) importance on CPU; heads a pruned layer lacks are NaN.
    """
    model = anatomy.model
    total = torch.zeros(anatomy.n_layers, anatomy.n_heads)
    count = 0
    was_training = model.training
    model.eval()
    try:
        for batch in tqdm(batches, desc="head importance", leave=False):
            labels = batch["labels"]
            inputs = {k: v for k, v in batch.items() if k != "labels"}
            gates = ones_gates(anatomy, batch=len(labels), requires_grad=True, device=labels.device)
            with HeadGates(anatomy, gates):
                logits = model(**inputs).logits
            loss = nn.functional.cross_entropy(logits.float(), labels, reduction="sum")  # sum: per-example grads
            (grad,) = torch.autograd.grad(loss, gates)  # (batch, layer, head)
            total += grad.abs().sum(0).cpu()
            count += len(labels)
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("head_importance got no examples; pass at least one labelled batch.")
    importance = total / count  # (layer, head)
    if normalise:
        importance = importance / importance.norm(dim=1, keepdim=True).clamp_min(1e-12)
    for layer, n in enumerate(anatomy.heads_per_layer):
        importance[layer, n:] = float("nan")
    return importance


def select_heads(importance: Float[Tensor, "layer head"], fraction: float) -> list[list[int]]:
    """Positions of the heads to keep after removing ``round(fraction * n_heads)`` least important ones globally.

    Ties break by (layer, head). A layer always keeps its most important head, so fewer heads are removed when
    ``fraction`` would empty a layer. NaN scores (heads already gone) are ignored.

    Raises:
        ValueError: ``fraction`` outside [0, 1).
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction={fraction!r} must lie in [0, 1): the share of heads to remove.")
    present = [
        (float(importance[l, h]), l, h)
        for l in range(importance.shape[0])
        for h in range(importance.shape[1])
        if not torch.isnan(importance[l, h])
    ]
    keep = {l: {h for _, ll, h in present if ll == l} for l in range(importance.shape[0])}
    n_remove = round(fraction * len(present))
    for _, layer, head in sorted(present):
        if n_remove == 0:
            break
        if len(keep[layer]) > 1:
            keep[layer].discard(head)
            n_remove -= 1
    return [sorted(keep[l]) for l in range(importance.shape[0])]


def prune_heads(anatomy: Anatomy, importance: Float[Tensor, "layer head"], fraction: float) -> list[list[int]]:
    """Remove the least important ``fraction`` of heads in place; record original ids in ``config.kept_heads``.

    Returns:
        The original head ids kept in each layer (also written to ``model.config.kept_heads``).
    """
    return remove_heads(anatomy, select_heads(importance, fraction))


def remove_heads(anatomy: Anatomy, keep: Sequence[Sequence[int]]) -> list[list[int]]:
    """Keep only heads ``keep[layer]`` (positions among the current heads) in place, physically; record the
    original ids of the kept heads in ``config.kept_heads`` (and ``anatomy.head_ids``) and return them."""
    original = [[anatomy.head_ids[layer][p] for p in heads] for layer, heads in enumerate(keep)]
    shrink_heads(anatomy, keep)
    anatomy.model.config.kept_heads = original
    anatomy.head_ids = tuple(tuple(ids) for ids in original)
    return original


def encoder_linears(anatomy: Anatomy) -> list[nn.Linear]:
    """Every ``nn.Linear`` inside the transformer blocks (attention and FFN; not embeddings or task head)."""
    return [m for m in anatomy.layers().modules() if isinstance(m, nn.Linear)]


def sparsity(anatomy: Anatomy) -> float:
    """Share of exactly-zero weights among the encoder linear weights."""
    weights = [m.weight for m in encoder_linears(anatomy)]
    return sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights)


@torch.no_grad()
def magnitude_prune(anatomy: Anatomy, amount: float) -> float:
    """Zero the ``amount`` share of smallest-|w| encoder linear weights, globally and permanently.

    Returns:
        The sparsity reached (equals ``amount`` up to rounding to whole weights).

    Raises:
        ValueError: ``amount`` outside [0, 1).
    """
    if not 0.0 <= amount < 1.0:
        raise ValueError(f"sparsity={amount!r} must lie in [0, 1): the share of encoder weights set to zero.")
    params = [(m, "weight") for m in encoder_linears(anatomy)]
    torch_prune.global_unstructured(params, pruning_method=torch_prune.L1Unstructured, amount=amount)
    for module, name in params:
        torch_prune.remove(module, name)
    return sparsity(anatomy)


@contextmanager
def keep_sparsity(anatomy: Anatomy) -> Iterator[None]:
    """Within the block, the encoder's zero weights stay zero under training (masks from the current zeros)."""
    params = [(m, "weight") for m in encoder_linears(anatomy)]
    for module, name in params:
        torch_prune.custom_from_mask(module, name, mask=(module.weight != 0))
    try:
        yield
    finally:
        for module, name in params:
            torch_prune.remove(module, name)
