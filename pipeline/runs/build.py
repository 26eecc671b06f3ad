"""Execute one build step of the variant plan (:mod:`.plan`): load the input, train or compress, report.

Inputs are loaded by the project's loader: a step starts from its parent's saved folder or from the configured
source (teacher or hub student). A classifier head that has to be created is initialised under the step's seed.
General distillation (a parent that was not task-fine-tuned) uses the teacher's masked-LM head when it has a
trained one, else hidden states only (:mod:`.distil`). Every saved config carries ``task_head_trained``, because
a saved random head would otherwise reload as if it were trained.

Every variant is saved as a sequence classifier with the task's classes, and with its MLM head when it has one
(:mod:`pipeline.heads`: same weights file, provenance in ``config.mlm_head``):

=====================  ==========================================================================================
op                     MLM head saved with the variant
=====================  ==========================================================================================
``load``               the source's own (``checkpoint``: pretrained together with the encoder), if it has one
``mlm``                the one masked-LM fine-tuning trained (the classifier head is new and untrained)
``distil`` (general)   the student's, trained by general distillation (copied from the teacher's, then trained
                       with the masked-LM and soft-target losses); the classifier head is new and untrained
``distil`` (task)      the teacher's, carried over (``since`` gains ``distilled``)
``finetune``           the input's, carried over (``since`` gains ``fine-tuned``); likewise ``prune``
                       (``head-pruned``), ``sparse`` (``magnitude-pruned``), ``int8`` (``quantised to int8``)
``tiny``               none: the student is narrower than the teacher's head
``biasprune``          the input's, carried over (``head-pruned``)
``erase``              the input's, carried over (``concept-erased``); the erasers act on the encoder below it
=====================  ==========================================================================================

A concept-erased variant (op ``erase``, or any model built from one) is saved with its LEACE erasers
(``erasure.safetensors``, :mod:`pipeline.erasure_hooks`), which the loader hooks in again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from accelerate import Accelerator
from tqdm.auto import tqdm

from pipeline.anatomy import Anatomy
from pipeline.compress.biasprune import bias_prune, heads_to_remove, importance_prune
from pipeline.compress.distil import distil
from pipeline.compress.erase import erase
from pipeline.compress.prune import head_importance, keep_sparsity, magnitude_prune, prune_heads
from pipeline.compress.quantise import QUANTIZATION, quantise_dynamic
from pipeline.compress.tiny import tiny
from pipeline.data import GenderSwapper, TaskData
from pipeline.erasure_hooks import save_erasers
from pipeline.heads import MLM_HEAD_KEY, MlmHead, as_classifier, mlm_head_state, read_mlm_head
from pipeline.metrics.predict import classifier_logits
from pipeline.models import LoadedModel, load_model
from pipeline.runs.config import RunConfig
from pipeline.runs.mitigation_build import head_bias_effects
from pipeline.runs.plan import HEAD_TRAINED_KEY, Step
from pipeline.runs.stages import Stage, StageContext, concat_tables
from pipeline.runs.task_metrics import prediction_rows
from pipeline.schema import tidy
from pipeline.train import TrainResult, encode, finetune_classifier, finetune_mlm, seeded

__all__ = ["STAGE", "Built", "build_stage", "build_step", "save_model"]

log = logging.getLogger(__name__)
# source whose change invalidates built models (the data enters keys by content, not by code)


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
    head's tensors in the same weights file with ``config.mlm_head`` (:mod:`pipeline.heads`), and the model's LEACE
erasers, if it has any (:func:`pipeline.erasure_hooks.save_erasers`)."""
    config = loaded.model.config
    setattr(config, HEAD_TRAINED_KEY, bool(loaded.head_trained and loaded.head == "classifier"))
    setattr(config, MLM_HEAD_KEY, mlm_head.record() if mlm_head else {"absent": no_mlm_head or "none was given"})
    state = None if mlm_head is None else {**loaded.model.state_dict(), **mlm_head.state}
    loaded.model.save_pretrained(folder, state_dict=state)
    loaded.tokenizer.save_pretrained(folder)
    save_erasers(loaded.model, folder)


