"""The run orchestrator: ``bias-atlas run CONFIG.toml`` (docs/DESIGN.md sections 2 and 5).

Order of work: validate the config (:func:`pipeline.runs.config.load_config`), check everything that can fail early
without building a model (:func:`preflight`: output folder, teacher and hub-student families, layer maps, the
dataset and its classes), plan the variants (:mod:`pipeline.runs.plan`), then run the stages of
:data:`STAGES` in order, each cached by content hash (:mod:`pipeline.runs.stages`), writing::

    <out_dir>/<name>/manifest.json        config, versions, seeds, git revision, plan, stage status/timings/keys
    <out_dir>/<name>/models/<variant>/seed<k>/   save_pretrained folders (+ tokenizer)
    <out_dir>/<name>/tables/*.parquet     tidy tables (pipeline.schema)

Stages: ``build`` (tables ``training``, ``build_predictions``) -> ``task_metrics`` (tables ``task_metrics``,
``predictions``) -> the analyses of :mod:`pipeline.runs.analyses` named in ``run.analyses``: ``bias_metrics``,
``attribution`` (head and neuron tables, ``comparison``) and ``probes``. A stage is a
:class:`pipeline.runs.stages.Stage`; it finds in ``ctx.run`` (:class:`~pipeline.runs.stages.RunInputs`): ``plan``
(list of :class:`~pipeline.runs.plan.Step`; evaluate :func:`~pipeline.runs.plan.exposed_steps` and load them
with :func:`~pipeline.runs.plan.load_variant`), ``splits`` (:class:`TaskSplits`), ``fingerprint`` (data
hash for unit keys), ``device`` (evaluation device) and the lazy factories ``accelerator()`` and ``swapper()``.
What a variant cannot do (int8: no gradients) is skipped with ``ctx.skip(reason, variant=..., seed=...)``; an
analysis unit that raises an expected data or capability error is skipped the same way
(:func:`pipeline.runs.units.per_variant`) and the run goes on. :attr:`RunResult.skipped` lists them all.

GPUs: ``run.device = "auto"`` trains on CUDA when present, ``run.amp`` turns on mixed precision. Several GPUs:
``accelerate launch -m pipeline run CONFIG.toml`` trains data-parallel; only the main process writes.
"""

from __future__ import annotations

import functools
import logging
import platform
import subprocess
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import torch
from accelerate import PartialState

from pipeline.data import GenderSwapper
from pipeline.files import remove_stale_temps
from pipeline.runs import build, stage_attribution, stage_bias_metrics, stage_probes, task_metrics
from pipeline.runs.code_version import REPO_ROOT
from pipeline.runs.config import ConfigError, RunConfig
from pipeline.runs.executors import RayResources, ray_prefill
from pipeline.runs.manifest import Manifest, check_manifest, run_lock
from pipeline.runs.plan import Step, format_plan, plan_variants, select
from pipeline.runs.preflight import preflight
from pipeline.runs.stages import RunInputs, Stage, StageContext, run_stages
from pipeline.runs.tables import TABLES
from pipeline.runs.task_data import TaskSplits, load_task_splits
from pipeline.runs.units import check_analysis_variants
from pipeline.train import make_accelerator

__all__ = ["STAGES", "RunResult", "TaskSplits", "load_task_splits", "preflight", "run"]


log = logging.getLogger("pipeline.runs.run")

# The measuring stages, in order: every stage of this floor. The analyses run when named in ``run.analyses``; the
# findings stage and the report sit on the floors above and join in :mod:`pipeline.cli.full_run`.
STAGES: list[Stage] = [
    build.STAGE,
    task_metrics.STAGE,
    stage_bias_metrics.STAGE,
    stage_attribution.STAGE,
    stage_probes.STAGE,
]
ANALYSES: tuple[str, ...] = ("bias_metrics", "attribution", "probes")


# ---- the run ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunResult:
    """Where the run went, what it built, what each stage did (``ran`` or ``cached``), and what was skipped (the
    manifest's ``skipped`` entries: stage, variant, seed, reason)."""

    run_dir: Path
    plan: list[Step]
    actions: dict[str, str]
    skipped: tuple[dict, ...] = ()

    def skipped_summary(self) -> str:
        """One line: how many analysis items were skipped, per stage (details in manifest.json's ``skipped``)."""
        if not self.skipped:
            return "skipped: nothing"
        stages: dict[str, int] = {}
        for entry in self.skipped:
            stages[entry.get("stage", "?")] = stages.get(entry.get("stage", "?"), 0) + 1
        parts = ", ".join(f"{n} in {stage}" for stage, n in stages.items())
        return f"skipped: {len(self.skipped)} item(s) ({parts}); see 'skipped' in {self.run_dir / 'manifest.json'}"


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for package in (
        "bias-atlas",
        "torch",
        "transformers",
        "accelerate",
        "numpy",
        "pandas",
        "scikit-learn",
        "pydantic",
        "captum",
        "transformer-lens",
        "concept-erasure",
    ):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "not installed"
    return out


def _git() -> dict[str, object]:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()

    try:
        return {"revision": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}
    except (OSError, subprocess.SubprocessError):
        return {"revision": None, "dirty": None}


