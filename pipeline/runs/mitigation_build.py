"""What the mitigation build operations need from the analysis floor: the bias effect of every head.

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
from pipeline.data import GenderSwapper, TaskData
from pipeline.data.sampling import seeded_rows
from pipeline.models import LoadedModel

__all__ = ["head_bias_effects"]


def head_bias_effects(loaded: LoadedModel, data: TaskData, swapper: GenderSwapper | None, *, n_examples: int = 0,
                      objective: Objective = "abs_gap", max_length: int = 128, batch_size: int = 64,
                      seed: int = 0) -> tuple[Tensor, float, int]:
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
