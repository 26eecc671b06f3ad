"""Instance-weighted training losses: each example's loss term times its weight, then the mean.

A training set with weights (:class:`pipeline.data.WeightedTaskData`, e.g. the Kamiran & Calders 2012 ``reweighed``
set, weights of mean 1) makes every learning step weigh its per-example terms: ``mean_i w_i L_i`` over the batch
(not renormalised per batch, so a batch's loss keeps the weighted training distribution's expectation). Terms over
tokens (cosine, MSE, masked-LM) give each token its text's weight. Weights all 1, or none, take the unweighted path
unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from jaxtyping import Float, Int
from torch import Tensor
from torch.nn import functional as F

from pipeline.data import TaskData, WeightedTaskData

__all__ = ["BATCH_WEIGHTS", "example_weights", "token_weights", "weighted_cross_entropy", "weighted_mean"]

BATCH_WEIGHTS = "example_weights"  # the batch key of the rows' weights in distillation batches


def example_weights(data: TaskData) -> Float[Tensor, " n"] | None:
    """float32 weights of a weighted training set; None for plain data or weights all 1 (the unweighted path)."""
    if not isinstance(data, WeightedTaskData) or (data.weights == 1).all():
        return None
    return torch.tensor(data.weights, dtype=torch.float32)


def weighted_mean(terms: Tensor, weights: Tensor | None) -> Float[Tensor, ""]:
    """``mean(terms)``, or ``mean(weights * terms)`` (weights broadcast over the rows of ``terms``)."""
    if weights is None:
        return terms.mean()
    w = weights.to(terms.device, terms.dtype)
    return (w.view(-1, *([1] * (terms.dim() - 1))) * terms).mean()


def token_weights(weights: Float[Tensor, " batch"], picked: Tensor) -> Float[Tensor, " tokens"]:
    """Each picked (batch, seq) position's text weight, in the order of ``tensor[picked]``."""
    return weights.to(picked.device)[:, None].expand(picked.shape)[picked]


def weighted_cross_entropy(weights: Float[Tensor, " n"]) -> Callable[[Tensor, Tensor, Tensor], Tensor]:
    """The loss ``(logits, labels, training rows) -> mean_i w_i CE_i`` of the training rows' weights: per text for
    class logits ``(b, k)`` and labels ``(b,)``; per asked token for masked-LM logits ``(b, seq, vocab)`` and labels
    ``(b, seq)`` (-100 where nothing is asked), each token with its text's weight."""

    def loss(logits: Tensor, labels: Int[Tensor, "*shape"], rows: Int[Tensor, " b"]) -> Tensor:
        w = weights.to(labels.device)[rows.to(labels.device)]
        if labels.dim() == 1:
            return weighted_mean(F.cross_entropy(logits.float(), labels, reduction="none"), w)
        asked = labels != -100
        ce = F.cross_entropy(logits[asked].float(), labels[asked], reduction="none")
        return weighted_mean(ce, token_weights(w, asked))

    return loss
