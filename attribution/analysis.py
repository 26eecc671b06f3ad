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
:func:`pipeline.int8.supports_gradients`) and scores with zero gradient everywhere get one row with
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
from attribution.config import EXAMPLES_TABLE, AttributionConfig
from attribution.data import AttributionData, split_rows
from attribution.effect_rows import with_q
from attribution.errors import GateIndependentScoreError
from attribution.ig import HeadIntegratedGradients, NeuronIntegratedGradients, TokenIntegratedGradients
from attribution.importance import GradientHeadImportance
from attribution.patching import ActivationPatching, PatchingEffects
from attribution.pruning_curve import pruning_curve
from attribution.scores import CounterfactualGap, PronounGap, Score, SeatEffect, SkewedClassProb, SkewGap, TrueClassProb
from pipeline.data.sampling import seeded_rows
from pipeline.int8 import supports_gradients
from pipeline.method_registry import AttributionMethod, methods
from pipeline.models import LoadedModel
from pipeline.schema import tidy

__all__ = [
    "AttributionConfig",
    "AttributionJob",
    "default_score",
    "method_tables",
    "patching_score",
    "run_attribution",
]

log = logging.getLogger(__name__)


def default_score(loaded: LoadedModel) -> Score:
    """The score for the model's head: counterfactual gap, pronoun gap, or SEAT effect size for a bare encoder."""
    if loaded.head == "classifier":
        return CounterfactualGap()
    if loaded.head == "mlm":
        return PronounGap()
    return SeatEffect()


def patching_score(score: Score) -> Score | None:
    """The single-view score patching measures: the (skew-oriented) true-class probability for the (skew-oriented)
    counterfactual gap (its total effect is that gap), the score itself when it reads the original text alone, else
    None (SEAT)."""
    if isinstance(score, SkewGap):
        return SkewedClassProb(score.orientation.tolist())
    if isinstance(score, CounterfactualGap):
        return TrueClassProb()
    return score if score.views == ("orig",) and score.per_example else None


def _skipped(metric: str, reason: str) -> pd.DataFrame:
    log.warning("attribution: %s skipped: %s", metric, reason)
    return tidy([{"unit": "model", "metric": metric, "value": np.nan, "skipped": reason}], variant="")


def _sample(data: AttributionData, n: int, seed: int) -> AttributionData:
    return data.subset(seeded_rows(len(data), n, seed))


@dataclass
class AttributionJob:
    """What a method of the registry gets: the variant, the scores, the (sampled) data, the settings, and the
    tables of the methods that ran before it (cumulative curves reuse gradient importance, patching the top
    neurons of neuron IG)."""

    loaded: LoadedModel
    score: Score
    data: AttributionData
    cfg: AttributionConfig
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    per_example: dict[str, torch.Tensor] = field(default_factory=dict)  # neuron IG per example: patching's selection

    @property
    def common(self) -> dict:
        return {"n_boot": self.cfg.n_boot, "seed": self.cfg.seed}

    @property
    def grads(self) -> bool:
        return supports_gradients(self.loaded)


def _ablation(job: AttributionJob) -> pd.DataFrame:
    """Ablation in each configured mode; the single-head per-example effects go to ``job.tables["head_examples"]``
    (the findings resample them over examples: RQ3, RQ4)."""
    ablation, cfg = HeadAblation(job.loaded, job.score), job.cfg
    frame = pd.concat([
        ablation.attribute(job.data, mode=mode, baseline=cfg.baseline, batch_size=cfg.batch_size, **job.common)
        for mode in cfg.ablation_modes])  # fmt: skip
    _keep_examples(job, ablation.example_effects_, "ablation")
    return frame


def _keep_examples(job: AttributionJob, frame: pd.DataFrame | None, method: str) -> None:
    """Add a causal method's per-example head effects to ``job.tables["head_examples"]`` (column ``method``)."""
    if frame is not None:
        mine = frame.assign(method=method)
        kept = job.tables.get(EXAMPLES_TABLE)
        job.tables[EXAMPLES_TABLE] = mine if kept is None else pd.concat([kept, mine], ignore_index=True)


def _importance(job: AttributionJob) -> pd.DataFrame:
    return GradientHeadImportance(job.loaded, job.score).attribute(job.data, batch_size=job.cfg.batch_size,
                                                                   **job.common)  # fmt: skip