def _report(result: TrainResult, prefix: str = "") -> list[dict]:
    rows = [{"unit": "model", "metric": f"{prefix}train_loss", "value": result.final_loss},
            {"unit": "model", "metric": f"{prefix}train_steps", "value": result.steps},
            {"unit": "model", "metric": f"{prefix}train_seconds", "value": result.seconds}]
    if result.dev_accuracy is not None:
        rows.append({"unit": "model", "metric": f"{prefix}dev_accuracy", "value": result.dev_accuracy})
    return rows


class _Inputs:
    """Loads a step's input model on the training device."""

    def __init__(self, step: Step, parent_dir: Path | None, label_names: tuple[str, ...], device: torch.device):
        self.origin = str(parent_dir) if step.parent else step.source
        self.step, self.label_names, self.device = step, list(label_names), device

    def classifier(self) -> LoadedModel:
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


def _importance_batches(loaded: LoadedModel, train: TaskData, n: int, batch_size: int, max_length: int) -> list[dict]:
    rows = list(range(min(n, len(train))))
    batches = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        batch = encode(loaded.tokenizer, [train.texts[i] for i in chunk], max_length)
        batch["labels"] = torch.tensor(train.labels[chunk])
        batches.append({k: v.to(loaded.device) for k, v in batch.items()})
    return batches


@dataclass
class _Job:
    """What one build operation reads."""

    step: Step
    cfg: RunConfig
    train: TaskData
    dev: TaskData
    parent: Step | None
    inputs: _Inputs
    accelerator: Accelerator
    swapper: GenderSwapper | None

    @property
    def max_length(self) -> int:
        return self.cfg.task.max_length


def _carried(loaded: LoadedModel, job: _Job, rows: list[dict], change: str | None) -> Built:
    """A classifier variant saved with its input's MLM head (after ``change``), if the input has one."""
    head, reason = job.inputs.mlm_head(change)
    return Built(loaded, loaded, rows, head, reason)


def _with_trained_mlm_head(mlm: LoadedModel, job: _Job, rows: list[dict], origin: str) -> Built:
    """A masked LM saved as a classifier with the task's classes (a new, untrained head) and its MLM head."""
    classifier = as_classifier(mlm, job.train.label_names, job.step.seed)
    return Built(classifier, classifier, rows, MlmHead(mlm_head_state(mlm.model), origin))


def _load(job: _Job) -> Built:
    return _carried(job.inputs.classifier(), job, [], None)


def _mlm(job: _Job) -> Built:
    loaded = job.inputs.mlm()
    result = finetune_mlm(loaded, job.train.texts, job.cfg.finetune, job.step.seed, max_length=job.max_length,
                          accelerator=job.accelerator)
    return _with_trained_mlm_head(loaded, job, _report(result), "mlm")


def _finetune(job: _Job) -> Built:
    loaded = job.inputs.classifier()
    with keep_sparsity(loaded.anatomy) if job.step.params.get("keep_sparsity") else nullcontext():
        result = finetune_classifier(loaded, job.train, job.dev, job.cfg.finetune, job.step.seed,
                                     max_length=job.max_length, accelerator=job.accelerator)
    return _carried(loaded, job, _report(result), "fine-tuned")


def _distil(job: _Job) -> Built:
    general = job.parent is None or job.parent.op == "mlm"  # the teacher was not task-fine-tuned
    teacher = job.inputs.general_teacher() if general else job.inputs.classifier()
    student, result = distil(teacher, job.train, job.cfg.compress.distil, job.step.seed, max_length=job.max_length,
                             mixup=job.step.params["mixup"], swapper=job.swapper,
                             mlm_probability=job.cfg.finetune.mlm_probability, accelerator=job.accelerator)
    if student.head == "mlm":  # general distillation through the teacher's MLM head trained the student's
        return _with_trained_mlm_head(student, job, _report(result), "distil")
    if general:
        return Built(student, student, _report(result), None,
                     "the teacher has no trained MLM head, so general distillation used hidden states only")
    return _carried(student, job, _report(result), "distilled")


def _tiny(job: _Job) -> Built:
    student, results = tiny(job.inputs.classifier(), job.train, job.cfg.compress.tiny, job.step.seed,
                            max_length=job.max_length, accelerator=job.accelerator)
    rows = [r for result, name in zip(results, ("layers_", "prediction_")) for r in _report(result, name)]
    return Built(student, student, rows, None,
                 "a TinyBERT-style student is built as a classifier, narrower than the teacher's MLM head")


