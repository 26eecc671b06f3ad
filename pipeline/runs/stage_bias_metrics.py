"""The ``bias_metrics`` stage (section ``[metrics]``): :func:`pipeline.metrics.bias_metrics` of every variant on the
test split; tables ``bias_metrics`` and ``counterfactual_examples`` (the per-example values behind the counterfactual
rows, which the findings pair across variants).

Each variant is loaded as its classifier (extrinsic and counterfactual metrics, SEAT) and, for the MLM families,
a second time with ``head="mlm"`` when it was saved with an MLM head (``config.mlm_head``, :mod:`pipeline.mlm_head`);
that head is checked (:mod:`pipeline.metrics.mlm_check`) before its benchmarks are read.
"""

from __future__ import annotations

from pipeline.data import data_root
from pipeline.metrics import bias_metric_tables
from pipeline.metrics.benchmark_files import benchmark_hashes
from pipeline.metrics.counterfactual import skew_orientation
from pipeline.mlm_head import absent_reason
from pipeline.runs.plan import Step, exposed_steps, load_variant
from pipeline.runs.stages import Stage, StageContext
from pipeline.runs.units import Tables, per_variant, with_defaults

__all__ = ["STAGE", "bias_metrics_stage"]


def bias_metrics_stage(ctx: StageContext) -> Tables:
    """Every configured bias metric of every variant on the test split; tables ``bias_metrics`` and
    ``counterfactual_examples``."""
    cfg, splits = ctx.config, ctx.run.splits
    settings = with_defaults(cfg.metrics, data_root=str(data_root(cfg.run.data_root)), max_length=cfg.task.max_length)
    # one orientation for every variant: the skew of the original training data (CDA's training set has none)
    orientation = skew_orientation(splits.train.get("original", next(iter(splits.train.values()))))

    def analyse(step: Step) -> Tables:
        train = splits.train.get(step.training_set or "", next(iter(splits.train.values())))
        loaded = load_variant(ctx, step)
        has_head = absent_reason(loaded.model.config) is None
        mlm = (lambda: load_variant(ctx, step, head="mlm")) if has_head else None
        table, examples = bias_metric_tables(
            loaded,
            test=splits.test,
            train_female_share=train.female_share(),
            variant=step.variant,
            seed=step.seed,
            config=settings,
            mlm=mlm,
            orientation=orientation,
        )
        return {"bias_metrics": table} | ({} if examples is None else {"counterfactual_examples": examples})

    return per_variant(
        ctx, exposed_steps(ctx), "bias metrics", settings, analyse, skip_table="bias_metrics", reads=_reads(cfg)
    )


def _reads(cfg) -> dict[str, str]:
    """Content hashes of the benchmark files the configured families read (in the stage's and units' keys)."""
    return benchmark_hashes(with_defaults(cfg.metrics, data_root=str(data_root(cfg.run.data_root))))


STAGE = Stage("bias_metrics", bias_metrics_stage, sections=("task", "metrics"), needs=("build",), reads=_reads)
