"""The ``attribution`` stage (section ``[attribution]``): :func:`attribution.analysis.run_attribution` on each chosen
variant, then the cross-variant ``comparison`` table.

The score is ``attribution.target`` on the test split for a variant with a trained classifier head: the
skew-oriented counterfactual gap (its orientation from the original training set, as in the bias metrics) or the
signed gap; a variant whose
head was never trained (order ``none``) is explained through its encoder with the SEAT effect size of
``seat_test`` (the ``score`` column says which). The ``comparison`` table: homogeneity (Gini, entropy) of
single-head ablation effects per variant and seed, seed stability (Spearman, top-k overlap) where there are several
seeds, and the alignment of each distilled student's layers with the teacher's fine-tuned on the same training set
(``teacher-ft@balanced`` for a ``@balanced`` student; ``config.layer_map``).
"""

from __future__ import annotations

import logging

import pandas as pd
from transformers import AutoConfig

from attribution.analysis import run_attribution
from attribution.compare import homogeneity, layer_map, seed_stability, teacher_student_alignment
from attribution.data import AttributionData
from attribution.scores import CounterfactualGap, SkewGap
from pipeline.compress.registry import is_student
from pipeline.data import data_root, load_seat
from pipeline.eo_hooks import EO_KEY
from pipeline.metrics.benchmark_files import SWAP_LISTS, files_hashes
from pipeline.metrics.counterfactual import skew_orientation
from pipeline.runs.plan import Step, exposed_steps, load_variant
from pipeline.runs.stages import Stage, StageContext, concat_tables
from pipeline.runs.units import Tables, chosen_steps, per_variant
from pipeline.variants import Variant

__all__ = ["COMPARE_METRIC", "STAGE", "attribution_stage", "comparison_table"]

log = logging.getLogger(__name__)
COMPARE_METRIC = "delta_score"  # single-head ablation effect behind the comparison table


def attribution_stage(ctx: StageContext) -> Tables:
    """The configured attribution methods on each chosen variant, then the cross-variant ``comparison`` table."""
    cfg, splits = ctx.config, ctx.run.splits
    settings = cfg.attribution
    root = data_root(cfg.run.data_root)
    orientation = skew_orientation(splits.train.get("original", next(iter(splits.train.values()))))

    def analyse(step: Step) -> Tables:
        loaded = load_variant(ctx, step)
        if getattr(loaded.model.config, EO_KEY, None):  # a skipped row with the reason (per_variant)
            raise ValueError(
                f"{step.variant} is its parent with an equal-opportunity rule that relabels the predictions at random "
                "per gender: its encoder and heads are the parent's, and a drawn label has no gradient or graded "
                "effect to attribute. Attribute its parent instead."
            )
        score = None
        if loaded.head_trained:
            data = AttributionData.from_task(
                loaded, splits.test, swapper=ctx.run.swapper(), max_length=cfg.task.max_length
            )
            score = SkewGap(orientation) if settings.target == "cf_skew_gap" else CounterfactualGap()
        else:  # a random classifier head: explain what the encoder itself encodes
            ctx.skip(
                f"classifier head never trained: explaining the SEAT effect of {settings.seat_test!r} instead "
                "of the counterfactual gap",
                variant=step.variant,
                seed=step.seed,
            )
            loaded = load_variant(ctx, step, head="encoder")
            data = AttributionData.from_seat(
                loaded, load_seat(settings.seat_test, root), max_length=cfg.task.max_length
            )
        return run_attribution(loaded, data, settings, variant=step.variant, seed=step.seed, score=score)

    tables = per_variant(
        ctx,
        chosen_steps(ctx, settings.variants),
        "attribution",
        settings,
        analyse,
        skip_table="head_ablation",
        reads=_reads(cfg),
    )
    comparison = (
        comparison_table(ctx, tables["head_ablation"], k=settings.top_k)
        if settings.compare and "head_ablation" in tables
        else None
    )
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
        if not is_student(Variant.parse(step.variant).method) or student.empty:
            continue
        same_score = heads[heads["score"] == student["score"].iloc[0]]
        own_teacher = Variant("teacher", "ft").on(step.training_set).name  # fine-tuned on the student's training set
        teachers = [v for v in (own_teacher, "teacher") if v in set(same_score["variant"])]
        if not teachers:
            continue
        reference = same_score[same_score["variant"] == teachers[0]]
        reference = reference[
            reference["seed"] == (step.seed if step.seed in set(reference["seed"]) else reference["seed"].min())
        ]
        config = AutoConfig.from_pretrained(ctx.run_dir / step.folder)  # the saved layer_map; no weights needed
        mapping = layer_map(config, int(student["layer"].max()) + 1)
        frames.append(teacher_student_alignment(reference, student, COMPARE_METRIC, mapping))
    return concat_tables(frames)


def _reads(cfg) -> dict[str, str]:
    """Content hashes of the benchmark files the stage reads: the swap lists of the twins, the SEAT test."""
    return files_hashes(data_root(cfg.run.data_root), [*SWAP_LISTS, f"seat/{cfg.attribution.seat_test}.jsonl"])


STAGE = Stage("attribution", attribution_stage, sections=("task", "attribution"), needs=("build",), reads=_reads)