def _prune(job: _Job) -> Built:
    loaded, section = job.inputs.classifier(), job.cfg.compress.prune
    batches = _importance_batches(loaded, job.train, section.importance_examples, job.cfg.finetune.eval_batch_size,
                                  job.max_length)
    importance = head_importance(loaded.anatomy, batches, normalise=section.normalise)
    kept = prune_heads(loaded.anatomy, importance, job.step.params["fraction"])
    rows = [{"unit": "head", "layer": l, "head": h, "metric": "head_importance", "value": float(importance[l, h]),
             "n": min(section.importance_examples, len(job.train))}
            for l in range(importance.shape[0]) for h in range(importance.shape[1])
            if not torch.isnan(importance[l, h])]
    rows.append({"unit": "model", "metric": "heads_kept", "value": sum(map(len, kept))})
    return _carried(loaded, job, rows, "head-pruned")


def _biasprune(job: _Job) -> Built:
    """Bias-aware head pruning (``by = bias``) or its importance-pruned twin at the same count."""
    loaded, section, params = job.inputs.classifier(), job.cfg.compress.biasprune, job.step.params
    anatomy, ids = loaded.anatomy, loaded.anatomy.head_ids
    n = heads_to_remove(anatomy.heads_per_layer, count=params.get("heads"), fraction=params.get("fraction"))
    batches = _importance_batches(loaded, job.train, section.importance_examples, job.cfg.finetune.eval_batch_size,
                                  job.max_length)
    importance = head_importance(anatomy, batches, normalise=section.normalise)
    scores = {"head_importance": importance}
    rows: list[dict] = []
    if params["by"] == "bias":
        effect, intact, n_ex = head_bias_effects(loaded, job.dev, job.swapper, n_examples=section.bias_examples,
                                                 objective=section.objective, max_length=job.max_length,
                                                 batch_size=job.cfg.finetune.eval_batch_size, seed=job.step.seed)
        scores["bias_effect"] = effect
        rows.append({"unit": "model", "metric": "dev_bias", "value": intact, "n": n_ex})
        choice = bias_prune(anatomy, effect, importance, n, protect=section.protect)
    else:
        choice = importance_prune(anatomy, importance, n)
    rows += [{"unit": "head", "layer": l, "head": ids[l][h], "metric": metric, "value": float(s[l, h])}
             for metric, s in scores.items() for l in range(s.shape[0]) for h in range(len(ids[l]))]
    rows += [{"unit": "head", "layer": l, "head": ids[l][h], "metric": what, "value": 1.0}
             for what, heads in (("removed", choice.removed), ("protected", choice.protected)) for l, h in heads]
    rows += [{"unit": "model", "metric": "heads_removed", "value": len(choice.removed)},
             {"unit": "model", "metric": "heads_kept", "value": sum(map(len, choice.kept))}]
    return _carried(loaded, job, rows, "head-pruned")


def _erase(job: _Job) -> Built:
    """LEACE erasers of gender fitted on the training split, installed in the input model and saved with it."""
    loaded = job.inputs.classifier()
    rows = erase(loaded, job.train, job.cfg.compress.erase, batch_size=job.cfg.finetune.eval_batch_size,
                 max_length=job.max_length, seed=job.step.seed)
    return _carried(loaded, job, rows, "concept-erased")


def _sparse(job: _Job) -> Built:
    loaded = job.inputs.classifier()
    reached = magnitude_prune(loaded.anatomy, job.step.params["sparsity"])
    return _carried(loaded, job, [{"unit": "model", "metric": "sparsity", "value": reached}], "magnitude-pruned")


def _int8(job: _Job) -> Built:
    loaded = job.inputs.classifier()
    loaded.model.config.quantization = QUANTIZATION  # saved with the float weights; re-quantised on load
    quantised = quantise_dynamic(loaded.model)
    model = LoadedModel(quantised, loaded.tokenizer, Anatomy(quantised), "classifier", loaded.head_trained,
                        loaded.source)
    head, reason = job.inputs.mlm_head("quantised to int8")
    return Built(model, loaded, [], head, reason)


# The build-operation registry: one function per plan op (pipeline.runs.plan.Op). A new compression method is
# its module in pipeline/compress, one function here, one line in this dict and its chain in the plan.
OPERATIONS: dict[str, Callable[[_Job], Built]] = {
    "load": _load, "mlm": _mlm, "finetune": _finetune, "distil": _distil, "tiny": _tiny, "prune": _prune,
    "sparse": _sparse, "int8": _int8, "biasprune": _biasprune, "erase": _erase,
}


