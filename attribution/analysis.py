"""The attribution stage of a pipeline run: every configured method on one model variant, as tidy tables.

:func:`run_attribution` is what the pipeline's analysis stage calls per variant (the orchestrator owns the loop
and writes the tables into the run folder): head ablation (single heads and whole layers, plus leave-one-in if
asked), cumulative curves ordered by gradient importance (most and least important first), gradient head
importance (Michel et al. 2019), integrated gradients over heads, FFN neurons and tokens (Sundararajan et al.
2017; Hao et al. 2021; Dai et al. 2022), activation patching (Vig et al. 2020), and bias-aware pruning curves
(:mod:`attribution.pruning_curve`). The score follows the model's
head: the counterfactual gap for classifiers (patching: the true-class probability, whose total effect is that
gap), the pronoun gap for masked LMs, the SEAT effect size for bare encoders.

A method that cannot run on a variant is not silently absent: int8 models (no gradients, see
:func:`pipeline.compress.quantise.supports_gradients`) and scores with zero gradient everywhere get one row with
value NaN and a ``skipped`` column holding the reason, and the reason is logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from attribution.ablation import HeadAblation
from attribution.atp import AttributionPatching
from attribution.config import METHOD_SPECS, AttributionConfig, MethodSpec
from attribution.data import AttributionData
from attribution.errors import GateIndependentScoreError
from attribution.ig import HeadIntegratedGradients, NeuronIntegratedGradients, TokenIntegratedGradients
from attribution.importance import GradientHeadImportance
from attribution.patching import ActivationPatching
from attribution.pruning_curve import pruning_curve
from attribution.scores import CounterfactualGap, PronounGap, Score, SeatEffect, TrueClassProb
from pipeline.compress.quantise import supports_gradients
from pipeline.data.sampling import seeded_rows
from pipeline.models import LoadedModel
from pipeline.schema import tidy

__all__ = ["METHOD_TABLES", "RUNNERS", "AttributionConfig", "Job", "default_score", "patching_score", "run_attribution"]

log = logging.getLogger(__name__)


def default_score(loaded: LoadedModel) -> Score:
    """The score for the model's head: counterfactual gap, pronoun gap, or SEAT effect size for a bare encoder."""
    if loaded.head == "classifier":
        return CounterfactualGap()
    if loaded.head == "mlm":
        return PronounGap()
    return SeatEffect()


def patching_score(score: Score) -> Score | None:
    """The single-view score patching measures: the true-class probability for the counterfactual gap (its total
    effect is that gap), the score itself when it reads the original text alone, else None (SEAT)."""
    if isinstance(score, CounterfactualGap):
        return TrueClassProb()
    return score if score.views == ("orig",) and score.per_example else None


def _skipped(metric: str, reason: str) -> pd.DataFrame:
    log.warning("attribution: %s skipped: %s", metric, reason)
    return tidy([{"unit": "model", "metric": metric, "value": np.nan, "skipped": reason}], variant="")


def _sample(data: AttributionData, n: int, seed: int) -> AttributionData:
    return data.subset(seeded_rows(len(data), n, seed))


@dataclass
class Job:
    """What a method of the registry gets: the variant, the scores, the (sampled) data, the settings, and the
    tables of the methods that ran before it (cumulative curves reuse gradient importance, patching the top
    neurons of neuron IG)."""

    loaded: LoadedModel
    score: Score
    data: AttributionData
    cfg: AttributionConfig
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)

    @property
    def common(self) -> dict:
        return {"n_boot": self.cfg.n_boot, "seed": self.cfg.seed}

    @property
    def grads(self) -> bool:
        return supports_gradients(self.loaded)


def _ablation(job: Job) -> pd.DataFrame:
    ablation, cfg = HeadAblation(job.loaded, job.score), job.cfg
    return pd.concat([
        ablation.attribute(job.data, mode=mode, baseline=cfg.baseline, batch_size=cfg.batch_size, **job.common)
        for mode in cfg.ablation_modes])  # fmt: skip


def _importance(job: Job) -> pd.DataFrame:
    return GradientHeadImportance(job.loaded, job.score).attribute(job.data, batch_size=job.cfg.batch_size,
                                                                   **job.common)  # fmt: skip


