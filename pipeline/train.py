"""Training: one compact loop on ``accelerate``, task fine-tuning and masked-LM domain fine-tuning.

Every trainer here is an *objective*: an ``nn.Module`` whose ``forward(batch)`` returns the scalar loss, trained by
:func:`fit` with AdamW (Loshchilov & Hutter 2019) and a linear warm-up then linear decay schedule, as in BERT
fine-tuning (Devlin et al. 2019). Keeping the loss inside one module lets ``accelerate`` place it on the GPU, wrap
it for data-parallel training under ``accelerate launch`` and apply mixed precision; distillation objectives
(:mod:`pipeline.compress`) hold a frozen teacher beside the student in the same way.

Masked-LM batches follow BERT's recipe: 15% of the non-special tokens are chosen (at least one per text); of
those 80% become ``[MASK]``, 10% a random token, 10% stay. Runs are reproducible: :func:`seeded` seeds python,
numpy and torch (CPU and CUDA) and restores their state afterwards; batch order and masking draw from generators
seeded by the same seed.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from accelerate import Accelerator
from jaxtyping import Int
from pydantic import Field
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase, get_linear_schedule_with_warmup

from pipeline.data import TaskData
from pipeline.metrics.predict import classifier_logits
from pipeline.models import LoadedModel
from pipeline.settings import Settings
from pipeline.weighting import example_weights, weighted_cross_entropy

__all__ = [
    "ClassifierLoss",
    "FinetuneSection",
    "OptimSettings",
    "TrainResult",
    "TrainingDivergedError",
    "batch_loader",
    "encode",
    "finetune_classifier",
    "finetune_mlm",
    "fit",
    "make_accelerator",
    "mask_tokens",
    "seeded",
]

Batch = dict[str, Tensor]


class FinetuneSection(Settings):
    """Task fine-tuning (sequence classification) and optional masked-LM domain fine-tuning."""

    epochs: int = Field(default=3, ge=1)
    lr: float = Field(default=5e-5, gt=0)
    batch_size: int = Field(default=32, ge=1)
    eval_batch_size: int = Field(default=64, ge=1)
    warmup_ratio: float = Field(default=0.1, ge=0, lt=1)  # linear warm-up share of the steps, then linear decay
    weight_decay: float = Field(default=0.01, ge=0)
    grad_clip: float = Field(default=1.0, gt=0)
    # masked-LM fine-tuning on the training texts before anything else (the "fine-tune on the corpus at hand"
    # step): adds the variant "teacher-mlm", and every recipe starts from it instead of the pretrained teacher
    mlm_domain: bool = False
    mlm_epochs: int = Field(default=1, ge=1)
    mlm_probability: float = Field(default=0.15, gt=0, lt=1)


class TrainingDivergedError(RuntimeError):
    """Training produced a non-finite loss or non-finite weights: the result would be meaningless."""


def _diverged(desc: str, where: str, loss: float, opt: OptimSettings) -> TrainingDivergedError:
    return TrainingDivergedError(
        f"{desc}: training diverged {where} (loss {loss}); the model is not usable. Fix: lower the learning rate "
        f"(lr = {opt.lr:g}; 1e-5..5e-5 is usual for BERT) or clip gradients harder (grad_clip = {opt.grad_clip:g}; "
        "1.0 is usual)."
    )


@dataclass(frozen=True)
class OptimSettings:
    """Optimiser and schedule of one training run (read from a config section with :meth:`of`)."""

    epochs: int
    lr: float
    batch_size: int
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    grad_clip: float = 1.0

    @classmethod
    def of(cls, section, **overrides) -> OptimSettings:
        """Take the optimiser fields of a config section (``FinetuneSection``, ``DistilSection``...)."""
        fields = {k: getattr(section, k) for k in cls.__dataclass_fields__}
        return cls(**{**fields, **overrides})


@dataclass(frozen=True)
class TrainResult:
    """What a training run reports: optimiser steps, mean loss per epoch, wall time, dev accuracy if measured."""

    steps: int
    epoch_losses: tuple[float, ...]
    seconds: float
    dev_accuracy: float | None = None

    @property
    def final_loss(self) -> float:
        return self.epoch_losses[-1] if self.epoch_losses else float("nan")


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed python, numpy and torch (CPU and CUDA) for the block; restore the previous RNG states after it."""
    states = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


