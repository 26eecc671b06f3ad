"""The run orchestrator: ``bias-atlas run CONFIG.toml`` (DESIGN.md sections 2 and 5).

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
:class:`pipeline.runs.stages.Stage`; it finds in ``ctx.extras``: ``plan`` (list of
:class:`~pipeline.runs.plan.Step`; evaluate :func:`~pipeline.runs.plan.exposed_steps` and load them
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
import os
import platform
import subprocess
from contextlib import nullcontext
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
from accelerate import PartialState

from pipeline.anatomy import SUPPORTED_FAMILIES
from pipeline.runs import build, stage_attribution, stage_bias_metrics, stage_findings, stage_probes, task_metrics
from pipeline.compress.distil import check_layer_map
from pipeline.runs.plan import Step, format_plan, plan_variants, select
from pipeline.compress.tiny import default_tiny_map
from pipeline.runs.config import ConfigError, RunConfig
from pipeline.data import (
    BIOS_HUB_ID,
    GenderSwapper,
    TaskData,
    rebalance_genders,
    split_task,
)
from pipeline.checkpoints import load_config
from pipeline.data.sampling import seeded_rows
from pipeline.data.tasks import load_task
from pipeline.models import resolve_source
from pipeline.files import remove_stale_temps
from pipeline.runs.executors import RayResources, ray_prefill
from pipeline.runs.manifest import Manifest, run_lock
from pipeline.runs.report import write_report
from pipeline.runs.stages import REPO_ROOT, Stage, StageContext, run_stages, sha256_json
from pipeline.runs.tables import TABLES
from pipeline.runs.units import check_analysis_variants
from pipeline.train import make_accelerator

__all__ = ["STAGES", "RunResult", "TaskSplits", "load_task_splits", "preflight", "run"]

log = logging.getLogger("pipeline.runs.run")

# The stage registry: every stage of a run, in order. The analyses run when named in ``run.analyses``.
STAGES: list[Stage] = [build.STAGE, task_metrics.STAGE, stage_bias_metrics.STAGE, stage_attribution.STAGE,
                       stage_probes.STAGE, stage_findings.STAGE]
ANALYSES: tuple[str, ...] = ("bias_metrics", "attribution", "probes")


# ---- data -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TaskSplits:
    """The run's task data: one training set per ``task.training_sets`` entry, and shared dev/test splits."""

    train: dict[str, TaskData]
    dev: TaskData
    test: TaskData

    def fingerprint(self) -> str:
        """sha256 of every text, label and gender of every split (enters all cache keys)."""
        parts = {name: [list(d.texts), d.labels.tolist(), d.genders.tolist(), list(d.label_names)]
                 for name, d in [*self.train.items(), ("dev", self.dev), ("test", self.test)]}
        return sha256_json(parts)


def _top_classes(data: TaskData, k: int) -> TaskData:
    """Keep the ``k`` most frequent classes (ties by class id), renumbered in their original order."""
    counts = np.bincount(data.labels, minlength=len(data.label_names))
    keep = np.sort(np.argsort(-counts, kind="stable")[:k])
    rows = np.flatnonzero(np.isin(data.labels, keep))
    new_id = {old: new for new, old in enumerate(keep)}
    return TaskData(data.name, tuple(data.texts[i] for i in rows), [new_id[y] for y in data.labels[rows]],
                    data.genders[rows], tuple(data.label_names[i] for i in keep))


def _sampled(data: TaskData, n: int | None, seed: int) -> TaskData:
    return data.subset(seeded_rows(len(data), n, seed))


def _load_dataset(task, root: Path | None) -> TaskData:
    name = {"bug": "bug-gold" if task.bug_file == "gold" else "bug", "bias_in_bios": "bias_in_bios"}.get(
        task.dataset, str(task.path))
    return load_task(name, root=root, path=task.path if task.dataset != "table" else None, text_col=task.text_col,
                     label_col=task.label_col, gender_col=task.gender_col, min_per_class=task.min_per_class)


