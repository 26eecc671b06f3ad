"""What a build operation works with (:mod:`pipeline.runs.build`): the job it reads, its loaded inputs, the built
variant it returns and how a variant is saved (with its MLM head and LEACE erasers)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator

from pipeline.class_map import apply_class_map
from pipeline.compress.config import MethodSection
from pipeline.compress.prune import head_importance
from pipeline.data import GenderSwapper, TaskData
from pipeline.erasure_hooks import save_erasers
from pipeline.mlm_head import MLM_HEAD_KEY, MlmHead, as_classifier, mlm_head_state, read_mlm_head
from pipeline.models import LoadedModel, load_model
from pipeline.runs.config import RunConfig
from pipeline.runs.plan import HEAD_TRAINED_KEY, Step
from pipeline.train import TrainResult, encode, seeded

__all__ = [
    "BuildJob",
    "Built",
    "Inputs",
    "carried",
    "importance_batches",
    "report_rows",
    "save_model",
    "task_importance",
    "with_trained_mlm_head",
]

log = logging.getLogger("pipeline.runs.build")


@dataclass
class Built:
    """A built variant: the classifier it computes with, what is saved, training report rows (tidy dicts), and its
    MLM head (or why it has none)."""

    model: LoadedModel
    to_save: LoadedModel
    rows: list[dict]
    mlm_head: MlmHead | None = None
    no_mlm_head: str = ""


def save_model(loaded: LoadedModel, folder: Path, mlm_head: MlmHead | None = None, *, no_mlm_head: str = "") -> None:
    """``save_pretrained`` of model and tokenizer into ``folder`` (with ``config.task_head_trained``), and the MLM
        head's tensors in the same weights file with ``config.mlm_head`` (:mod:`pipeline.mlm_head`), and the model's LEACE
    erasers, if it has any (:func:`pipeline.erasure_hooks.save_erasers`)."""
    config = loaded.model.config
    setattr(config, HEAD_TRAINED_KEY, bool(loaded.head_trained and loaded.head == "classifier"))
    setattr(config, MLM_HEAD_KEY, mlm_head.record() if mlm_head else {"absent": no_mlm_head or "none was given"})
    state = None if mlm_head is None else {**loaded.model.state_dict(), **mlm_head.state}
    loaded.model.save_pretrained(folder, state_dict=state)
    loaded.tokenizer.save_pretrained(folder)
    save_erasers(loaded.model, folder)


def report_rows(result: TrainResult, prefix: str = "") -> list[dict]:
    rows = [
        {"unit": "model", "metric": f"{prefix}train_loss", "value": result.final_loss},
        {"unit": "model", "metric": f"{prefix}train_steps", "value": result.steps},
        {"unit": "model", "metric": f"{prefix}train_seconds", "value": result.seconds},
    ]
    if result.dev_accuracy is not None:
        rows.append({"unit": "model", "metric": f"{prefix}dev_accuracy", "value": result.dev_accuracy})
    return rows


class Inputs:
    """Loads a step's input model on the training device."""

    def __init__(
        self,
        step: Step,
        parent_dir: Path | None,
        label_names: tuple[str, ...],
        device: torch.device,
        label_map: dict[str, str] | None = None,
    ):
        self.origin = str(parent_dir) if step.parent else step.source
        self.step, self.label_names, self.device = step, list(label_names), device
        self.label_map = label_map if not step.parent else None  # the teacher's head classes -> the data's

    def classifier(self) -> LoadedModel:
        if self.label_map:  # a head for the data's classes under other names: rows reordered into the data's order
            loaded = load_model(self.origin, head="classifier", device=self.device)
            apply_class_map(loaded.model, self.label_names, self.label_map)
            return loaded
        with seeded(self.step.seed):  # a new classifier head is initialised under the step's seed
            loaded = load_model(self.origin, head="classifier", label_names=self.label_names, device=self.device)
        trained = getattr(loaded.model.config, HEAD_TRAINED_KEY, None)
        if trained is not None:
            loaded.head_trained = bool(trained)
        return loaded

    def mlm(self) -> LoadedModel:
        return load_model(self.origin, head="mlm", device=self.device)

    def mlm_head(self, change: str | None = None) -> tuple[MlmHead | None, str]:
        """The input's MLM head (after ``change`` to the encoder), or (None, why there is none)."""
        head, reason = read_mlm_head(self.origin)
        return (head.after(change) if head is not None and change else head), reason

    def general_teacher(self) -> LoadedModel:
        """The masked-LM model when its MLM head is trained, else the classifier (hidden-state distillation)."""
        models_log = logging.getLogger("pipeline.models")
        level = models_log.level
        models_log.setLevel(logging.ERROR)  # "no trained mlm head" is expected here; reported below instead
        try:
            loaded = self.mlm()
        finally:
            models_log.setLevel(level)
        if loaded.head_trained:
            return loaded
        log.info("%s has no trained MLM head: general distillation uses hidden states only.", self.origin)
        return self.classifier()


def importance_batches(loaded: LoadedModel, train: TaskData, n: int, batch_size: int, max_length: int) -> list[dict]:
    rows = list(range(min(n, len(train))))
    batches = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        batch = encode(loaded.tokenizer, [train.texts[i] for i in chunk], max_length)
        batch["labels"] = torch.tensor(train.labels[chunk])
        batches.append({k: v.to(loaded.device) for k, v in batch.items()})
    return batches


def task_importance(loaded: LoadedModel, job: BuildJob) -> torch.Tensor:
    """Every head's importance for the task, ``E|dL/dg_h|`` (Michel et al. 2019), on the first
    ``job.section.importance_examples`` training rows (l2-normalised per layer when ``job.section.normalise``)."""
    section = job.section
    batches = importance_batches(
        loaded, job.train, section.importance_examples, job.cfg.finetune.eval_batch_size, job.max_length
    )
    return head_importance(loaded.anatomy, batches, normalise=section.normalise)


@dataclass
class BuildJob:
    """What one build operation reads."""

    step: Step
    cfg: RunConfig
    train: TaskData
    dev: TaskData
    parent: Step | None
    inputs: Inputs
    accelerator: Accelerator
    swapper: GenderSwapper | None
    section: MethodSection | None = None  # the step's [compress.<key>] settings (None for load / mlm / finetune)

    @property
    def max_length(self) -> int:
        return self.cfg.task.max_length


def carried(loaded: LoadedModel, job: BuildJob, rows: list[dict], change: str | None) -> Built:
    """A classifier variant saved with its input's MLM head (after ``change``), if the input has one."""
    head, reason = job.inputs.mlm_head(change)
    return Built(loaded, loaded, rows, head, reason)


def with_trained_mlm_head(mlm: LoadedModel, job: BuildJob, rows: list[dict], origin: str) -> Built:
    """A masked LM saved as a classifier with the task's classes (a new, untrained head) and its MLM head."""
    classifier = as_classifier(mlm, job.train.label_names, job.step.seed)
    return Built(classifier, classifier, rows, MlmHead(mlm_head_state(mlm.model), origin))