class Lazy:
    """``factory(*args)``, made on the first call and kept; a pickled copy (a Ray worker's) makes its own."""

    def __init__(self, factory, *args) -> None:
        self.factory, self.args, self.value = factory, args, None

    def __call__(self):
        if self.value is None:
            self.value = self.factory(*self.args)
        return self.value

    def __getstate__(self) -> dict:
        return {**self.__dict__, "value": None}


def _execute(
    cfg: RunConfig,
    run_dir: Path,
    plan: list[Step],
    splits: TaskSplits,
    *,
    force: Sequence[str],
    stages: Sequence[Stage],
    config_path: str | Path | None,
) -> tuple[dict[str, str], tuple[dict, ...]]:
    """Write the manifest's header, then run the stages (the caller holds the run folder's lock); returns the
    stage actions and the manifest's ``skipped`` entries."""
    state = PartialState()
    manifest = Manifest(run_dir / "manifest.json", write=state.is_main_process)
    check_manifest(run_dir, manifest)  # refuses units outside the run folder before anything is written
    manifest.data.setdefault("created", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    manifest.data.update(
        name=cfg.run.name,
        config_path=str(config_path) if config_path else None,
        config=cfg.model_dump(mode="json"),
        versions=_versions(),
        git=_git(),
        seeds=list(cfg.run.seeds),
        processes=state.num_processes,
        plan=[{**s.__dict__, "folder": s.folder} for s in plan],
        data={name: len(d) for name, d in [*splits.train.items(), ("dev", splits.dev), ("test", splits.test)]},
        label_names=list(splits.test.label_names),
    )
    device = torch.device("cuda" if cfg.run.device != "cpu" and torch.cuda.is_available() else "cpu")
    inputs = RunInputs(
        plan,
        splits,
        splits.fingerprint(),
        device,
        Lazy(make_accelerator, cfg.run.device, cfg.run.amp),
        Lazy(GenderSwapper.from_winobias, cfg.run.data_root),
    )
    ctx = StageContext(cfg, run_dir, manifest, force=frozenset(force), run=inputs)
    log.info(
        "run %s: %d models planned, %d seeds, device %s -> %s",
        cfg.run.name,
        len(plan),
        len(cfg.run.seeds),
        device,
        run_dir,
    )
    prefill = None
    if cfg.run.executor == "ray":
        resources = RayResources(cfg.run.ray_cpus, cfg.run.ray_gpus, cfg.run.ray_memory_gb)
        prefill = functools.partial(ray_prefill, resources=resources)
    actions = run_stages(
        stages,
        ctx,
        inputs={"plan": [s.key for s in plan], "data": inputs.fingerprint},
        registry={name: spec.stage for name, spec in TABLES.items()},
        prefill=prefill,
    )
    return actions, tuple(manifest.data.get("skipped", ()))


def run(
    cfg: RunConfig,
    *,
    config_path: str | Path | None = None,
    dry_run: bool = False,
    only: Sequence[str] | None = None,
    force: Sequence[str] = (),
    stages: Sequence[Stage] | None = None,
    finish: Callable[[Path, dict[str, str]], None] | None = None,
) -> RunResult:
    """Run (or with ``dry_run`` only plan and check) the configured pipeline.

    Args:
        cfg: the validated config.
        config_path: recorded in the manifest.
        dry_run: print the variant plan after the early checks; build nothing.
        only: restrict to these variants (all seeds) and the models they are built from.
        force: stage names to recompute even if cached.
        stages: the stage list (default :data:`STAGES`).
        finish: called with the run folder and the stage actions after the stages, still under the lock, in the
            main process only (the complete run writes its report there).

    Raises:
        ConfigError: from :func:`preflight`, or an unknown stage in ``force`` or variant in ``only``.
    """
    stages = [s for s in (STAGES if stages is None else stages) if s.name not in ANALYSES or s.name in cfg.run.analyses]
    names = {s.name for s in stages}  # a stage reading the analyses' tables needs only the analyses that run
    stages = [replace(s, needs=tuple(n for n in s.needs if n not in ANALYSES or n in names)) for s in stages]
    unknown = [f for f in force if f not in [s.name for s in stages]]
    if unknown:
        raise ConfigError(f"--force {unknown}: unknown stage; stages: {', '.join(s.name for s in stages)}.")
    full_plan = plan_variants(cfg)
    check_analysis_variants(cfg, [s.variant for s in full_plan if s.exposed])
    plan = select(full_plan, only)
    notes, splits = preflight(cfg, load_data=not dry_run)
    for note in notes:
        log.info("note: %s", note)
    run_dir = Path(cfg.run.out_dir) / cfg.run.name
    if dry_run:
        print(f"run folder: {run_dir}\n{format_plan(plan)}")
        return RunResult(run_dir, plan, {})
    splits = splits or load_task_splits(cfg.task, cfg.run.data_root)
    state = PartialState()
    with run_lock(run_dir) if state.is_main_process else nullcontext():
        if state.is_main_process:
            for stale in remove_stale_temps(run_dir):
                log.info("removed %s, left by a killed run", stale)
        actions, skipped = _execute(cfg, run_dir, plan, splits, force=force, stages=stages, config_path=config_path)
        if state.is_main_process and finish is not None:
            finish(run_dir, actions)
    return RunResult(run_dir, plan, actions, skipped)