def _head_ig(job: Job) -> pd.DataFrame:
    cfg = job.cfg
    return HeadIntegratedGradients(job.loaded, job.score).attribute(
        job.data, n_steps=cfg.ig_steps, baseline=cfg.baseline, batch_size=cfg.ig_batch_size, **job.common
    )


def _neuron_ig(job: Job) -> pd.DataFrame:
    cfg = job.cfg
    return NeuronIntegratedGradients(job.loaded, job.score).attribute(
        job.data, n_steps=cfg.ig_steps, batch_size=cfg.ig_batch_size, **job.common
    )


def _token_ig(job: Job) -> pd.DataFrame:
    explained = _sample(job.data, job.cfg.token_examples, job.cfg.seed)
    frame = TokenIntegratedGradients(job.loaded, job.score).attribute(
        explained, n_steps=job.cfg.token_ig_steps or job.cfg.ig_steps, batch_size=job.cfg.ig_batch_size
    )
    return _with_example_facts(frame, job.loaded, explained)


def _atp(job: Job) -> pd.DataFrame:
    cfg = job.cfg
    score = patching_score(job.score) if cfg.atp_baseline == "counterfactual" else job.score
    if score is None or (cfg.atp_baseline == "counterfactual" and not job.data.has_counterfactual):
        return _skipped("atp", f"{job.score!r} on {job.data.name!r} cannot be patched from gender-swapped twins")
    return AttributionPatching(job.loaded, score, baseline=cfg.atp_baseline).attribute(
        job.data, units=cfg.atp_units, confirm_top=cfg.atp_confirm_top, batch_size=cfg.batch_size, **job.common
    )


def _patching(job: Job) -> pd.DataFrame:
    patch_score = patching_score(job.score)
    if patch_score is None or not job.data.has_counterfactual:
        return _skipped("patching", f"{job.score!r} on {job.data.name!r} has no gender-swapped twins")
    neurons = _top_neurons(job.tables.get("neuron_ig"), job.cfg.patch_top_neurons)
    return ActivationPatching(job.loaded, patch_score).attribute(
        job.data, neurons=neurons, batch_size=job.cfg.batch_size, **job.common
    )


def _pruning_curve(job: Job) -> pd.DataFrame:
    if not isinstance(job.score, CounterfactualGap) or not job.data.has_counterfactual:
        return _skipped(
            "pruning_curve",
            f"{job.score!r} on {job.data.name!r}: the curve needs a classifier and gender-swapped twins",
        )
    cfg = job.cfg
    return pruning_curve(
        job.loaded,
        job.data,
        protect=cfg.pruning_protect,
        n_random=cfg.pruning_random,
        steps=cfg.pruning_steps,
        batch_size=cfg.batch_size,
        **job.common,
    )


# How each method of the registry (:data:`attribution.config.METHOD_SPECS`) runs, by table.
RUNNERS: dict[str, Callable[[Job], pd.DataFrame]] = {
    "head_ablation": _ablation,
    "head_importance": _importance,
    "cumulative_ablation": lambda j: _cumulative(j),
    "head_ig": _head_ig,
    "neuron_ig": _neuron_ig,
    "token_ig": _token_ig,
    "atp": _atp,
    "patching": _patching,
    "pruning_curve": _pruning_curve,
}
# Methods that also run when another one needs their table, or that a score cannot feed.
_ALSO_WHEN: dict[str, Callable[[Job], bool]] = {
    "head_importance": lambda j: j.cfg.cumulative and j.grads,  # orders the cumulative curves
    "neuron_ig": lambda j: bool(j.cfg.patch_top_neurons),  # picks the neurons patching patches
}
_ONLY_WHEN: dict[str, Callable[[Job], bool]] = {
    "token_ig": lambda j: j.score.per_example,
    "atp": lambda j: j.score.per_example,
}
METHOD_TABLES: tuple[str, ...] = tuple(m.table for m in METHOD_SPECS)
assert set(RUNNERS) == set(METHOD_TABLES), "every registered method needs a runner"


def _enabled(spec: MethodSpec, job: Job) -> bool:
    on = getattr(job.cfg, spec.switch) or _ALSO_WHEN.get(spec.table, lambda j: False)(job)
    return bool(on) and _ONLY_WHEN.get(spec.table, lambda j: True)(job)