def make_accelerator(device: str = "auto", amp: str = "no") -> Accelerator:
    """An ``Accelerator`` on ``device`` (``auto``: CUDA when available) with mixed precision ``amp``.

    Raises:
        ValueError: ``device="cuda"`` without a GPU, or ``amp="fp16"`` on CPU.
    """
    has_cuda = torch.cuda.is_available()
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device={device!r} is not supported; use 'auto', 'cpu' or 'cuda'.")
    if device == "cuda" and not has_cuda:
        raise ValueError("device='cuda' but no GPU is visible; use device = 'auto' or 'cpu'.")
    cpu = device == "cpu" or not has_cuda
    if amp == "fp16" and cpu:
        raise ValueError("amp='fp16' needs a GPU; use amp = 'bf16' or 'no' on CPU.")
    return Accelerator(cpu=cpu, mixed_precision=amp)


def encode(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int) -> Batch:
    """Tokenise ``texts`` to padded CPU tensors (input_ids, attention_mask[, token_type_ids])."""
    return dict(tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt"))


def batch_loader(
    n: int, collate: Callable[[list[int]], Batch], *, batch_size: int, shuffle: bool, seed: int
) -> DataLoader:
    """A loader over row indices ``0..n-1``; ``collate(indices)`` builds each batch; shuffling is seeded."""
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(list(range(n)), batch_size=batch_size, shuffle=shuffle, collate_fn=collate, generator=generator)


def mask_tokens(
    input_ids: Int[Tensor, "batch seq"],
    attention_mask: Int[Tensor, "batch seq"],
    tokenizer: PreTrainedTokenizerBase,
    *,
    probability: float,
    generator: torch.Generator,
) -> tuple[Int[Tensor, "batch seq"], Int[Tensor, "batch seq"]]:
    """BERT masking: returns (masked ids, labels with -100 where no prediction is asked)."""
    if tokenizer.mask_token_id is None:
        raise ValueError(f"tokenizer {type(tokenizer).__name__} has no mask token; masked-LM training needs one.")
    special = torch.isin(input_ids, torch.tensor(tokenizer.all_special_ids))
    candidates = attention_mask.bool() & ~special  # (batch, seq)
    draw = torch.rand(input_ids.shape, generator=generator)
    chosen = (draw < probability) & candidates
    empty = ~chosen.any(1) & candidates.any(1)  # rows that drew nothing: mask their highest-draw candidate
    forced = torch.nn.functional.one_hot((draw * candidates).argmax(1), input_ids.shape[1]).bool()
    chosen |= forced & empty.unsqueeze(1)
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, -100))
    how = torch.rand(input_ids.shape, generator=generator)
    masked = input_ids.clone()
    masked[chosen & (how < 0.8)] = tokenizer.mask_token_id
    swap = chosen & (how >= 0.8) & (how < 0.9)
    masked[swap] = torch.randint(len(tokenizer), input_ids.shape, generator=generator)[swap]
    return masked, labels


