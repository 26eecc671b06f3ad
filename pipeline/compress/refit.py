"""The training remedy ``eoreg`` and its twin ``refit``: more task fine-tuning of a fine-tuned classifier, with a
remedied loss or (the twin) the plain one, so remedy and twin had the same training.

* ``eoreg``: ``CE + weight * soft TPR gap`` between genders per batch, classes with both genders in the batch
  (:func:`pipeline.compress.fair_losses.soft_tpr_gap`; equal opportunity, Hardt, Price and Srebro 2016).
* ``plain``: the model's cross-entropy (the twin ``refit``).

On a weighted training set (``@reweighed``, Kamiran & Calders 2012 weights, :mod:`pipeline.weighting`) every
cross-entropy above is weighted.
"""

from __future__ import annotations

from typing import Literal

import torch
from accelerate import Accelerator
from torch.nn import functional as F

from pipeline.compress.config import EoRegSection
from pipeline.compress.fair_losses import soft_tpr_gap
from pipeline.data import TaskData
from pipeline.models import LoadedModel
from pipeline.train import ClassifierLoss, FinetuneSection, TrainResult, finetune_classifier
from pipeline.weighting import example_weights, weighted_cross_entropy

__all__ = ["RefitLoss", "refit", "refit_loss"]

RefitLoss = Literal["plain", "eoreg"]


def refit_loss(kind: RefitLoss, train: TaskData, section: EoRegSection) -> ClassifierLoss | None:
    """The loss of ``kind`` on ``train`` (None for ``plain``: the model's own cross-entropy).

    Raises:
        ValueError: an unknown ``kind``, or ``eoreg`` without its ``weight``.

    With a weighted ``train`` (:mod:`pipeline.weighting`) the ``eoreg`` cross-entropy is weighted; ``plain`` (None)
    is weighted by :func:`pipeline.train.finetune_classifier` itself.
    """
    if kind == "plain":
        return None
    if kind == "eoreg":
        if not isinstance(section, EoRegSection):
            raise ValueError(f"the eoreg loss needs [compress.eoreg] settings, got {type(section).__name__}")
        genders, weight, instance = torch.tensor(train.genders), section.weight, example_weights(train)
        ce = weighted_cross_entropy(instance) if instance is not None else lambda z, y, _: F.cross_entropy(z.float(), y)

        def penalised(logits: torch.Tensor, labels: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
            groups = genders.to(labels.device)[rows.to(labels.device)]
            return ce(logits, labels, rows) + weight * soft_tpr_gap(logits, labels, groups)

        return penalised
    raise ValueError(f"unknown refit loss {kind!r}; use 'plain' or 'eoreg'")


def refit(
    loaded: LoadedModel,
    train: TaskData,
    dev: TaskData | None,
    section: EoRegSection,
    kind: RefitLoss,
    seed: int,
    *,
    max_length: int,
    eval_batch_size: int,
    accelerator: Accelerator | None = None,
) -> TrainResult:
    """Fine-tune ``loaded`` in place for ``section.epochs`` more epochs with the loss of ``kind``."""
    optim = {k: getattr(section, k) for k in ("epochs", "lr", "batch_size", "warmup_ratio", "weight_decay")}
    cfg = FinetuneSection(**optim, grad_clip=section.grad_clip, eval_batch_size=eval_batch_size)
    return finetune_classifier(
        loaded,
        train,
        dev,
        cfg,
        seed,
        max_length=max_length,
        accelerator=accelerator,
        loss=refit_loss(kind, train, section),
    )