def load_task_splits(task, root: Path | None = None) -> TaskSplits:
    """Load the ``[task]`` dataset, keep ``max_classes``, split, subsample and build the training sets.

    Raises:
        ConfigError: the data cannot be loaded, or a training set is left with fewer than two classes.
    """
    try:
        data = _load_dataset(task, root)
    except (ValueError, FileNotFoundError, ImportError) as err:
        raise ConfigError(f"task (dataset = {task.dataset!r}, path = {task.path!r}): {err}") from None
    if task.max_classes is not None:
        data = _top_classes(data, task.max_classes)
    splits = split_task(data, fractions=task.fractions, seed=task.split_seed)
    train = _sampled(splits["train"], task.max_train, task.split_seed)
    sets = {"original": train}
    if "balanced" in task.training_sets:
        sets["balanced"] = rebalance_genders(train, seed=task.split_seed)
    for name in task.training_sets:
        present = np.unique(sets[name].labels)
        if len(present) < 2:
            raise ConfigError(f"task: the {name!r} training set has {len(present)} class(es) after loading "
                              f"({data.name}, {len(sets[name])} rows); a classifier needs two. Fix: raise "
                              "task.max_train or task.max_classes, or check the label column.")
    return TaskSplits({n: sets[n] for n in task.training_sets}, _sampled(splits["dev"], task.max_eval, task.split_seed),
                      _sampled(splits["test"], task.max_eval, task.split_seed))


# ---- early checks -----------------------------------------------------------------------------------------------
def _check_writable(out_dir: Path) -> None:
    probe = out_dir.resolve()
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"run.out_dir = {str(out_dir)!r} is not writable ({probe} is "
                          f"{'not a folder' if not probe.is_dir() else 'read-only'}). Fix: choose a folder you can "
                          "write to.")


def _model_config(source: str, key: str, notes: list[str]):
    """The config of a model source, read without weights; None (with a note) for a hub name not cached here."""
    try:
        resolved = resolve_source(source)
    except (FileNotFoundError, ImportError) as err:
        raise ConfigError(f"{key} = {source!r}: {err}") from None
    local = Path(resolved).is_dir()
    try:
        config = load_config(resolved, local_files_only=True)
    except (OSError, ValueError) as err:
        if local:
            raise ConfigError(f"{key} = {source!r}: cannot read its config.json ({err}).") from None
        notes.append(f"{key} = {source!r} is a hub name not cached here: its family and sizes are checked when "
                     "it is loaded.")
        return None
    if config.model_type not in SUPPORTED_FAMILIES:
        raise ConfigError(f"{key} = {source!r} is a {config.model_type!r} model; supported families: "
                          f"{', '.join(SUPPORTED_FAMILIES)} (BERT covers TinyBERT and MiniLM). Fix: pick a "
                          "BERT-family checkpoint.")
    return config