def _param_groups(module: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: no weight decay on biases and LayerNorm weights (BERT's convention)."""
    decay, no_decay = [], []
    for name, param in module.named_parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 or "LayerNorm" in name or "layer_norm" in name else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def fit(
    objective: nn.Module, loader: DataLoader, opt: OptimSettings, *, accelerator: Accelerator, desc: str
) -> TrainResult:
    """Minimise ``objective(batch)`` over ``opt.epochs`` passes of ``loader``; leaves ``objective`` in eval mode.

    The objective's trainable parameters (``requires_grad``) are updated in place; after training it is moved back
    from any ``accelerate`` wrapper, so the caller keeps using its own modules.

    Raises:
        TrainingDivergedError: a step's loss is not finite, or a trainable weight is not finite after training
            (e.g. a learning rate far too large); the message names the epoch and step, the loss and the fix.
    """
    start = time.perf_counter()
    optimizer = torch.optim.AdamW(_param_groups(objective, opt.weight_decay), lr=opt.lr)
    total = opt.epochs * len(loader)
    schedule = get_linear_schedule_with_warmup(optimizer, int(opt.warmup_ratio * total), total)
    model, optimizer, loader, schedule = accelerator.prepare(objective, optimizer, loader, schedule)
    losses: list[float] = []
    steps = 0
    model.train()
    try:
        for epoch in range(opt.epochs):
            running, count = 0.0, 0
            bar = tqdm(
                loader,
                desc=f"{desc} epoch {epoch + 1}/{opt.epochs}",
                leave=False,
                disable=not accelerator.is_local_main_process,
            )
            for batch in bar:
                with accelerator.autocast():
                    loss = model(batch)
                value = loss.item()
                where = f"at epoch {epoch + 1}/{opt.epochs}, step {count + 1}/{len(loader)}"
                if not np.isfinite(value):
                    raise _diverged(desc, where, value, opt)
                accelerator.backward(loss)
                accelerator.clip_grad_norm_(model.parameters(), opt.grad_clip)
                try:
                    optimizer.step()
                except RuntimeError as err:  # a rate beyond float range: torch refuses the update itself
                    if "overflow" not in str(err):
                        raise
                    raise _diverged(desc, f"{where}: the update overflows float", value, opt) from err
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
                running, count, steps = running + value, count + 1, steps + 1
                bar.set_postfix(loss=f"{running / count:.4f}")
            losses.append(running / max(count, 1))
        bad = [name for name, p in objective.named_parameters() if p.requires_grad and not torch.isfinite(p).all()]
        if bad:
            raise _diverged(
                desc,
                f"by the end of epoch {opt.epochs} ({len(bad)} weight tensors hold inf/NaN, e.g. {bad[0]})",
                losses[-1] if losses else float("nan"),
                opt,
            )
    finally:
        model.eval()
        accelerator.unwrap_model(model, keep_fp32_wrapper=False)
        accelerator.free_memory()
    return TrainResult(steps, tuple(losses), time.perf_counter() - start)


ClassifierLoss = Callable[[Tensor, Tensor, Tensor], Tensor]  # (logits, labels, training-row indices) -> loss


class _ModelLoss(nn.Module):
    """The model's own loss on a batch with ``labels``, or ``loss(logits, labels, rows)`` (batch key ``rows``)."""

    def __init__(self, model: nn.Module, loss: ClassifierLoss | None = None) -> None:
        super().__init__()
        self.model, self.loss = model, loss

    def forward(self, batch: Batch) -> Tensor:
        if self.loss is None:
            return self.model(**batch).loss
        inputs = {k: v for k, v in batch.items() if k not in ("labels", "rows")}
        return self.loss(self.model(**inputs).logits, batch["labels"], batch["rows"])


def _check_classifier(loaded: LoadedModel, train: TaskData) -> None:
    if loaded.head != "classifier":
        raise ValueError(f"finetune_classifier needs a model loaded with head='classifier', got head={loaded.head!r}.")
    n_labels = loaded.model.config.num_labels
    if n_labels != len(train.label_names):
        raise ValueError(
            f"the classifier has {n_labels} outputs but the task has {len(train.label_names)} classes; "
            f"load it with num_labels={len(train.label_names)}."
        )
    if len(np.unique(train.labels)) < 2:
        raise ValueError(f"training data {train.name!r} has a single class; a classifier needs at least two.")


def finetune_classifier(
    loaded: LoadedModel,
    train: TaskData,
    dev: TaskData | None,
    cfg: FinetuneSection,
    seed: int,
    *,
    max_length: int,
    accelerator: Accelerator | None = None,
    loss: ClassifierLoss | None = None,
) -> TrainResult:
    """Fine-tune a sequence classifier in place on ``train``; report accuracy on ``dev`` when given.

    Args:
        loaded: a model loaded with ``head="classifier"`` and one output per class of ``train``.
        train: training texts and labels; weighted rows give ``mean_i w_i CE_i`` (:mod:`pipeline.weighting`).
        dev: held-out data for the reported accuracy (no early stopping).
        cfg: the ``[finetune]`` section.
        seed: seeds initialisation-free randomness: batch order and dropout.
        max_length: tokens per text.
        accelerator: defaults to :func:`make_accelerator` on the available device.
        loss: ``(logits, labels, rows) -> loss`` instead of the (weighted) cross-entropy; it applies any weights.
    """
    _check_classifier(loaded, train)
    if loss is None and (weights := example_weights(train)) is not None:
        loss = weighted_cross_entropy(weights)
    loaded.report_truncation(train.texts, max_length, name=train.name)
    accelerator = accelerator or make_accelerator()
    labels = torch.tensor(train.labels)  # a copy: TaskData arrays are read-only

    def collate(rows: list[int]) -> Batch:
        batch = {**encode(loaded.tokenizer, [train.texts[i] for i in rows], max_length), "labels": labels[rows]}
        return batch if loss is None else {**batch, "rows": torch.tensor(rows)}

    with seeded(seed):
        loader = batch_loader(len(train), collate, batch_size=cfg.batch_size, shuffle=True, seed=seed)
        result = fit(
            _ModelLoss(loaded.model, loss), loader, OptimSettings.of(cfg), accelerator=accelerator, desc="fine-tune"
        )
    loaded.head_trained = True
    if dev is None or len(dev) == 0:
        return result
    logits = classifier_logits(loaded, dev.texts, batch_size=cfg.eval_batch_size, max_length=max_length)
    pred = logits.argmax(1).numpy()
    return TrainResult(result.steps, result.epoch_losses, result.seconds, float((pred == dev.labels).mean()))


def finetune_mlm(
    loaded: LoadedModel,
    texts: Sequence[str],
    cfg: FinetuneSection,
    seed: int,
    *,
    max_length: int,
    accelerator: Accelerator | None = None,
    weights: Tensor | None = None,
) -> TrainResult:
    """Masked-LM domain fine-tuning in place on ``texts`` (``cfg.mlm_epochs`` epochs, ``cfg.mlm_probability``).

    Args:
        loaded: a model loaded with ``head="mlm"`` (an untrained MLM head is trained along).
        texts: the domain corpus, e.g. the task's training texts.
        cfg: the ``[finetune]`` section.
        seed: seeds batch order, masking and dropout.
        max_length: tokens per text.
        accelerator: defaults to :func:`make_accelerator` on the available device.
        weights: one per text (:func:`pipeline.weighting.example_weights`): each masked token's loss times its text's.
    """
    if loaded.head != "mlm":
        raise ValueError(f"finetune_mlm needs a model loaded with head='mlm', got head={loaded.head!r}.")
    if not texts:
        raise ValueError("finetune_mlm got no texts; give the domain corpus.")
    loaded.report_truncation(texts, max_length, name="masked-LM corpus")
    accelerator = accelerator or make_accelerator()
    masking = torch.Generator().manual_seed(seed)

    def collate(rows: list[int]) -> Batch:
        batch = encode(loaded.tokenizer, [texts[i] for i in rows], max_length)
        batch["input_ids"], batch["labels"] = mask_tokens(
            batch["input_ids"],
            batch["attention_mask"],
            loaded.tokenizer,
            probability=cfg.mlm_probability,
            generator=masking,
        )
        return batch if weights is None else {**batch, "rows": torch.tensor(rows)}

    with seeded(seed):
        loader = batch_loader(len(texts), collate, batch_size=cfg.batch_size, shuffle=True, seed=seed)
        result = fit(
            _ModelLoss(loaded.model, None if weights is None else weighted_cross_entropy(weights)),
            loader,
            OptimSettings.of(cfg, epochs=cfg.mlm_epochs),
            accelerator=accelerator,
            desc="masked-LM",
        )
    loaded.head_trained = True
    return result
