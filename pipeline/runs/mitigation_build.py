"""The build operations of the mitigations (:data:`pipeline.runs.build.OPERATIONS` ``biasprune`` and ``erase``) and
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
from pipeline.compress.erase import erase
from pipeline.compress.prune import head_importance
from pipeline.data import GenderSwapper, TaskData
from pipeline.data.sampling import seeded_rows
from pipeline.models import LoadedModel
from pipeline.runs.build_job import BuildJob, Built, carried, importance_batches

__all__ = ["biasprune_op", "erase_op", "head_bias_effects"]


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
    loaded, section, params = job.inputs.classifier(), job.cfg.compress.biasprune, job.step.params
    anatomy, ids = loaded.anatomy, loaded.anatomy.head_ids
    n = heads_to_remove(anatomy.heads_per_layer, count=params.get("heads"), fraction=params.get("fraction"))
    batches = importance_batches(
        loaded, job.train, section.importance_examples, job.cfg.finetune.eval_batch_size, job.max_length
    )
    importance = head_importance(anatomy, batches, normalise=section.normalise)
    scores = {"head_importance": importance}
    rows: list[dict] = []
    if params["by"] == "bias":
        effect, intact, n_ex = head_bias_effects(
            loaded,
            job.dev,
            job.swapper,
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
        job.cfg.compress.erase,
        batch_size=job.cfg.finetune.eval_batch_size,
        max_length=job.max_length,
        seed=job.step.seed,
    )
    return carried(loaded, job, rows, "concept-erased")
