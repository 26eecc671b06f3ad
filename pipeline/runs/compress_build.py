"""The build operations of the compression methods (named by their records, :mod:`pipeline.compress.registry`):
each takes a :class:`~pipeline.runs.build_job.BuildJob` (the step, its input, its ``[compress.<key>]`` section as
``job.section``) and returns the :class:`~pipeline.runs.build_job.Built` variant with its training report rows."""

from __future__ import annotations

import torch

from pipeline.anatomy import Anatomy
from pipeline.compress.distil import distil
from pipeline.compress.eo import fit_eo
from pipeline.compress.prune import magnitude_prune, prune_heads
from pipeline.compress.tiny import tiny
from pipeline.data import GenderSwapper
from pipeline.int8 import QUANTIZATION, quantise_dynamic
from pipeline.models import LoadedModel
from pipeline.runs.build_job import BuildJob, Built, carried, report_rows, task_importance, with_trained_mlm_head

__all__ = ["distil_op", "eo_op", "int8_op", "prune_op", "sparse_op", "tiny_op"]


def distil_op(job: BuildJob) -> Built:
    general = job.parent is None or job.parent.op == "mlm"  # the teacher was not task-fine-tuned
    teacher = job.inputs.general_teacher() if general else job.inputs.classifier()
    student, result = distil(
        teacher,
        job.train,
        job.section,
        job.step.seed,
        max_length=job.max_length,
        mixup=job.step.params["mixup"],
        swapper=(job.swapper or GenderSwapper.from_winobias()).part("train"),  # held-out words stay unseen
        mlm_probability=job.cfg.finetune.mlm_probability,
        accelerator=job.accelerator,
    )
    if student.head == "mlm":  # general distillation through the teacher's MLM head trained the student's
        return with_trained_mlm_head(student, job, report_rows(result), "distil")
    if general:
        return Built(
            student,
            student,
            report_rows(result),
            None,
            "the teacher has no trained MLM head, so general distillation used hidden states only",
        )
    return carried(student, job, report_rows(result), "distilled")


def tiny_op(job: BuildJob) -> Built:
    student, results = tiny(
        job.inputs.classifier(),
        job.train,
        job.section,
        job.step.seed,
        max_length=job.max_length,
        accelerator=job.accelerator,
    )
    rows = [r for result, name in zip(results, ("layers_", "prediction_")) for r in report_rows(result, name)]
    return Built(
        student,
        student,
        rows,
        None,
        "a TinyBERT-style student is built as a classifier, narrower than the teacher's MLM head",
    )


def prune_op(job: BuildJob) -> Built:
    loaded, section = job.inputs.classifier(), job.section
    importance = task_importance(loaded, job)
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
    return carried(loaded, job, rows, "head-pruned")


def sparse_op(job: BuildJob) -> Built:
    loaded = job.inputs.classifier()
    reached = magnitude_prune(loaded.anatomy, job.step.params["sparsity"])
    return carried(loaded, job, [{"unit": "model", "metric": "sparsity", "value": reached}], "magnitude-pruned")


def int8_op(job: BuildJob) -> Built:
    loaded = job.inputs.classifier()
    loaded.model.config.quantization = QUANTIZATION  # saved with the float weights; re-quantised on load
    quantised = quantise_dynamic(loaded.model)
    model = LoadedModel(
        quantised, loaded.tokenizer, Anatomy(quantised), "classifier", loaded.head_trained, loaded.source
    )
    head, reason = job.inputs.mlm_head("quantised to int8")
    return Built(model, loaded, [], head, reason)


def eo_op(job: BuildJob) -> Built:
    """The equal-opportunity rule fitted on the dev split, installed in the input classifier and saved with it (its
    encoder and MLM head are unchanged)."""
    loaded = job.inputs.classifier()
    rows = fit_eo(
        loaded,
        job.dev,
        job.section,
        job.step.seed,
        batch_size=job.cfg.finetune.eval_batch_size,
        max_length=job.max_length,
    )
    return carried(loaded, job, rows, None)
