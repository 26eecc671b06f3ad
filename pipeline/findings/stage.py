"""The ``findings`` stage (section ``[findings]``): the statistics of :mod:`pipeline.findings.compute` computed from the
tables the earlier stages wrote into the run folder, written back as the tables ``fitness``, ``comparisons``,
``bias_units``, ``ig_completeness``, ``concentration``, ``method_agreement``, ``stability``, ``encoding``,
``mitigation`` and ``frontier``.

The stage reads tables only (no model is loaded), so it takes seconds. It is one cached unit keyed by the bytes of
every table it reads and the settings; its stage key must also see those tables change, so it needs the
``task_metrics`` stage and every analysis stage of the run.
"""

from __future__ import annotations

from pipeline.findings.compute import FindingsConfig, compute_findings, input_tables
from pipeline.runs.manifest import file_hash
from pipeline.runs.runfolder import RunFolder
from pipeline.runs.stages import Stage, StageContext
from pipeline.runs.units import Tables

__all__ = ["ANALYSES_READ", "STAGE", "findings_stage"]

ANALYSES_READ = ("bias_metrics", "attribution", "probes")  # analysis stages whose tables the findings read


def findings_stage(ctx: StageContext) -> Tables:
    """Every finding the run's tables allow; a finding that cannot be computed is recorded as skipped, with why."""
    cfg = getattr(ctx.config, "findings", None) or FindingsConfig()
    run = RunFolder(ctx.run_dir)
    inputs = {name: file_hash(run.table_path(name)) for name in input_tables() if run.has(name)}

    def compute() -> Tables:
        findings = compute_findings(run, cfg)
        if findings.damaged:  # never findings from part of the evidence
            raise ValueError(
                f"{'; '.join(findings.damaged.values())}. Fix: `bias-atlas verify {ctx.run_dir}` names it; run the "
                "same command with --force for the stage that writes it."
            )
        for name, why in findings.errors.items():
            ctx.skip(why, table=name)
        return dict(findings.tables)

    return ctx.unit("findings", {"tables": inputs, "settings": cfg.model_dump(mode="json")}, compute)


# Needs every analysis stage: a run that leaves one out drops it from the needs (pipeline.runs.run.run).
STAGE = Stage("findings", findings_stage, sections=("findings",), needs=("task_metrics", *ANALYSES_READ))
