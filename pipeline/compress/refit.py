"""The training remedies ``reweigh`` and ``eoreg`` and their twin ``refit``: more task fine-tuning of a fine-tuned
classifier, with a remedied loss or (the twin) the plain one, so remedy and twin had the same training.

* ``reweigh``: cross-entropy with Kamiran & Calders (2012) instance weights ``P(c)P(g)/P(c, g)`` (class, gender),
  ``mean_i w_i CE_i`` per batch (:mod:`pipeline.compress.reweigh`).
* ``eoreg``: ``CE + weight * soft TPR gap`` between genders per batch, classes with both genders in the batch
  (:func:`pipeline.compress.fair_losses.soft_tpr_gap`; equal opportunity, Hardt, Price and Srebro 2016).
* ``plain``: the model's cross-entropy (the twin ``refit``).
"""

from __future__ import annotations

from typing import Literal

import torch
from accelerate import Accelerator
from torch.nn import functional as F

from pipeline.compress.config import EoRegSection, ReweighSection
from pipeline.compress.fair_losses import soft_tpr_gap
from pipeline.compress.reweigh import reweighing_weights
from pipeline.data import TaskData
from pipeline.models import LoadedModel
from pipeline.train import ClassifierLoss, FinetuneSection, TrainResult, finetune_classifier

__all__ = ["RefitLoss", "refit", "refit_loss"]

RefitLoss = Literal["plain", "reweigh", "eoreg"]


def refit_loss(kind: RefitLoss, train: TaskData, section: ReweighSection | EoRegSection) -> ClassifierLoss | None:
    """The loss of ``kind`` on ``train`` (None for ``plain``: the model's own cross-entropy).

    Raises:
        pipeline.compress.reweigh.EmptyCellError: ``reweigh`` and a (class, gender) cell of ``train`` is empty.
        ValueError: an unknown ``kind``, or ``eoreg`` without its ``weight``.
    """
    if kind == "plain":
        return None
    if kind == "reweigh":
        weights = torch.as_tensor(reweighing_weights(train.labels, train.genders), dtype=torch.float32)

        def weighted(logits: torch.Tensor, labels: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
            ce = F.cross_entropy(logits.float(), labels, reduction="none")
            return (weights.to(ce.device)[rows.to(ce.device)] * ce).mean()

        return weighted
    if kind == "eoreg":
        if not isinstance(section, EoRegSection):
            raise ValueError(f"the eoreg loss needs [compress.eoreg] settings, got {type(section).__name__}")
        genders, weight = torch.tensor(train.genders), section.weight

        def penalised(logits: torch.Tensor, labels: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
            groups = genders.to(labels.device)[rows.to(labels.device)]
            return F.cross_entropy(logits.float(), labels) + weight * soft_tpr_gap(logits, labels, groups)

        return penalised
    raise ValueError(f"unknown refit loss {kind!r}; use 'plain', 'reweigh' or 'eoreg'")


def refit(
    loaded: LoadedModel,
    train: TaskData,
    dev: TaskData | None,
    section: ReweighSection | EoRegSection,
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