def _head_ig(job: AttributionJob) -> pd.DataFrame:
    cfg = job.cfg
    return HeadIntegratedGradients(job.loaded, job.score).attribute(
        job.data, n_steps=cfg.ig_steps, baseline=cfg.baseline, batch_size=cfg.ig_batch_size, **job.common
    )


def _neuron_ig(job: AttributionJob) -> pd.DataFrame:
    cfg = job.cfg
    ig = NeuronIntegratedGradients(job.loaded, job.score)
    attr, delta, diff = ig.integrate(job.data, n_steps=cfg.ig_steps, batch_size=cfg.ig_batch_size)
    table = ig.tabulate(attr, delta, diff, n=len(job.data), n_steps=cfg.ig_steps, baseline="zero", **job.common)
    job.per_example["neuron_ig"] = attr  # (n_ex, layer, d_ff): patching picks its neurons on a part of the examples
    return table


def _token_ig(job: AttributionJob) -> pd.DataFrame:
    """Token IG of the bias (from the twin) on ``token_examples`` pairs drawn among those of equal token length; from
    padding (the prediction) when so configured or when the data has no twins (logged)."""
    cfg = job.cfg
    baseline = cfg.token_ig_baseline if job.data.has_counterfactual else "padding"
    if baseline != cfg.token_ig_baseline:
        log.info("attribution: %r has no gender-swapped twins; token IG explains the prediction (from padding)",
                 job.data.name)  # fmt: skip
    ig = TokenIntegratedGradients(job.loaded, job.score, baseline=baseline)
    pairs, dropped = ig.pairs(job.data)
    explained = _sample(pairs, cfg.token_examples, cfg.seed)
    frame = ig.attribute(explained, n_steps=cfg.token_ig_steps or cfg.ig_steps, batch_size=cfg.ig_batch_size,
                         dropped=dropped)  # fmt: skip
    frame.loc[frame["metric"] == "pairs_dropped", "n"] = len(job.data)  # of the attribution sample
    return _with_example_facts(frame, job.loaded, explained)


def _atp(job: AttributionJob) -> pd.DataFrame:
    cfg = job.cfg
    score = patching_score(job.score) if cfg.atp_baseline == "counterfactual" else job.score
    if score is None or (cfg.atp_baseline == "counterfactual" and not job.data.has_counterfactual):
        return _skipped("atp", f"{job.score!r} on {job.data.name!r} cannot be patched from gender-swapped twins")
    return AttributionPatching(job.loaded, score, baseline=cfg.atp_baseline).attribute(
        job.data, units=cfg.atp_units, confirm_top=cfg.atp_confirm_top, batch_size=cfg.batch_size, **job.common
    )  # estimates on one half of the examples, exact confirmation on the other


def _patching(job: AttributionJob) -> pd.DataFrame:
    """Every head patched on all pairs; with ``patch_top_neurons``, the neurons of largest mean |neuron IG| on one
    part of the examples (seeded split) patched too, their rows measured on the other part only (column ``split``:
    ``test``), so their effects and p-values are not inflated by the selection."""
    patch_score = patching_score(job.score)
    if patch_score is None or not job.data.has_counterfactual:
        return _skipped("patching", f"{job.score!r} on {job.data.name!r} has no gender-swapped twins")
    patcher, cfg = ActivationPatching(job.loaded, patch_score), job.cfg
    attr = job.per_example.get("neuron_ig")
    if not cfg.patch_top_neurons or attr is None or len(job.data) < 2:
        table = patcher.attribute(job.data, batch_size=cfg.batch_size, **job.common)
        _keep_examples(job, patcher.example_effects_, "patching")
        return table
    select, test = split_rows(len(job.data), cfg.seed)
    neurons = _top_neurons(attr[select], cfg.patch_top_neurons)
    pairs, dropped = patcher.pairs(job.data)
    kept = job.data.aligned_rows()
    effects = patcher.effects(pairs, neurons=neurons, batch_size=cfg.batch_size)
    n_heads = effects.indirect.shape[1] - len(neurons)
    heads = PatchingEffects(effects.original, effects.total, effects.indirect[:, :n_heads])
    _keep_examples(job, patcher.head_examples(heads, kept), "patching")
    table = patcher.tabulate(heads, dropped=dropped, **job.common).assign(split="all")
    on_test = torch.as_tensor(np.isin(kept, test))
    if not bool(on_test.any()):
        log.warning("attribution: no aligned pair in the test part; patching reports heads only")
        return table
    tested = PatchingEffects(*(getattr(effects, f)[on_test] for f in ("original", "total", "indirect")))
    neuron_rows = patcher.tabulate(tested, neurons=neurons, **job.common).query("unit == 'neuron'")
    return with_q(pd.concat([table, neuron_rows.assign(split="test")], ignore_index=True))


