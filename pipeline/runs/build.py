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
saving live in :mod:`pipeline.runs.build_job`; the compression operations in :mod:`pipeline.runs.compress_build`,
the mitigation operations in :mod:`pipeline.runs.mitigation_build`, each named by its method's record
(:mod:`pipeline.compress.registry`).
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

from pipeline.compress.prune import keep_sparsity
from pipeline.compress.registry import build_op, compression_methods, reads_swaps
from pipeline.data import GenderSwapper, TaskData, data_root
from pipeline.metrics.benchmark_files import SWAP_LISTS, files_hashes
from pipeline.metrics.predict import classifier_logits
from pipeline.runs.build_job import BuildJob, Built, Inputs, save_model
from pipeline.runs.build_job import carried as _carried
from pipeline.runs.build_job import report_rows as _report
from pipeline.runs.build_job import with_trained_mlm_head as _with_trained_mlm_head
from pipeline.runs.config import RunConfig
from pipeline.runs.plan import Step, plan_variants
from pipeline.runs.stages import Stage, StageContext, concat_tables
from pipeline.runs.task_metrics import prediction_rows
from pipeline.schema import tidy
from pipeline.train import finetune_classifier, finetune_mlm
from pipeline.weighting import example_weights

__all__ = ["STAGE", "Built", "build_stage", "build_step", "save_model"]

log = logging.getLogger(__name__)


def _load(job: BuildJob) -> Built:
    return _carried(job.inputs.classifier(), job, [], None)


def _mlm(job: BuildJob) -> Built:
    loaded = job.inputs.mlm()
    result = finetune_mlm(
        loaded,
        job.train.texts,
        job.cfg.finetune,
        job.step.seed,
        max_length=job.max_length,
        accelerator=job.accelerator,
        weights=example_weights(job.train),
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


# The operations of the plan's own steps; a compression op is its method's record's
# (pipeline.compress.registry.build_op).
PIPELINE_OPS: dict[str, Callable[[BuildJob], Built]] = {"load": _load, "mlm": _mlm, "finetune": _finetune}


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
    """Build one variant with the operation of ``step.op``: :data:`PIPELINE_OPS`, or the build function of the
    compression method whose record has the op.

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
    operation = PIPELINE_OPS.get(step.op) or build_op(step.op)
    if operation is None:
        known = [*PIPELINE_OPS, *(op for m in compression_methods() for op in m.build)]
        raise ValueError(f"unknown build op {step.op!r} in step {step.key}; known: {', '.join(known)}.")
    label_map = cfg.teacher.label_map if step.source == cfg.teacher.source else None
    inputs = Inputs(step, parent_dir, train.label_names, accelerator.device, label_map)
    section = cfg.compress.section_of(step.op)
    return operation(BuildJob(step, cfg, train, dev, parent, inputs, accelerator, swapper, section))


# ---- the build stage --------------------------------------------------------------------------------------------
def _unit_parts(ctx: StageContext, step: Step, parent: Step | None) -> dict:
    cfg = ctx.config
    section = cfg.compress.section_of(step.op)
    return {
        "step": step.__dict__,
        "parent": ctx.unit_hash("build", parent.key) if parent else None,
        "data": ctx.run.fingerprint,
        "task": cfg.task.model_dump(mode="json"),
        "finetune": cfg.finetune.model_dump(mode="json"),
        "amp": cfg.run.amp,
        "method": section.model_dump(mode="json") if section else None,
        **({"label_map": cfg.teacher.label_map} if cfg.teacher.label_map else {}),
        **({"swap_lists": _swap_lists(cfg)} if reads_swaps(step.op, step.params) else {}),
    }


def _swap_lists(cfg: RunConfig) -> dict[str, str]:
    """Content hashes of the gender swap lists (under the run's data root) a build step reads."""
    return files_hashes(data_root(cfg.run.data_root), SWAP_LISTS)


def _build_unit(ctx: StageContext, step: Step, parent: Step | None, folder: Path) -> dict[str, pd.DataFrame]:
    cfg, splits = ctx.config, ctx.run.splits
    train = splits.train[step.training_set or cfg.task.training_sets[0]]
    built = build_step(
        step,
        cfg=cfg,
        train=train,
        dev=splits.dev,
        parent=parent,
        parent_dir=ctx.run_dir / parent.folder if parent else None,
        accelerator=ctx.run.accelerator(),
        swapper=ctx.run.swapper(),
    )
    save_model(built.to_save, folder, built.mlm_head, no_mlm_head=built.no_mlm_head)
    trained = built.model.head_trained and built.model.head == "classifier"
    rows = built.rows + [{"unit": "model", "metric": "head_trained", "value": float(trained)}]
    preds = []
    if built.model.head == "classifier":  # in-run predictions, to check reloads against
        logits = classifier_logits(built.model, splits.test.texts, batch_size=cfg.finetune.eval_batch_size,
                                   max_length=cfg.task.max_length, genders=splits.test.genders).numpy()  # fmt: skip
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
    plan = ctx.run.plan
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


def _reads(cfg: RunConfig) -> dict[str, str]:
    """The swap lists' hashes when a planned step reads them (they also enter those steps' unit keys)."""
    return _swap_lists(cfg) if any(reads_swaps(s.op, s.params) for s in plan_variants(cfg)) else {}


STAGE = Stage("build", build_stage, sections=("teacher", "task", "finetune", "compress", "hub_students"), reads=_reads)
