"""Execute one build step of the variant plan (:mod:`.plan`): load the input, train or compress, report.

Inputs are loaded by the project's loader: a step starts from its parent's saved folder or from the configured
source (teacher or hub student). A classifier head that has to be created is initialised under the step's seed.
General distillation (a parent that was not task-fine-tuned) uses the teacher's masked-LM head when it has a
trained one, else hidden states only (:mod:`.distil`). Every saved config carries ``task_head_trained``, because
a saved random head would otherwise reload as if it were trained.

Every variant is saved as a sequence classifier with the task's classes, and with its MLM head when it has one
(:mod:`pipeline.mlm_head`: same weights file, provenance in ``config.mlm_head``):

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
(``erasure.safetensors``, :mod:`pipeline.erasure_hooks`), which the loader hooks in again. The job, inputs and
saving live in :mod:`pipeline.runs.build_job`; the mitigation operations in :mod:`pipeline.runs.mitigation_build`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import pandas as pd
import torch
from accelerate import Accelerator
from tqdm.auto import tqdm

from pipeline.anatomy import Anatomy
from pipeline.compress.distil import distil
from pipeline.compress.prune import head_importance, keep_sparsity, magnitude_prune, prune_heads
from pipeline.compress.tiny import tiny
from pipeline.data import GenderSwapper, TaskData
from pipeline.int8 import QUANTIZATION, quantise_dynamic
from pipeline.metrics.predict import classifier_logits
from pipeline.models import LoadedModel
from pipeline.runs.build_job import BuildJob, Built, Inputs, save_model
from pipeline.runs.build_job import carried as _carried
from pipeline.runs.build_job import importance_batches as _importance_batches
from pipeline.runs.build_job import report_rows as _report
from pipeline.runs.build_job import with_trained_mlm_head as _with_trained_mlm_head
from pipeline.runs.config import RunConfig
from pipeline.runs.mitigation_build import biasprune_op, erase_op
from pipeline.runs.plan import Step
from pipeline.runs.stages import Stage, StageContext, concat_tables
from pipeline.runs.task_metrics import prediction_rows
from pipeline.schema import tidy
from pipeline.train import finetune_classifier, finetune_mlm

__all__ = ["STAGE", "Built", "build_stage", "build_step", "save_model"]

log = logging.getLogger(__name__)


def _load(job: BuildJob) -> Built:
    return _carried(job.inputs.classifier(), job, [], None)


def _mlm(job: BuildJob) -> Built:
    loaded = job.inputs.mlm()
    result = finetune_mlm(
        loaded, job.train.texts, job.cfg.finetune, job.step.seed, max_length=job.max_length, accelerator=job.accelerator
    )
    return _with_trained_mlm_head(loaded, job, _report(result), "mlm")


def _finetune(job: BuildJob) -> Built:
    loaded = job.inputs.classifier()
    with keep_sparsity(loaded.anatomy) if job.step.params.get("keep_sparsity") else nullcontext():
        result = finetune_classifier(
            loaded,
            job.train,
            job.dev,
            job.cfg.finetune,
            job.step.seed,
            max_length=job.max_length,
            accelerator=job.accelerator,
        )
    return _carried(loaded, job, _report(result), "fine-tuned")


def _distil(job: BuildJob) -> Built:
    general = job.parent is None or job.parent.op == "mlm"  # the teacher was not task-fine-tuned
    teacher = job.inputs.general_teacher() if general else job.inputs.classifier()
    student, result = distil(
        teacher,
        job.train,
        job.cfg.compress.distil,
        job.step.seed,
        max_length=job.max_length,
        mixup=job.step.params["mixup"],
        swapper=(job.swapper or GenderSwapper.from_winobias()).part("train"),  # held-out words stay unseen
        mlm_probability=job.cfg.finetune.mlm_probability,
        accelerator=job.accelerator,
    )
    if student.head == "mlm":  # general distillation through the teacher's MLM head trained the student's
        return _with_trained_mlm_head(student, job, _report(result), "distil")
    if general:
        return Built(
            student,
            student,
            _report(result),
            None,
            "the teacher has no trained MLM head, so general distillation used hidden states only",
        )
    return _carried(student, job, _report(result), "distilled")


def _tiny(job: BuildJob) -> Built:
    student, results = tiny(
        job.inputs.classifier(),
        job.train,
        job.cfg.compress.tiny,
        job.step.seed,
        max_length=job.max_length,
        accelerator=job.accelerator,
    )
    rows = [r for result, name in zip(results, ("layers_", "prediction_")) for r in _report(result, name)]
    return Built(
        student,
        student,
        rows,
        None,
        "a TinyBERT-style student is built as a classifier, narrower than the teacher's MLM head",
    )


def _prune(job: BuildJob) -> Built:
    loaded, section = job.inputs.classifier(), job.cfg.compress.prune
    batches = _importance_batches(
        loaded, job.train, section.importance_examples, job.cfg.finetune.eval_batch_size, job.max_length
    )
    importance = head_importance(loaded.anatomy, batches, normalise=section.normalise)
    kept = prune_heads(loaded.anatomy, importance, job.step.params["fraction"])
    rows = [
        {
            "unit": "head",
            "layer": l,
            "head": h,
            "metric": "head_importance",
            "value": float(importance[l, h]),
            "n": min(section.importance_examples, len(job.train)),
        }
        for l in range(importance.shape[0])
        for h in range(importance.shape[1])
        if not torch.isnan(importance[l, h])
    ]
    rows.append({"unit": "model", "metric": "heads_kept", "value": sum(map(len, kept))})
    return _carried(loaded, job, rows, "head-pruned")


def _sparse(job: BuildJob) -> Built:
    loaded = job.inputs.classifier()
    reached = magnitude_prune(loaded.anatomy, job.step.params["sparsity"])
    return _carried(loaded, job, [{"unit": "model", "metric": "sparsity", "value": reached}], "magnitude-pruned")


def _int8(job: BuildJob) -> Built:
    loaded = job.inputs.classifier()
    loaded.model.config.quantization = QUANTIZATION  # saved with the float weights; re-quantised on load
    quantised = quantise_dynamic(loaded.model)
    model = LoadedModel(
        quantised, loaded.tokenizer, Anatomy(quantised), "classifier", loaded.head_trained, loaded.source
    )
    head, reason = job.inputs.mlm_head("quantised to int8")
    return Built(model, loaded, [], head, reason)


# The build-operation registry: one function per plan op (pipeline.runs.plan.Op). A new compression method is
# its module in pipeline/compress, one function here, one line in this dict and its chain in the plan.
OPERATIONS: dict[str, Callable[[BuildJob], Built]] = {
    "load": _load,
    "mlm": _mlm,
    "finetune": _finetune,
    "distil": _distil,
    "tiny": _tiny,
    "prune": _prune,
    "sparse": _sparse,
    "int8": _int8,
    "biasprune": biasprune_op,
    "erase": erase_op,
}


def build_step(
    step: Step,
    *,
    cfg: RunConfig,
    train: TaskData,
    dev: TaskData,
    parent: Step | None,
    parent_dir: Path | None,
    accelerator: Accelerator,
    swapper: GenderSwapper | None = None,
) -> Built:
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
    label_map = cfg.teacher.label_map if step.source == cfg.teacher.source else None
    inputs = Inputs(step, parent_dir, train.label_names, accelerator.device, label_map)
    return OPERATIONS[step.op](BuildJob(step, cfg, train, dev, parent, inputs, accelerator, swapper))


# ---- the build stage --------------------------------------------------------------------------------------------
def _unit_parts(ctx: StageContext, step: Step, parent: Step | None) -> dict:
    cfg = ctx.config
    section = cfg.compress.section_of(step.op)
    return {
        "step": step.__dict__,
        "parent": ctx.unit_hash("build", parent.key) if parent else None,
        "data": ctx.extras["fingerprint"],
        "task": cfg.task.model_dump(mode="json"),
        "finetune": cfg.finetune.model_dump(mode="json"),
        "amp": cfg.run.amp,
        "method": section.model_dump(mode="json") if section else None,
        **({"label_map": cfg.teacher.label_map} if cfg.teacher.label_map else {}),
    }


def _build_unit(ctx: StageContext, step: Step, parent: Step | None, folder: Path) -> dict[str, pd.DataFrame]:
    cfg, splits = ctx.config, ctx.extras["splits"]
    train = splits.train[step.training_set or cfg.task.training_sets[0]]
    built = build_step(
        step,
        cfg=cfg,
        train=train,
        dev=splits.dev,
        parent=parent,
        parent_dir=ctx.run_dir / parent.folder if parent else None,
        accelerator=ctx.extras["accelerator"](),
        swapper=ctx.extras["swapper"](),
    )
    save_model(built.to_save, folder, built.mlm_head, no_mlm_head=built.no_mlm_head)
    trained = built.model.head_trained and built.model.head == "classifier"
    rows = built.rows + [{"unit": "model", "metric": "head_trained", "value": float(trained)}]
    preds = []
    if built.model.head == "classifier":  # in-run predictions, to check reloads against
        logits = classifier_logits(
            built.model, splits.test.texts, batch_size=cfg.finetune.eval_batch_size, max_length=cfg.task.max_length
        ).numpy()
        preds = prediction_rows(logits, splits.test)
    del built
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return {
        "training": tidy(rows, variant=step.variant, seed=step.seed),
        "build_predictions": tidy(preds, variant=step.variant, seed=step.seed) if preds else concat_tables([]),
    }


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
        tables = ctx.unit(
            step.key,
            _unit_parts(ctx, step, parent),
            lambda tmp, s=step, p=parent: _build_unit(ctx, s, p, tmp),
            folder=ctx.run_dir / step.folder,
        )
        training.append(tables["training"])
        preds.append(tables["build_predictions"])
    return {"training": concat_tables(training), "build_predictions": concat_tables(preds)}


STAGE = Stage("build", build_stage, sections=("teacher", "task", "finetune", "compress", "hub_students"))
