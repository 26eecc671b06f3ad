"""The attribution stage of a pipeline run: every configured method on one model variant, as tidy tables.

:func:`run_attribution` is what the pipeline's analysis stage calls per variant (the orchestrator owns the loop
and writes the tables into the run folder): head ablation (single heads and whole layers, plus leave-one-in if
asked), cumulative curves ordered by gradient importance (most and least important first), gradient head
importance (Michel et al. 2019), integrated gradients over heads, FFN neurons and tokens (Sundararajan et al.
2017; Hao et al. 2021; Dai et al. 2022), and activation patching (Vig et al. 2020). The score follows the model's
head: the counterfactual gap for classifiers (patching: the true-class probability, whose total effect is that
gap), the pronoun gap for masked LMs, the SEAT effect size for bare encoders.

A method that cannot run on a variant is not silently absent: int8 models (no gradients, see
:func:`pipeline.compress.quantise.supports_gradients`) and scores with zero gradient everywhere get one row with
value NaN and a ``skipped`` column holding the reason, and the reason is logged.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import torch

from attribution.ablation import HeadAblation
from attribution.data import AttributionData
from attribution.errors import GateIndependentScoreError
from attribution.ig import HeadIntegratedGradients, NeuronIntegratedGradients, TokenIntegratedGradients
from attribution.importance import GradientHeadImportance
from attribution.patching import ActivationPatching
from attribution.scores import CounterfactualGap, PronounGap, Score, SeatEffect, TrueClassProb
from pipeline.analysis_config import AttributionConfig
from pipeline.compress.quantise import supports_gradients
from pipeline.models import LoadedModel
from pipeline.schema import tidy

__all__ = ["TABLES", "AttributionConfig", "default_score", "patching_score", "run_attribution"]

log = logging.getLogger(__name__)

TABLES = ("head_ablation", "cumulative_ablation", "head_importance", "head_ig", "neuron_ig", "token_ig", "patching")


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
    if n == 0 or n >= len(data):
        return data
    return data.subset(np.sort(np.random.default_rng(seed).choice(len(data), n, replace=False)))


def run_attribution(
    loaded: LoadedModel,
    data: AttributionData,
    cfg: AttributionConfig,
    *,
    variant: str,
    seed: int,
    score: Score | None = None,
) -> dict[str, pd.DataFrame]:
    """Run the configured methods on one variant.

    Args:
        loaded: the variant.
        data: examples matching the score (task data with twins for classifiers, masked pronouns for masked LMs,
            a SEAT test for encoders); ``cfg.n_examples`` of them are drawn with ``cfg.seed``.
        cfg: the settings.
        variant: variant name written into every row.
        seed: the variant's seed written into every row.
        score: the score to explain (default :func:`default_score`).

    Returns:
        Table name (:data:`TABLES`) -> tidy frame, for each method that is switched on.
    """
    score = score or default_score(loaded)
    patch_score = patching_score(score)
    data = _sample(data, cfg.n_examples, cfg.seed)
    grads = supports_gradients(loaded)
    no_grad = "int8 model: no gradients (pipeline.compress.quantise.supports_gradients)"
    common = {"n_boot": cfg.n_boot, "seed": cfg.seed}
    tables: dict[str, pd.DataFrame] = {}

    def gradient_method(table: str, run) -> None:
        if not grads:
            tables[table] = _skipped(table, no_grad)
            return
        try:
            tables[table] = run()
        except GateIndependentScoreError as err:
            tables[table] = _skipped(table, str(err))

    if cfg.ablation:
        ablation = HeadAblation(loaded, score)
        tables["head_ablation"] = pd.concat([
            ablation.attribute(data, mode=mode, baseline=cfg.baseline, batch_size=cfg.batch_size, **common)
            for mode in cfg.ablation_modes])  # fmt: skip
    if cfg.importance or (cfg.cumulative and grads):
        gradient_method("head_importance", lambda: GradientHeadImportance(loaded, score).attribute(
            data, batch_size=cfg.batch_size, **common))  # fmt: skip
    if cfg.cumulative:
        tables["cumulative_ablation"] = _cumulative(loaded, score, data, cfg, tables, common)
    if cfg.head_ig:
        gradient_method("head_ig", lambda: HeadIntegratedGradients(loaded, score).attribute(
            data, n_steps=cfg.ig_steps, baseline=cfg.baseline, batch_size=cfg.ig_batch_size, **common))  # fmt: skip
    if cfg.neuron_ig or cfg.patch_top_neurons:
        gradient_method("neuron_ig", lambda: NeuronIntegratedGradients(loaded, score).attribute(
            data, n_steps=cfg.ig_steps, batch_size=cfg.ig_batch_size, **common))  # fmt: skip
    if cfg.token_ig and score.per_example:
        explained = _sample(data, cfg.token_examples, cfg.seed)
        gradient_method("token_ig", lambda: TokenIntegratedGradients(loaded, score).attribute(
            explained, n_steps=cfg.ig_steps, batch_size=cfg.ig_batch_size))
        if "token_ig" in tables and "skipped" not in tables["token_ig"]:
            tables["token_ig"] = _with_example_facts(tables["token_ig"], loaded, explained)
    if cfg.patching:
        if patch_score is None or not data.has_counterfactual:
            tables["patching"] = _skipped("patching", f"{score!r} on {data.name!r} has no gender-swapped twins")
        else:
            neurons = _top_neurons(tables.get("neuron_ig"), cfg.patch_top_neurons)
            tables["patching"] = ActivationPatching(loaded, patch_score).attribute(
                data, neurons=neurons, batch_size=cfg.batch_size, **common)
    for frame in tables.values():
        frame["variant"], frame["seed"] = variant, seed
    log.info("attribution of %s (seed %d) with %s: %s", variant, seed, cfg.model_dump(), sorted(tables))
    return tables


@torch.no_grad()
def _with_example_facts(frame: pd.DataFrame, loaded: LoadedModel, data: AttributionData) -> pd.DataFrame:
    """Add each explained example's class (``label``), ``gender`` and, for classifiers, prediction (``pred``), so
    that token attributions can be filtered by class, gender and correctness."""
    names = list(data.label_names)
    name = lambda ids: [names[i] if 0 <= i < len(names) else "" for i in ids]  # noqa: E731
    facts = pd.DataFrame({"gender": data.genders.tolist()})
    if names:
        facts["label"] = name(data.labels.tolist())
    if loaded.head == "classifier" and names:
        view = data.batch(torch.arange(len(data)), loaded.device).view("orig")
        logits = loaded.model(input_ids=view.input_ids, attention_mask=view.attention_mask).logits
        facts["pred"] = name(logits.argmax(-1).tolist())
    return frame.drop(columns=[c for c in facts if c in frame]).join(facts, on="example")


def _cumulative(loaded, score, data, cfg, tables, common) -> pd.DataFrame:
    """Cumulative curves, most and least important first, ordered by gradient importance or single ablation."""
    importance = tables.get("head_importance")
    if importance is not None and "skipped" not in importance:
        order = importance[importance["metric"] == "grad_importance"]
    else:
        single = tables.get("head_ablation")
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
