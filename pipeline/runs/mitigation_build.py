"""The build operations of the mitigations (the ``biasprune`` and ``erase`` records of
:mod:`pipeline.compress.registry`) and
what they need from the analysis floor: the bias effect of every head.

Bias-aware pruning (:mod:`pipeline.compress.biasprune`) ranks heads by how much removing each one alone lowers the
counterfactual gap on the dev split. That is single-head zero ablation (physical pruning removes a head's output,
which zero ablation reproduces) of :class:`attribution.scores.CounterfactualGap` on the dev texts that have a
gendered word (:func:`attribution.pruning_curve.head_bias_effects`, on the prefix-cached sweep); the base floor
cannot import the attribution engine, so the build stage computes it here and passes it in.
"""

from __future__ import annotations

from torch import Tensor

from attribution.data import AttributionData
from attribution.pruning_curve import Objective
from attribution.pruning_curve import head_bias_effects as _effects
from pipeline.compress.biasprune import bias_prune, heads_to_remove, importance_prune
from pipeline.compress.distil import distil
from pipeline.compress.erase import erase
from pipeline.compress.refit import refit
from pipeline.data import GenderSwapper, TaskData
from pipeline.data.sampling import seeded_rows
from pipeline.models import LoadedModel
from pipeline.runs.build_job import BuildJob, Built, carried, report_rows, task_importance

__all__ = ["biasprune_op", "erase_op", "fairdistil_op", "head_bias_effects", "refit_op"]


def head_bias_effects(
    loaded: LoadedModel,
    data: TaskData,
    swapper: GenderSwapper | None,
    *,
    n_examples: int = 0,
    objective: Objective = "abs_gap",
    max_length: int = 128,
    batch_size: int = 64,
    seed: int = 0,
) -> tuple[Tensor, float, int]:
    """The bias removed by switching off each head alone, ``bias(intact) - bias(head off)``, on ``n_examples`` of
    the texts of ``data`` that have a gendered word (seeded; 0 = all); bias = mean |gap| (``abs_gap``) or |mean gap|.

    Returns:
        (effect per (layer, position), NaN for heads a pruned layer lacks; the intact model's bias; examples used).

    Raises:
        ValueError: no text of ``data`` has a gendered word to swap (the counterfactual gap is undefined).
    """
    attribution = AttributionData.from_task(loaded, data, swapper=swapper, max_length=max_length)
    attribution = attribution.subset(seeded_rows(len(attribution), n_examples or None, seed))
    effect, intact = _effects(loaded, attribution, objective=objective, batch_size=batch_size)
    return effect, intact, len(attribution)


def biasprune_op(job: BuildJob) -> Built:
    """Bias-aware head pruning (``by = bias``) or its importance-pruned twin at the same count."""
    loaded, section, params = job.inputs.classifier(), job.section, job.step.params
    anatomy, ids = loaded.anatomy, loaded.anatomy.head_ids
    n = heads_to_remove(anatomy.heads_per_layer, count=params.get("heads"), fraction=params.get("fraction"))
    importance = task_importance(loaded, job)
    scores = {"head_importance": importance}
    rows: list[dict] = []
    if params["by"] == "bias":
        effect, intact, n_ex = head_bias_effects(
            loaded,
            job.dev,
            (job.swapper or GenderSwapper.from_winobias()).part("train"),  # held-out words judge it later
            n_examples=section.bias_examples,
            objective=section.objective,
            max_length=job.max_length,
            batch_size=job.cfg.finetune.eval_batch_size,
            seed=job.step.seed,
        )
        scores["bias_effect"] = effect
        rows.append({"unit": "model", "metric": "dev_bias", "value": intact, "n": n_ex})
        choice = bias_prune(anatomy, effect, importance, n, protect=section.protect)
    else:
        choice = importance_prune(anatomy, importance, n)
    rows += [
        {"unit": "head", "layer": l, "head": ids[l][h], "metric": metric, "value": float(s[l, h])}
        for metric, s in scores.items()
        for l in range(s.shape[0])
        for h in range(len(ids[l]))
    ]
    rows += [
        {"unit": "head", "layer": l, "head": ids[l][h], "metric": what, "value": 1.0}
        for what, heads in (("removed", choice.removed), ("protected", choice.protected))
        for l, h in heads
    ]
    rows += [
        {"unit": "model", "metric": "heads_removed", "value": len(choice.removed)},
        {"unit": "model", "metric": "heads_kept", "value": sum(map(len, choice.kept))},
    ]
    return carried(loaded, job, rows, "head-pruned")


def erase_op(job: BuildJob) -> Built:
    """LEACE erasers of gender fitted on the training split, installed in the input model and saved with it."""
    loaded = job.inputs.classifier()
    rows = erase(
        loaded,
        job.train,
        job.section,
        batch_size=job.cfg.finetune.eval_batch_size,
        max_length=job.max_length,
        seed=job.step.seed,
    )
    return carried(loaded, job, rows, "concept-erased")


def refit_op(job: BuildJob) -> Built:
    """More fine-tuning of the input classifier with the remedied loss of ``job.step.params['loss']`` (``eoreg``) or
    the plain one (its twin ``refit``); on a weighted training set both weigh their cross-entropy."""
    loaded = job.inputs.classifier()
    result = refit(
        loaded,
        job.train,
        job.dev,
        job.section,
        job.step.params["loss"],
        job.step.seed,
        max_length=job.max_length,
        eval_batch_size=job.cfg.finetune.eval_batch_size,
        accelerator=job.accelerator,
    )
    return carried(loaded, job, report_rows(result), "fine-tuned further")


def fairdistil_op(job: BuildJob) -> Built:
    """Task distillation of the fine-tuned input, fair (``job.step.params['fair']``) or plain (its twin ``distil``)."""
    student, result = distil(
        job.inputs.classifier(),
        job.train,
        job.section,
        job.step.seed,
        max_length=job.max_length,
        swapper=(job.swapper or GenderSwapper.from_winobias()).part("train"),  # held-out words stay unseen
        accelerator=job.accelerator,
        fair_gap=job.section.gap_weight if job.step.params["fair"] else None,
    )
    return carried(student, job, report_rows(result), "distilled")
