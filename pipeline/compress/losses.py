"""Distillation losses shared by the DistilBERT- and TinyBERT-style students.

* Soft-target KL at temperature ``T``, scaled by ``T^2`` so its gradients keep their size as ``T`` changes
  (Hinton, Vinyals and Dean 2015, "Distilling the Knowledge in a Neural Network"); DistilBERT's ``L_ce``.
* Cosine loss ``1 - cos(h_s, h_t)`` between student and teacher hidden vectors, averaged over real tokens
  (Sanh et al. 2019, "DistilBERT, a distilled version of BERT"; their ``L_cos``).
* Token-masked mean squared error, TinyBERT's loss on embeddings, hidden states and attention maps (Jiao et al.
  2020, "TinyBERT: Distilling BERT for Natural Language Understanding").

Each takes optional per-text ``weights`` (a weighted training set, :mod:`pipeline.weighting`): every per-text or
per-token term is multiplied by its text's weight before the mean; without them the loss is computed as before.
"""

from __future__ import annotations

from jaxtyping import Float, Int
from torch import Tensor
from torch.nn import functional as F

from pipeline.weighting import token_weights, weighted_mean

__all__ = ["INPUT_KEYS", "cosine_loss", "masked_mse", "model_inputs", "soft_kl"]

INPUT_KEYS = ("input_ids", "attention_mask", "token_type_ids")


def model_inputs(batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """The keys of ``batch`` a BERT-family forward takes (labels and extras left out)."""
    return {k: batch[k] for k in INPUT_KEYS if k in batch}


def soft_kl(
    student: Float[Tensor, "n classes"],
    teacher: Float[Tensor, "n classes"],
    temperature: float,
    weights: Float[Tensor, " n"] | None = None,
) -> Float[Tensor, ""]:
    """``KL(softmax(t/T) || softmax(s/T)) * T^2``, averaged over rows (each row's KL times its weight, if given)."""
    t = temperature
    log_s, p_t = F.log_softmax(student.float() / t, -1), F.softmax(teacher.float() / t, -1)
    if weights is None:
        return F.kl_div(log_s, p_t, reduction="batchmean") * t * t
    return weighted_mean(F.kl_div(log_s, p_t, reduction="none").sum(-1), weights) * t * t


def cosine_loss(
    student: Float[Tensor, "batch seq d_model"],
    teacher: Float[Tensor, "batch seq d_model"],
    attention_mask: Int[Tensor, "batch seq"],
    weights: Float[Tensor, " batch"] | None = None,
) -> Float[Tensor, ""]:
    """Mean over non-padding tokens of ``1 - cos(student, teacher)`` (each token's term times its text's weight)."""
    keep = attention_mask.bool()  # (batch, seq)
    cos = F.cosine_similarity(student[keep].float(), teacher[keep].float(), dim=-1)  # (tokens,)
    return weighted_mean(1 - cos, None if weights is None else token_weights(weights, keep))


def masked_mse(
    student: Tensor,
    teacher: Tensor,
    token_mask: Int[Tensor, "batch seq"],
    weights: Float[Tensor, " batch"] | None = None,
) -> Float[Tensor, ""]:
    """MSE over the positions where ``token_mask`` is 1; inputs are (batch, seq, ...) or (batch, head, seq, seq).

    For attention maps (4-D) the mask selects query rows *and* key columns, so padding never counts. With
    ``weights`` each position's squared error is times its text's weight (the denominator stays the position count).
    """
    mask = token_mask.to(student.dtype)
    if student.dim() == 4:  # (batch, head, seq_q, seq_k)
        weight = mask[:, None, :, None] * mask[:, None, None, :]
    else:  # (batch, seq, d)
        weight = mask.view(*mask.shape, *([1] * (student.dim() - 2)))
    weight = weight.expand_as(student)
    squared = (student.float() - teacher.float()) ** 2 * weight
    if weights is not None:
        squared = squared * weights.to(squared.device, squared.dtype).view(-1, *([1] * (student.dim() - 1)))
    return squared.sum() / weight.sum().clamp_min(1.0)