def _check_students(cfg: RunConfig, teacher) -> None:
    n_layers = teacher.num_hidden_layers if teacher.model_type == "bert" else teacher.n_layers
    distil, tiny = cfg.compress.distil, cfg.compress.tiny
    try:
        if distil is not None and distil.layer_map is not None:
            check_layer_map(distil.layer_map, n_layers, "compress.distil.layer_map")
        if tiny is not None:
            n_student = tiny.n_layers or (len(tiny.layer_map) if tiny.layer_map else max(1, n_layers // 2))
            check_layer_map(tiny.layer_map or default_tiny_map(n_layers, n_student), n_layers,
                            "compress.tiny.layer_map")
            d_model = teacher.hidden_size if teacher.model_type == "bert" else teacher.dim
            heads = tiny.n_heads or (teacher.num_attention_heads if teacher.model_type == "bert" else teacher.n_heads)
            hidden = tiny.hidden_size or d_model // 2
            if hidden % heads:
                raise ValueError(f"compress.tiny: hidden_size {hidden} is not a multiple of n_heads {heads}; set "
                                 "hidden_size and n_heads so that it is.")
    except ValueError as err:
        raise ConfigError(str(err)) from None


def preflight(cfg: RunConfig, *, load_data: bool = True) -> tuple[list[str], TaskSplits | None]:
    """Everything that can fail before a model is built; returns (notes to log, the task data or None).

    Reads only configs of models (no weights, never the hub); loads the task data unless ``load_data`` is False
    or it lives on the hub.

    Raises:
        ConfigError: an unwritable output folder, an unsupported model family, a layer map out of range, a
            student shape that does not divide, fp16 on CPU, or task data with fewer than two classes.
    """
    notes: list[str] = []
    _check_writable(cfg.run.out_dir)
    if cfg.run.amp == "fp16" and (cfg.run.device == "cpu" or not torch.cuda.is_available()):
        raise ConfigError("run.amp = 'fp16' needs a GPU and none will be used; set run.amp = 'bf16' or 'no'.")
    if cfg.run.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("run.device = 'cuda' but no GPU is visible; set run.device = 'auto' or 'cpu'.")
    teacher = _model_config(cfg.teacher.source, "teacher.source", notes)
    if teacher is not None:
        _check_students(cfg, teacher)
    for i, hub in enumerate(cfg.hub_students):
        _model_config(hub.source, f"hub_students[{i}].source", notes)
    if cfg.run.data_root is not None and not Path(cfg.run.data_root).is_dir():
        raise ConfigError(f"run.data_root = {str(cfg.run.data_root)!r} is not a folder; point it at the shared data.")
    if not load_data:
        return notes, None
    if cfg.task.dataset == "bias_in_bios" and cfg.task.path == BIOS_HUB_ID:
        notes.append(f"task.path = {BIOS_HUB_ID!r} is read from the hub when the run starts.")
        return notes, None
    return notes, load_task_splits(cfg.task, cfg.run.data_root)


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
    for package in ("bias-atlas", "torch", "transformers", "accelerate", "numpy", "pandas", "scikit-learn",
                    "pydantic", "captum", "transformer-lens", "concept-erasure"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "not installed"
    return out


def _git() -> dict[str, object]:
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True,
                              check=True, timeout=10).stdout.strip()

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


def _execute(cfg: RunConfig, run_dir: Path, plan: list[Step], splits: TaskSplits, *, force: Sequence[str],
             stages: Sequence[Stage], config_path: str | Path | None) -> tuple[dict[str, str], tuple[dict, ...]]:
    """Write the manifest's header, then run the stages (the caller holds the run folder's lock); returns the
    stage actions and the manifest's ``skipped`` entries."""
    state = PartialState()
    manifest = Manifest(run_dir / "manifest.json", write=state.is_main_process)
    manifest.data.setdefault("created", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    manifest.data.update(
        name=cfg.run.name, config_path=str(config_path) if config_path else None, config=cfg.model_dump(mode="json"),
        versions=_versions(), git=_git(), seeds=list(cfg.run.seeds), processes=state.num_processes,
        plan=[{**s.__dict__, "folder": s.folder} for s in plan],
        data={name: len(d) for name, d in [*splits.train.items(), ("dev", splits.dev), ("test", splits.test)]},
        label_names=list(splits.test.label_names))
    device = torch.device("cuda" if cfg.run.device != "cpu" and torch.cuda.is_available() else "cpu")
    extras = {"plan": plan, "splits": splits, "fingerprint": splits.fingerprint(), "device": device,
              "accelerator": Lazy(make_accelerator, cfg.run.device, cfg.run.amp),
              "swapper": Lazy(GenderSwapper.from_winobias, cfg.run.data_root)}
    ctx = StageContext(cfg, run_dir, manifest, force=frozenset(force), extras=extras)
    log.info("run %s: %d models planned, %d seeds, device %s -> %s", cfg.run.name, len(plan), len(cfg.run.seeds),
             device, run_dir)
    prefill = None
    if cfg.run.executor == "ray":
        resources = RayResources(cfg.run.ray_cpus, cfg.run.ray_gpus, cfg.run.ray_memory_gb)
        prefill = functools.partial(ray_prefill, resources=resources)
    actions = run_stages(stages, ctx, inputs={"plan": [s.key for s in plan], "data": extras["fingerprint"]},
                         registry={name: spec.stage for name, spec in TABLES.items()}, prefill=prefill)
    return actions, tuple(manifest.data.get("skipped", ()))


def run(cfg: RunConfig, *, config_path: str | Path | None = None, dry_run: bool = False,
        only: Sequence[str] | None = None, force: Sequence[str] = (), stages: Sequence[Stage] | None = None) -> RunResult:
    """Run (or with ``dry_run`` only plan and check) the configured pipeline.

    Args:
        cfg: the validated config.
        config_path: recorded in the manifest.
        dry_run: print the variant plan after the early checks; build nothing.
        only: restrict to these variants (all seeds) and the models they are built from.
        force: stage names to recompute even if cached.
        stages: the stage list (default :data:`STAGES`).

    Raises:
        ConfigError: from :func:`preflight`, or an unknown stage in ``force`` or variant in ``only``.
    """
    stages = [s for s in (STAGES if stages is None else stages)
              if s.name not in ANALYSES or s.name in cfg.run.analyses]
    stages = [stage_findings.findings_stage_for([s.name for s in stages]) if s.name == "findings" else s
              for s in stages]
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
        if state.is_main_process and "findings" in actions:  # the report is the run's last product
            index, _ = write_report(run_dir, cfg.findings)
            log.info("[report] %s", index)
    return RunResult(run_dir, plan, actions, skipped)