def build_step(step: Step, *, cfg: RunConfig, train: TaskData, dev: TaskData, parent: Step | None,
               parent_dir: Path | None, accelerator: Accelerator, swapper: GenderSwapper | None = None) -> Built:
    """Build one variant with the operation :data:`OPERATIONS` holds for ``step.op``.

    Args:
        step: the plan step.
        cfg: the run config (each operation reads its own section).
        train: the training set of the step (its ``training_set``, or the original one for data-free steps).
        dev: the dev split, for the reported dev accuracy of fine-tuning.
        parent: the parent's step (None when starting from ``step.source``).
        parent_dir: the parent's saved folder.
        accelerator: device placement and mixed precision of training.
        swapper: gender-word swapper for mixup.
    """
    if step.op not in OPERATIONS:
        raise ValueError(f"unknown build op {step.op!r} in step {step.key}; known: {', '.join(OPERATIONS)}.")
    inputs = _Inputs(step, parent_dir, train.label_names, accelerator.device)
    return OPERATIONS[step.op](_Job(step, cfg, train, dev, parent, inputs, accelerator, swapper))


# ---- the build stage --------------------------------------------------------------------------------------------
def _unit_parts(ctx: StageContext, step: Step, parent: Step | None) -> dict:
    cfg = ctx.config
    section = cfg.compress.section_of(step.op)
    return {"step": step.__dict__, "parent": ctx.unit_hash("build", parent.key) if parent else None,
            "data": ctx.extras["fingerprint"], "task": cfg.task.model_dump(mode="json"),
            "finetune": cfg.finetune.model_dump(mode="json"), "amp": cfg.run.amp,
            "method": section.model_dump(mode="json") if section else None}


def _build_unit(ctx: StageContext, step: Step, parent: Step | None, folder: Path) -> dict[str, pd.DataFrame]:
    cfg, splits = ctx.config, ctx.extras["splits"]
    train = splits.train[step.training_set or cfg.task.training_sets[0]]
    built = build_step(step, cfg=cfg, train=train, dev=splits.dev, parent=parent,
                       parent_dir=ctx.run_dir / parent.folder if parent else None,
                       accelerator=ctx.extras["accelerator"](), swapper=ctx.extras["swapper"]())
    save_model(built.to_save, folder, built.mlm_head, no_mlm_head=built.no_mlm_head)
    trained = built.model.head_trained and built.model.head == "classifier"
    rows = built.rows + [{"unit": "model", "metric": "head_trained", "value": float(trained)}]
    preds = []
    if built.model.head == "classifier":  # in-run predictions, to check reloads against
        logits = classifier_logits(built.model, splits.test.texts, batch_size=cfg.finetune.eval_batch_size,
                                   max_length=cfg.task.max_length).numpy()
        preds = prediction_rows(logits, splits.test)
    del built
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return {"training": tidy(rows, variant=step.variant, seed=step.seed),
            "build_predictions": tidy(preds, variant=step.variant, seed=step.seed) if preds else concat_tables([])}


def build_stage(ctx: StageContext) -> dict[str, pd.DataFrame]:
    """Build every planned model (cached per model); tables ``training`` and ``build_predictions``.

    ``training``: per build step, training loss/steps/seconds, dev accuracy, heads kept and head importance
    (prune), sparsity reached (sparse), ``head_trained``. ``build_predictions``: test-set predictions of the
    in-memory model right after it was built (same columns as ``predictions``).
    """
    plan = ctx.extras["plan"]
    by_key = {s.key: s for s in plan}
    training, preds = [], []
    for step in tqdm(plan, desc="build", disable=not ctx.is_main):
        parent = by_key.get(step.parent) if step.parent else None
        tables = ctx.unit(step.key, _unit_parts(ctx, step, parent),
                          lambda tmp, s=step, p=parent: _build_unit(ctx, s, p, tmp), folder=ctx.run_dir / step.folder)
        training.append(tables["training"])
        preds.append(tables["build_predictions"])
    return {"training": concat_tables(training), "build_predictions": concat_tables(preds)}


STAGE = Stage("build", build_stage, sections=("teacher", "task", "finetune", "compress", "hub_students"))
