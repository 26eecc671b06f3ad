"""The complete run: the measuring stages of :mod:`pipeline.runs.run`, then the findings stage
(:mod:`pipeline.findings.stage`), then the report (:mod:`pipeline.report.run_report`), the run's last product.

It lives on the entry floor because it joins three floors: the orchestration measures, the findings floor tests, the
readers' floor writes the report. ``bias-atlas run`` calls :func:`run`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pipeline.findings import stage as findings_stage
from pipeline.report.run_report import write_report
from pipeline.runs import run as measure
from pipeline.runs.config import RunConfig
from pipeline.runs.stages import Stage

__all__ = ["STAGES", "run"]

log = logging.getLogger("pipeline.runs.run")

STAGES: list[Stage] = [*measure.STAGES, findings_stage.STAGE]


def run(cfg: RunConfig, **options) -> measure.RunResult:
    """:func:`pipeline.runs.run.run` with the findings stage (default stages) and the report written at the end when
    the findings stage ran or was cached; ``options`` as there."""
    options.setdefault("stages", STAGES)

    def report(run_dir: Path, actions: dict[str, str]) -> None:
        if "findings" in actions:
            index, _ = write_report(run_dir, cfg.findings, stored=True)  # the findings stage just wrote them
            log.info("[report] %s", index)

    return measure.run(cfg, finish=report, **options)
