"""Distillation losses shared by the DistilBERT- and TinyBERT-style students.

* Soft-target KL at temperature ``T``, scaled by ``T^2`` so its gradients keep their size as ``T`` changes
  (Hinton, Vinyals and Dean 2015, "Distilling the Knowledge in a Neural Network"); DistilBERT's ``L_ce``.
* Cosine loss ``1 - cos(h_s, h_t)`` between student and teacher hidden vectors, averaged over real tokens
  (Sanh et al. 2019, "DistilBERT, a distilled version of BERT"; their ``L_cos``).
* Token-masked mean squared error, TinyBERT's loss on embeddings, hidden states and attention maps (Jiao et al.
  2020, "TinyBERT: Distilling BERT for Natural Language Understanding").
"""

from __future__ import annotations

from jaxtyping import Float, Int
from torch import Tensor
from torch.nn import functional as F

__all__ = ["INPUT_KEYS", "cosine_loss", "masked_mse", "model_inputs", "soft_kl"]

INPUT_KEYS = ("input_ids", "attention_mask", "token_type_ids")


def model_inputs(batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """The keys of ``batch`` a BERT-family forward takes (labels and extras left out)."""
    return {k: batch[k] for k in INPUT_KEYS if k in batch}


def soft_kl(
    student: Float[Tensor, "n classes"], teacher: Float[Tensor, "n classes"], temperature: float
) -> Float[Tensor, ""]:
    """``KL(softmax(t/T) || softmax(s/T)) * T^2``, averaged over rows."""
    t = temperature
    return (
        F.kl_div(F.log_softmax(student.float() / t, -1), F.softmax(teacher.float() / t, -1), reduction="batchmean")
        * t
        * t
    )


def cosine_loss(
    student: Float[Tensor, "batch seq d_model"],
    teacher: Float[Tensor, "batch seq d_model"],
    attention_mask: Int[Tensor, "batch seq"],
) -> Float[Tensor, ""]:
    """Mean over non-padding tokens of ``1 - cos(student, teacher)``."""
    keep = attention_mask.bool()  # (batch, seq)
    cos = F.cosine_similarity(student[keep].float(), teacher[keep].float(), dim=-1)  # (tokens,)
    return (1 - cos).mean()


def masked_mse(student: Tensor, teacher: Tensor, token_mask: Int[Tensor, "batch seq"]) -> Float[Tensor, ""]:
    """MSE over the positions where ``token_mask`` is 1; inputs are (batch, seq, ...) or (batch, head, seq, seq).

    For attention maps (4-D) the mask selects query rows *and* key columns, so padding never counts.
    """
    mask = token_mask.to(student.dtype)
    if student.dim() == 4:  # (batch, head, seq_q, seq_k)
        weight = mask[:, None, :, None] * mask[:, None, None, :]
    else:  # (batch, seq, d)
        weight = mask.view(*mask.shape, *([1] * (student.dim() - 2)))
    weight = weight.expand_as(student)
    return ((student.float() - teacher.float()) ** 2 * weight).sum() / weight.sum().clamp_min(1.0)
