"""The analysis stages of a run: bias metrics, attribution and probes on every built variant (DESIGN.md section 2).

This is the orchestrator floor: the one place that calls :mod:`attribution` and :mod:`probes` from a run. Each
stage loops over the exposed variants (:func:`~pipeline.compress.recipes.exposed_steps`), reloads each from its
folder, and runs one cached unit per variant (keyed by the model folder's hash, the data fingerprint and the
stage's config section), so a killed run resumes where it stopped and a changed setting recomputes only its stage.

- ``bias_metrics`` (section ``[metrics]``): :func:`pipeline.metrics.bias_metrics` on the test split; table
  ``bias_metrics``.
- ``attribution`` (section ``[attribution]``): :func:`attribution.analysis.run_attribution`. The score is the
  counterfactual gap on the test split for a variant with a trained classifier head; a variant whose head was never
  trained (order ``none``) is explained through its encoder with the SEAT effect size of ``seat_test`` (the
  ``score`` column says which). Then the ``comparison`` table: homogeneity (Gini, entropy) of single-head ablation
  effects per variant and seed, seed stability (Spearman, top-k overlap) where there are several seeds, and the
  alignment of each distilled student's layers with the fine-tuned teacher's (``config.layer_map``).
- ``probes`` (section ``[probes]``): :func:`probes.analysis.run_probes` on the test split; extraction cached in
  ``<run>/.cache/reps``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import pandas as pd
from tqdm.auto import tqdm
from transformers import AutoConfig

from attribution.analysis import run_attribution
from attribution.compare import homogeneity, layer_map, seed_stability, teacher_student_alignment
from attribution.data import AttributionData
from pipeline.compress.recipes import Step, exposed_steps, load_variant
from pipeline.config import ConfigError, RunConfig
from pipeline.data import data_root, load_seat
from pipeline.metrics import bias_metrics
from pipeline.stages import Stage, StageContext, concat_tables
from probes.analysis import run_probes

__all__ = ["ANALYSIS_STAGES", "attribution_stage", "bias_metrics_stage", "check_analysis_variants", "probes_stage"]

log = logging.getLogger(__name__)

Tables = dict[str, pd.DataFrame]
_LOADING = ("pipeline/analyses.py", "pipeline/analysis_config.py", "pipeline/models.py", "pipeline/anatomy.py",
            "pipeline/gates.py", "pipeline/compress/prune.py", "pipeline/compress/quantise.py")
COMPARE_METRIC = "delta_score"  # single-head ablation effect behind the comparison table


def check_analysis_variants(cfg: RunConfig, variants: Sequence[str]) -> None:
    """Raise :class:`ConfigError` when ``attribution.variants`` or ``probes.variants`` names an unplanned variant."""
    for section in ("attribution", "probes"):
        unknown = sorted(set(getattr(cfg, section).variants) - set(variants))
        if unknown:
            raise ConfigError(f"{section}.variants names {unknown}, which the run does not build; planned variants: "
                              f"{', '.join(sorted(set(variants)))}.")


def _settings(section, **defaults):
    """The section with ``defaults`` filled in where the config file left the key unset."""
    return section.model_copy(update={k: v for k, v in defaults.items() if k not in section.model_fields_set})


def _per_variant(ctx: StageContext, steps: list[Step], desc: str, settings, analyse: Callable[[Step], Tables]) -> Tables:
    """Run ``analyse`` once per step as a cached unit; concatenate the tables of all units."""
    found: dict[str, list[pd.DataFrame]] = {}
    for step in tqdm(steps, desc=desc, disable=not ctx.is_main):
        parts = {"model": ctx.unit_hash("build", step.key), "data": ctx.extras["fingerprint"],
                 "settings": settings.model_dump(mode="json")}
        for name, frame in ctx.unit(step.key, parts, lambda step=step: analyse(step)).items():
            found.setdefault(name, []).append(frame)
    return {name: concat_tables(frames) for name, frames in found.items()}


def _chosen(ctx: StageContext, variants: Sequence[str]) -> list[Step]:
    steps = exposed_steps(ctx)
    return [s for s in steps if s.variant in variants] if variants else steps


# ---- bias metrics -----------------------------------------------------------------------------------------------
def bias_metrics_stage(ctx: StageContext) -> Tables:
    """Every configured bias metric of every variant on the test split; table ``bias_metrics``."""
    cfg, splits = ctx.config, ctx.extras["splits"]
    settings = _settings(cfg.metrics, data_root=str(data_root(cfg.run.data_root)), max_length=cfg.task.max_length)

    def analyse(step: Step) -> Tables:
        train = splits.train.get(step.training_set or "", next(iter(splits.train.values())))
        loaded = load_variant(ctx, step)
        return {"bias_metrics": bias_metrics(loaded, test=splits.test, train_female_share=train.female_share(),
                                             variant=step.variant, seed=step.seed, config=settings)}

    return _per_variant(ctx, exposed_steps(ctx), "bias metrics", settings, analyse)


# ---- attribution ------------------------------------------------------------------------------------------------
def attribution_stage(ctx: StageContext) -> Tables:
    """The configured attribution methods on each chosen variant, then the cross-variant ``comparison`` table."""
    cfg, splits = ctx.config, ctx.extras["splits"]
    settings = cfg.attribution
    root = data_root(cfg.run.data_root)

    def analyse(step: Step) -> Tables:
        loaded = load_variant(ctx, step)
        if loaded.head_trained:
            data = AttributionData.from_task(loaded, splits.test, swapper=ctx.extras["swapper"](),
                                             max_length=cfg.task.max_length)
        else:  # a random classifier head: explain what the encoder itself encodes
            ctx.skip(f"classifier head never trained: explaining the SEAT effect of {settings.seat_test!r} instead "
                     "of the counterfactual gap", variant=step.variant, seed=step.seed)
            loaded = load_variant(ctx, step, head="encoder")
            data = AttributionData.from_seat(loaded, load_seat(settings.seat_test, root), max_length=cfg.task.max_length)
        return run_attribution(loaded, data, settings, variant=step.variant, seed=step.seed)

    tables = _per_variant(ctx, _chosen(ctx, settings.variants), "attribution", settings, analyse)
    comparison = comparison_table(ctx, tables["head_ablation"], k=settings.top_k) \
        if settings.compare and "head_ablation" in tables else None
    if comparison is not None:
        tables["comparison"] = comparison
    return tables


def comparison_table(ctx: StageContext, ablation: pd.DataFrame, *, k: int) -> pd.DataFrame | None:
    """Homogeneity, seed stability and teacher alignment of single-head ablation effects (one tidy table); None
    when no variant has single-head rows (e.g. ``ablation_modes`` without ``single``)."""
    heads = ablation[(ablation["unit"] == "head") & (ablation["metric"] == COMPARE_METRIC)]
    if heads.empty:
        return None
    frames = [homogeneity(heads, COMPARE_METRIC)]
    if heads.groupby("variant")["seed"].nunique().max() > 1:
        frames.append(seed_stability(heads, COMPARE_METRIC, k=k))
    for step in exposed_steps(ctx):
        student = heads[(heads["variant"] == step.variant) & (heads["seed"] == step.seed)]
        if not step.variant.startswith("distil") or student.empty:
            continue
        same_score = heads[heads["score"] == student["score"].iloc[0]]
        teachers = [v for v in ("teacher-ft", "teacher") if v in set(same_score["variant"])]
        if not teachers:
            continue
        reference = same_score[same_score["variant"] == teachers[0]]
        reference = reference[reference["seed"] == (step.seed if step.seed in set(reference["seed"])
                                                    else reference["seed"].min())]
        config = AutoConfig.from_pretrained(ctx.run_dir / step.folder)  # the saved layer_map; no weights needed
        mapping = layer_map(config, int(student["layer"].max()) + 1)
        frames.append(teacher_student_alignment(reference, student, COMPARE_METRIC, mapping))
    return concat_tables(frames)


# ---- probes -----------------------------------------------------------------------------------------------------
def probes_stage(ctx: StageContext) -> Tables:
    """Layer-wise and head-wise probes, control task and erasure on each chosen variant (test split)."""
    cfg, splits = ctx.config, ctx.extras["splits"]
    settings = _settings(cfg.probes, max_length=cfg.task.max_length)
    cache = ctx.run_dir / ".cache" / "reps"

    def analyse(step: Step) -> Tables:
        loaded = load_variant(ctx, step)
        return run_probes(loaded, splits.test, settings, variant=step.variant, seed=step.seed, cache_dir=str(cache),
                          progress=False)

    return _per_variant(ctx, _chosen(ctx, settings.variants), "probes", settings, analyse)


ANALYSIS_STAGES: dict[str, Stage] = {
    "bias_metrics": Stage("bias_metrics", bias_metrics_stage, sections=("task", "metrics"),
                          code=(*_LOADING, "pipeline/metrics", "pipeline/data"), needs=("build",)),
    "attribution": Stage("attribution", attribution_stage, sections=("task", "attribution"),
                         code=(*_LOADING, "attribution", "pipeline/data"), needs=("build",)),
    "probes": Stage("probes", probes_stage, sections=("task", "probes"),
                    code=(*_LOADING, "probes", "pipeline/metrics", "pipeline/data"), needs=("build",)),
}
