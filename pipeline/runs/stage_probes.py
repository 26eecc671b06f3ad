"""The ``probes`` stage (section ``[probes]``): :func:`probes.analysis.run_probes` on each chosen variant (test
split); extraction cached in ``<run>/.cache/reps``."""

from __future__ import annotations

from pipeline.runs.plan import Step, load_variant
from pipeline.runs.stages import Stage, StageContext
from pipeline.runs.units import Tables, chosen_steps, per_variant, with_defaults
from probes.analysis import run_probes

__all__ = ["STAGE", "probes_stage"]


def probes_stage(ctx: StageContext) -> Tables:
    """Layer-wise and head-wise probes, control task and erasure on each chosen variant (test split)."""
    cfg, splits = ctx.config, ctx.run.splits
    settings = with_defaults(cfg.probes, max_length=cfg.task.max_length)
    cache = ctx.run_dir / ".cache" / "reps"

    def analyse(step: Step) -> Tables:
        loaded = load_variant(ctx, step)
        return run_probes(
            loaded, splits.test, settings, variant=step.variant, seed=step.seed, cache_dir=str(cache), progress=False
        )

    return per_variant(
        ctx, chosen_steps(ctx, settings.variants), "probes", settings, analyse, skip_table="probes_layers"
    )


STAGE = Stage("probes", probes_stage, sections=("task", "probes"), needs=("build",))