def _pruning_curve(job: AttributionJob) -> pd.DataFrame:
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


# Methods that also run when another one needs their table, or that a score cannot feed.
_ALSO_WHEN: dict[str, Callable[[AttributionJob], bool]] = {
    "head_importance": lambda j: j.cfg.cumulative and j.grads,  # orders the cumulative curves
    "neuron_ig": lambda j: bool(j.cfg.patch_top_neurons),  # picks the neurons patching patches
}
_ONLY_WHEN: dict[str, Callable[[AttributionJob], bool]] = {
    "token_ig": lambda j: j.score.per_example,
    "atp": lambda j: j.score.per_example,
}


def method_tables() -> tuple[str, ...]:
    """The tables of every registered method (:func:`pipeline.method_registry.methods`), in run order."""
    return tuple(m.table for m in methods())


def _enabled(spec: AttributionMethod, job: AttributionJob) -> bool:
    on = getattr(job.cfg, spec.switch, False) or spec.switch in job.cfg.extra_methods
    on = on or _ALSO_WHEN.get(spec.table, lambda j: False)(job)
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
    """Run every registered method (:func:`pipeline.method_registry.methods`) that ``cfg`` switches on, in order.

    Args:
        loaded: the variant.
        data: examples matching the score (task data with twins for classifiers, masked pronouns for masked LMs,
            a SEAT test for encoders); ``cfg.n_examples`` of them are drawn with ``cfg.seed``.
        cfg: the settings.
        variant: variant name written into every row.
        seed: the variant's seed written into every row.
        score: the score to explain (default :func:`default_score`).

    Returns:
        Table name (:func:`method_tables`) -> tidy frame, for each method that is switched on, and
        :data:`~attribution.config.EXAMPLES_TABLE` with the per-example single-head ablation effects.
    """
    job = AttributionJob(loaded, score or default_score(loaded), _sample(data, cfg.n_examples, cfg.seed), cfg)
    no_grad = "int8 model: no gradients (pipeline.int8.supports_gradients)"
    for spec in methods():
        if not _enabled(spec, job):
            continue
        if spec.needs_gradients and not job.grads:
            job.tables[spec.table] = _skipped(spec.table, no_grad)
            continue
        try:
            job.tables[spec.table] = spec.runner()(job)
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


def _cumulative(job: AttributionJob) -> pd.DataFrame:
    """Cumulative curves, most and least important first, ordered by gradient importance or single ablation, and
    ``cumulative_random`` seeded random orders (``order`` = ``random0``...): the baseline a ranking must beat."""
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

    def curve(ranking: pd.DataFrame, most: bool) -> pd.DataFrame:
        return ablation.attribute(data, mode="cumulative", order=ranking, most_first=most, steps=steps,
                                  baseline=cfg.baseline, batch_size=cfg.batch_size, **common)  # fmt: skip

    heads = order[order["unit"] == "head"]
    rng = np.random.default_rng(cfg.seed)
    randoms = [
        curve(heads.assign(value=rng.permutation(len(heads)) + 1.0), True).assign(order=f"random{r}")
        for r in range(cfg.cumulative_random)
    ]
    return pd.concat([curve(order, True), curve(order, False), *randoms])


def _top_neurons(attr: torch.Tensor, k: int) -> list[tuple[int, int]]:
    """The ``k`` (layer, index) neurons with the largest |mean| of the per-example attributions ``attr``."""
    mean = attr.double().mean(0)  # (layer, d_ff)
    top = torch.argsort(mean.abs().flatten(), descending=True, stable=True)[:k]
    return [(int(i) // mean.shape[1], int(i) % mean.shape[1]) for i in top]
