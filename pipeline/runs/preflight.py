"""Checks that can fail before any model is built (:func:`preflight`): the output folder, the teacher's and hub
students' families and sizes, layer maps, the data set and its classes. ``bias-atlas validate`` runs them alone."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from pipeline.anatomy import SUPPORTED_FAMILIES
from pipeline.checkpoints import load_model_config
from pipeline.class_map import check_classes, head_classes
from pipeline.data import BIOS_HUB_ID
from pipeline.models import resolve_source
from pipeline.runs.compress_checks import check_compression, check_refit_data
from pipeline.runs.config import ConfigError, RunConfig
from pipeline.runs.plan import plan_variants
from pipeline.runs.task_data import TaskSplits, load_task_splits
from pipeline.runs.units import check_analysis_variants

__all__ = ["preflight"]


def _check_writable(out_dir: Path) -> None:
    probe = out_dir.resolve()
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(
            f"run.out_dir = {str(out_dir)!r} is not writable ({probe} is "
            f"{'not a folder' if not probe.is_dir() else 'read-only'}). Fix: choose a folder you can "
            "write to."
        )


def _check_run_folder(run_dir: Path) -> None:
    """An existing run folder (and the folders and files a run rewrites in it) must be writable."""
    for path in (run_dir, *(run_dir / p for p in ("tables", "models", ".cache", "report", "manifest.json"))):
        if path.exists() and not os.access(path, os.W_OK | (os.X_OK if path.is_dir() else 0)):
            raise ConfigError(
                f"the run folder {run_dir} cannot be written ({path} is read-only). Fix: make it writable "
                f"(chmod -R u+w {run_dir}), or give this run another [run] name or out_dir."
            )


def _model_config(source: str, key: str, notes: list[str]):
    """The config of a model source, read without weights; None (with a note) for a hub name not cached here."""
    try:
        resolved = resolve_source(source)
    except (FileNotFoundError, ImportError) as err:
        raise ConfigError(f"{key} = {source!r}: {err}") from None
    local = Path(resolved).is_dir()
    try:
        config = load_model_config(resolved, local_files_only=True)
    except (OSError, ValueError) as err:
        if local:
            raise ConfigError(f"{key} = {source!r}: cannot read its config.json ({err}).") from None
        notes.append(
            f"{key} = {source!r} is a hub name not cached here: its family and sizes are checked when it is loaded."
        )
        return None
    if config.model_type not in SUPPORTED_FAMILIES:
        raise ConfigError(
            f"{key} = {source!r} is a {config.model_type!r} model; supported families: "
            f"{', '.join(SUPPORTED_FAMILIES)} (BERT covers TinyBERT and MiniLM). Fix: pick a "
            "BERT-family checkpoint."
        )
    return config


def preflight(cfg: RunConfig, *, load_data: bool = True) -> tuple[list[str], TaskSplits | None]:
    """Everything that can fail before a model is built; returns (notes to log, the task data or None).

    Reads only configs of models (no weights, never the hub); loads the task data unless ``load_data`` is False
    or it lives on the hub.

    Raises:
        ConfigError: an unwritable output folder, an unsupported model family, a layer map out of range, a
            student shape that does not divide, fp16 on CPU, task data with fewer than two classes, or erasure layers
            or bias-pruning sizes a model of the run cannot take.
    """
    notes: list[str] = []
    _check_writable(cfg.run.out_dir)
    _check_run_folder(Path(cfg.run.out_dir) / cfg.run.name)
    if cfg.run.amp == "fp16" and (cfg.run.device == "cpu" or not torch.cuda.is_available()):
        raise ConfigError("run.amp = 'fp16' needs a GPU and none will be used; set run.amp = 'bf16' or 'no'.")
    if cfg.run.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("run.device = 'cuda' but no GPU is visible; set run.device = 'auto' or 'cpu'.")
    if cfg.run.executor == "ray" and not os.environ.get("RAY_ADDRESS"):
        _check_local_ray(cfg)
    check_analysis_variants(cfg, [s.variant for s in plan_variants(cfg) if s.exposed])
    teacher = _model_config(cfg.teacher.source, "teacher.source", notes)
    _check_files(cfg.teacher.source, "teacher.source")
    for i, hub in enumerate(cfg.hub_students):
        _check_files(hub.source, f"hub_students[{i}].source")
    if teacher is not None:
        check_compression(cfg, teacher)
    for i, hub in enumerate(cfg.hub_students):
        _model_config(hub.source, f"hub_students[{i}].source", notes)
    if cfg.run.data_root is not None and not Path(cfg.run.data_root).is_dir():
        raise ConfigError(f"run.data_root = {str(cfg.run.data_root)!r} is not a folder; point it at the shared data.")
    if not load_data:
        return notes, None
    if cfg.task.dataset == "bias_in_bios" and cfg.task.path == BIOS_HUB_ID:
        notes.append(f"task.path = {BIOS_HUB_ID!r} is read from the hub when the run starts.")
        return notes, None
    splits = load_task_splits(cfg.task, cfg.run.data_root)
    check_refit_data(cfg, splits)
    if teacher is not None:
        _check_teacher_classes(cfg, teacher, splits.test.label_names)
    if "probes" in cfg.run.analyses:
        _check_probe_folds(cfg, splits, notes)
    return notes, splits


def _check_teacher_classes(cfg: RunConfig, teacher, data_classes) -> None:
    """A teacher's trained head must have the data's classes by name, or ``teacher.label_map`` must map them."""
    source = resolve_source(cfg.teacher.source)
    try:
        check_classes(
            head_classes(source, teacher), data_classes, cfg.teacher.label_map, where=f"teacher.source = {source!r}"
        )
    except ValueError as err:
        raise ConfigError(str(err)) from None


def _check_local_ray(cfg: RunConfig) -> None:
    """A local Ray cluster (no ``RAY_ADDRESS``) has this machine's CPUs, GPUs and memory: a unit asking for more
    would wait forever, so it is refused now (a remote cluster is checked when the executor connects)."""
    have = {
        "ray_cpus": float(os.cpu_count() or 1),
        "ray_gpus": float(torch.cuda.device_count()),
        "ray_memory_gb": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30,
    }
    for key, available in have.items():
        asked = getattr(cfg.run, key)
        if asked is not None and asked > available:
            raise ConfigError(
                f"run.{key} = {asked:g} but this machine, where a local Ray cluster runs, has {available:g}; every "
                f"unit would wait forever. Fix: set run.{key} <= {available:g}, set RAY_ADDRESS to a cluster that "
                "has it, or use executor = 'local'."
            )


_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
_TOKENIZER = ("tokenizer.json", "vocab.txt", "tokenizer_config.json")


def _check_files(source: str, key: str) -> None:
    """A local model folder needs weights and a tokenizer (a hub name is checked when it is downloaded)."""
    folder = Path(source).expanduser()
    if not folder.is_dir():
        return
    missing = [what for what, names in (("weights", _WEIGHTS), ("tokenizer", _TOKENIZER))
               if not any((folder / n).exists() for n in names)]  # fmt: skip
    if missing:
        raise ConfigError(
            f"{key} = {source!r} has no {' and no '.join(missing)} (expected one of "
            f"{', '.join(_WEIGHTS if 'weights' in missing else _TOKENIZER)}); point it at a folder "
            "written by save_pretrained (model and tokenizer)."
        )


def _check_probe_folds(cfg: RunConfig, splits: TaskSplits, notes: list[str]) -> None:
    """Say before any work when the probes cannot fold the test split (their stage would record a skip)."""
    genders = np.bincount(splits.test.genders[splits.test.genders >= 0], minlength=2)
    if genders.min() < cfg.probes.n_folds:
        notes.append(
            f"probes: the test split has {genders.tolist()} texts per gender, fewer than probes.n_folds = "
            f"{cfg.probes.n_folds} for one gender, so the probes stage will skip every variant; raise "
            "task.max_eval or lower probes.n_folds."
        )