def run_attribution(
    loaded: LoadedModel,
    data: AttributionData,
    cfg: AttributionConfig,
    *,
    variant: str,
    seed: int,
    score: Score | None = None,
) -> dict[str, pd.DataFrame]:
    """Run every method of :data:`~attribution.config.METHOD_SPECS` that ``cfg`` switches on, in order.

    Args:
        loaded: the variant.
        data: examples matching the score (task data with twins for classifiers, masked pronouns for masked LMs,
            a SEAT test for encoders); ``cfg.n_examples`` of them are drawn with ``cfg.seed``.
        cfg: the settings.
        variant: variant name written into every row.
        seed: the variant's seed written into every row.
        score: the score to explain (default :func:`default_score`).

    Returns:
        Table name (:data:`METHOD_TABLES`) -> tidy frame, for each method that is switched on.
    """
    job = Job(loaded, score or default_score(loaded), _sample(data, cfg.n_examples, cfg.seed), cfg)
    no_grad = "int8 model: no gradients (pipeline.compress.quantise.supports_gradients)"
    for spec in METHOD_SPECS:
        if not _enabled(spec, job):
            continue
        if spec.needs_gradients and not job.grads:
            job.tables[spec.table] = _skipped(spec.table, no_grad)
            continue
        try:
            job.tables[spec.table] = RUNNERS[spec.table](job)
        except GateIndependentScoreError as err:
            job.tables[spec.table] = _skipped(spec.table, str(err))
    for frame in job.tables.values():
        frame["variant"], frame["seed"] = variant, seed
    log.info("attribution of %s (seed %d) with %s: %s", variant, seed, cfg.model_dump(), sorted(job.tables))
    return job.tables


@torch.no_grad()
def _with_example_facts(frame: pd.DataFrame, loaded: LoadedModel, data: AttributionData) -> pd.DataFrame:
    """Add each explained example's class (``label``), ``gender`` and, for classifiers, prediction (``pred``), so
    that token attributions can be filtered by class, gender and correctness."""
    names = list(data.label_names)
    name = lambda ids: [names[i] if 0 <= i < len(names) else "" for i in ids]
    facts = pd.DataFrame({"gender": data.genders.tolist()})
    if names:
        facts["label"] = name(data.labels.tolist())
    if loaded.head == "classifier" and names:
        view = data.batch(torch.arange(len(data)), loaded.device).view("orig")
        logits = loaded.model(input_ids=view.input_ids, attention_mask=view.attention_mask).logits
        facts["pred"] = name(logits.argmax(-1).tolist())
    return frame.drop(columns=[c for c in facts if c in frame]).join(facts, on="example")


def _cumulative(job: Job) -> pd.DataFrame:
    """Cumulative curves, most and least important first, ordered by gradient importance or single ablation."""
    loaded, score, data, cfg, common = job.loaded, job.score, job.data, job.cfg, job.common
    importance = job.tables.get("head_importance")
    if importance is not None and "skipped" not in importance:
        order = importance[importance["metric"] == "grad_importance"]
    else:
        single = job.tables.get("head_ablation")
        if single is None or "single" not in set(single["mode"]):
            single = HeadAblation(loaded, score).attribute(data, mode="single", baseline=cfg.baseline,
                                                           batch_size=cfg.batch_size, **common)  # fmt: skip
        order = single[(single["mode"] == "single") & (single["metric"] == "delta_score")]
    n_heads = int((order["unit"] == "head").sum())
    steps = None
    if cfg.cumulative_steps:
        steps = sorted(set(np.linspace(0, n_heads, cfg.cumulative_steps).round().astype(int).tolist()))
    ablation = HeadAblation(loaded, score)
    return pd.concat([
        ablation.attribute(data, mode="cumulative", order=order, most_first=most, steps=steps, baseline=cfg.baseline,
                           batch_size=cfg.batch_size, **common)
        for most in (True, False)])  # fmt: skip


def _top_neurons(neuron_ig: pd.DataFrame | None, k: int) -> list[tuple[int, int]] | None:
    if not k or neuron_ig is None or "skipped" in neuron_ig:
        return None
    rows = neuron_ig[(neuron_ig["unit"] == "neuron") & (neuron_ig["metric"] == "ig")]
    top = rows.assign(key=rows["value"].abs()).nlargest(k, "key")
    return [(int(l), int(i)) for l, i in zip(top["layer"], top["head"])]
