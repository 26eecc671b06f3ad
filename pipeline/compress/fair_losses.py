"""Differentiable fairness terms of training objectives: the soft TPR gap (``eo_reg``) and fair distillation.

* **Soft TPR gap**: equal opportunity (Hardt, Price and Srebro 2016) asks every class's true-positive rate to be
  the same across groups. Replacing the hard indicator ``pred = y`` by the probability the model gives the true
  class makes the rate differentiable, as in the "soft" fairness constraints of Zafar et al. (2017, "Fairness
  Constraints: Mechanisms for Fair Classification") and Padala and Gujar (2020, "FNNC"): per batch,

      softTPR(g, k) = mean over examples with y = k, group g of p_k(x)
      penalty       = mean over classes with >= 2 groups present of  max_g softTPR(g, k) - min_g softTPR(g, k)

* **Fair distillation**: plain distillation copies the teacher's preference for one gender into the student
  (Ahn et al. 2022). Here the student matches, on each text ``x`` *and* its gender-swapped twin ``x'``, the
  teacher's distribution averaged over the pair, ``(T(x) + T(x')) / 2`` (a counterfactually symmetric target, the
  ``lam = 0.5`` targets of gender mixup), and pays ``gap_weight`` times its own counterfactual gap,
  ``mean_x sum_k |p_k(x) - p_k(x')|`` (the total-variation form of the counterfactual gap of Garg et al. 2019,
  "Counterfactual Fairness in Text Classification through Robustness").
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor
from torch.nn import functional as F

from pipeline.compress.losses import soft_kl
from pipeline.weighting import weighted_mean

__all__ = ["counterfactual_gap", "fair_distil_loss", "soft_tpr_gap"]


def soft_tpr_gap(
    logits: Float[Tensor, "n k"], labels: Int[Tensor, " n"], groups: Int[Tensor, " n"]
) -> Float[Tensor, ""]:
    """The batch's mean over classes of the largest soft-TPR difference between groups (module docstring); 0 (with
    a gradient of 0) when no class of the batch has two groups."""
    if logits.dim() != 2 or labels.shape != (len(logits),) or groups.shape != labels.shape:
        raise ValueError(f"logits {tuple(logits.shape)}, labels and groups must have one row per example")
    p_true = F.softmax(logits.float(), -1).gather(1, labels[:, None]).squeeze(1)  # (n,)
    gaps = []
    for k in labels.unique():
        rates = [p_true[(labels == k) & (groups == g)].mean() for g in groups[labels == k].unique()]
        if len(rates) > 1:
            stacked = torch.stack(rates)
            gaps.append(stacked.max() - stacked.min())
    return torch.stack(gaps).mean() if gaps else logits.sum() * 0.0


def counterfactual_gap(logits: Float[Tensor, "n k"], twin_logits: Float[Tensor, "n k"]) -> Float[Tensor, " n"]:
    """Each example's ``sum_k |p_k(x) - p_k(x')|`` between a text and its gender-swapped twin."""
    return (F.softmax(logits.float(), -1) - F.softmax(twin_logits.float(), -1)).abs().sum(-1)


def fair_distil_loss(
    student: Float[Tensor, "n k"],
    student_twin: Float[Tensor, "n k"],
    teacher: Float[Tensor, "n k"],
    teacher_twin: Float[Tensor, "n k"],
    *,
    temperature: float,
    gap_weight: float,
    weights: Float[Tensor, " n"] | None = None,
) -> Float[Tensor, ""]:
    """Soft-target KL of the student on the text and on its twin to the pair-averaged teacher distribution, plus
    ``gap_weight`` times the student's mean counterfactual gap (module docstring); with ``weights`` each text's
    terms are times its weight before the means."""
    if gap_weight < 0:
        raise ValueError(f"gap_weight = {gap_weight} must be >= 0")
    t = temperature
    mean_target = (F.softmax(teacher.float() / t, -1) + F.softmax(teacher_twin.float() / t, -1)) / 2
    target_logits = mean_target.log() * t  # soft_kl divides by t again: softmax(target_logits / t) = mean_target
    kl = (soft_kl(student, target_logits, t, weights) + soft_kl(student_twin, target_logits, t, weights)) / 2
    return kl + gap_weight * weighted_mean(counterfactual_gap(student, student_twin), weights)
