"""Stages of a run: content-hashed caching, atomic writes and the manifest (DESIGN.md section 5).

A run is a list of :class:`Stage` objects, each a function ``(ctx) -> {table name: tidy frame}``. The orchestrator
(:mod:`pipeline.run`) executes them in order; the tables land in ``<run>/tables/<table>.parquet``. New stages (bias
metrics, attribution, probes) are appended to the list; nothing else changes.

Caching. A stage's key is the sha256 of (the config sections it reads, the output hashes of the stages it needs,
the source files of its code, the run's inputs: planned models and a fingerprint of the data). A stage whose key matches a finished entry in the manifest
is skipped ("cached"). Inside a stage, work is split into *units* (one model built, one variant evaluated) with
their own keys, run through :meth:`StageContext.unit`: a unit's tables (and model folder) are kept under
``<run>/.cache``, so a run killed at any point resumes and recomputes only unfinished units.

Atomicity. Tables go through :func:`pipeline.schema.write_table` (temp file + rename), the manifest is written to a
temp file and renamed, and a model folder is written to a temp folder and renamed into place
(:func:`atomic_dir`), so nothing half-written is ever read.

Under ``accelerate launch`` every process runs the stages (training steps are data-parallel); only the main
process writes, and processes meet after each unit.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
from accelerate import PartialState

from pipeline.schema import read_table, tidy, write_table

__all__ = [
    "REPO_ROOT",
    "Manifest",
    "Stage",
    "StageContext",
    "atomic_dir",
    "code_version",
    "concat_tables",
    "hash_folder",
    "run_stages",
    "sha256_json",
    "write_json",
]

log = logging.getLogger("pipeline.run")
REPO_ROOT = Path(__file__).resolve().parent.parent
Tables = dict[str, pd.DataFrame]


# ---- hashing and atomic writes ----------------------------------------------------------------------------------
def sha256_json(obj: Any) -> str:
    """sha256 of the canonical JSON of ``obj`` (sorted keys; paths and other objects as strings)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def code_version(paths: Sequence[str]) -> str:
    """sha256 over the source of ``paths`` (files, or folders meaning every ``*.py`` below), repo-relative."""
    digest = hashlib.sha256()
    for rel in sorted(paths):
        target = REPO_ROOT / rel
        files = sorted(target.rglob("*.py")) if target.is_dir() else [target]
        for file in files:
            if not file.is_file():
                raise FileNotFoundError(f"stage code path {rel!r} does not exist under {REPO_ROOT}.")
            digest.update(str(file.relative_to(REPO_ROOT)).encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()


def hash_folder(path: Path) -> str:
    """sha256 over every file's relative name and bytes, in sorted order."""
    digest = hashlib.sha256()
    for file in sorted(p for p in Path(path).rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(path)).encode())
        with open(file, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically: a temp file beside ``path``, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=str))
    os.replace(tmp, path)


@contextmanager
def atomic_dir(path: Path, *, commit: bool = True) -> Iterator[Path]:
    """Yield a temp folder; on success it replaces ``path`` in one rename (``commit=False``: it is discarded)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        if commit:
            old = path.with_name(f".{path.name}.{os.getpid()}.old")
            if path.exists():
                os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def concat_tables(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate tidy frames; an empty list gives an empty frame with the schema columns."""
    frames = [f for f in frames if len(f)]
    if not frames:
        return tidy(pd.DataFrame({c: pd.Series(dtype="object") for c in ("variant", "metric", "value")}))
    return pd.concat(frames, ignore_index=True)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ---- manifest ---------------------------------------------------------------------------------------------------
class Manifest:
    """``manifest.json`` of a run folder: config, versions, plan, and status/timing/key of stages and units."""

    def __init__(self, path: Path, *, write: bool = True) -> None:
        self.path, self.write = Path(path), write
        self.data: dict[str, Any] = json.loads(self.path.read_text()) if self.path.exists() else {}
        self.data.setdefault("stages", {})
        self.data.setdefault("skipped", [])

    def save(self) -> None:
        if self.write:
            self.data["updated"] = _now()
            write_json(self.path, self.data)

    def stage(self, name: str) -> dict[str, Any]:
        return self.data["stages"].setdefault(name, {"status": "pending", "executions": 0, "units": {}})

    def unit(self, stage: str, unit: str) -> dict[str, Any]:
        return self.stage(stage)["units"].setdefault(unit, {"status": "pending", "executions": 0})


# ---- stages -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Stage:
    """One step of the run.

    Attributes:
        name: stage id (also the manifest key).
        fn: ``fn(ctx) -> {table name: tidy frame}``; table names are unique across stages.
        sections: config sections the stage reads (hashed into its key).
        code: repo-relative source files or folders of its code (hashed into its key).
        needs: upstream stages whose outputs it reads.
    """

    name: str
    fn: Callable[[StageContext], Tables]
    sections: tuple[str, ...]
    code: tuple[str, ...]
    needs: tuple[str, ...] = ()


@dataclass
class StageContext:
    """What a stage sees: the config, the run folder, the manifest and helpers for cached units.

    The orchestrator subclasses nothing: it fills ``extras`` (plan, data, accelerator...) that its own stages use.
    """

    config: Any
    run_dir: Path
    manifest: Manifest
    force: frozenset[str] = frozenset()
    extras: dict[str, Any] = field(default_factory=dict)
    stage: str = ""
    code_hash: str = ""
    counts: dict[str, int] = field(default_factory=lambda: {"ran": 0, "cached": 0})

    @property
    def is_main(self) -> bool:
        return PartialState().is_main_process

    def _cache_dir(self, unit: str) -> Path:
        return self.run_dir / ".cache" / self.stage / unit.replace("/", "__")

    def unit(self, name: str, parts: dict[str, Any], fn: Callable[..., Tables], *,
             folder: Path | None = None) -> Tables:
        """Run ``fn`` once per distinct input: cached by the sha256 of ``parts`` and the stage's code.

        Args:
            name: unit id within the stage, e.g. ``"distil-ft_after/seed0"``.
            parts: everything the result depends on besides code (config values, upstream hashes).
            fn: ``fn()`` (or ``fn(tmp_folder)`` with ``folder``) returning tables for this unit.
            folder: a model folder the unit writes; ``fn`` fills a temp folder that is renamed into place and
                hashed (the hash is in ``manifest.stages[stage].units[name].hash``).
        """
        record = self.manifest.unit(self.stage, name)
        key = sha256_json({"stage": self.stage, "unit": name, "parts": parts, "code": self.code_hash})
        cache = self._cache_dir(name)
        stored = record.get("tables", [])
        fresh = self.stage not in self.force and record.get("status") == "done" and record.get("key") == key
        if fresh and all((cache / f"{t}.parquet").exists() for t in stored) and (folder is None or folder.exists()):
            self.counts["cached"] += 1
            return {t: read_table(cache / f"{t}.parquet") for t in stored}
        record.update(status="started", key=key, started=_now())
        record["executions"] = record.get("executions", 0) + 1
        self.manifest.save()
        start = time.perf_counter()
        try:
            if folder is None:
                tables = fn()
            else:
                with atomic_dir(folder, commit=self.is_main) as tmp:
                    tables = fn(tmp)
                PartialState().wait_for_everyone()
                record["hash"] = hash_folder(folder)
            if self.is_main:
                for table, frame in tables.items():
                    write_table(frame, cache / f"{table}.parquet")
        except BaseException as err:
            record.update(status="failed", error=f"{type(err).__name__}: {err}")
            self.manifest.save()
            raise
        record.update(status="done", seconds=round(time.perf_counter() - start, 3), finished=_now(),
                      tables=sorted(tables))
        record.pop("error", None)
        self.manifest.save()
        PartialState().wait_for_everyone()
        self.counts["ran"] += 1
        return tables

    def unit_hash(self, stage: str, name: str) -> str:
        """The folder hash a finished unit of ``stage`` recorded (e.g. a built model)."""
        return self.manifest.data["stages"][stage]["units"][name]["hash"]

    def skip(self, reason: str, **where: Any) -> None:
        """Log and record in the manifest that some work was skipped, and why."""
        entry = {"stage": self.stage, **where, "reason": reason}
        if entry not in self.manifest.data["skipped"]:
            self.manifest.data["skipped"].append(entry)
        log.warning("[%s] skipped %s: %s", self.stage, " ".join(f"{k}={v}" for k, v in where.items()), reason)


def _stage_key(stage: Stage, ctx: StageContext, inputs: Any) -> str:
    config = {s: ctx.config.model_dump(mode="json")[s] for s in stage.sections}
    upstream = {n: ctx.manifest.data["stages"].get(n, {}).get("outputs") for n in stage.needs}
    return sha256_json({"stage": stage.name, "config": config, "upstream": upstream, "code": ctx.code_hash,
                        "inputs": inputs})


def _outputs_hash(record: dict[str, Any], tables: dict[str, Path]) -> str:
    """What downstream keys depend on: the finished units' folder hashes (or keys) and the table bytes."""
    units = {n: u.get("hash") or u.get("key") for n, u in record["units"].items() if u.get("status") == "done"}
    files = {t: hashlib.sha256(p.read_bytes()).hexdigest() for t, p in tables.items()}
    return sha256_json({"units": units, "tables": files})


def run_stages(stages: Sequence[Stage], ctx: StageContext, *, inputs: Any = None) -> dict[str, str]:
    """Run ``stages`` in order, skipping those whose key matches a finished entry; return ``{stage: action}``.

    ``inputs`` (JSON-able) enters every stage key: the run passes the planned models and the data fingerprint.

    Each stage logs one summary line: ``[name] cached`` or ``[name] done in 12.3 s (4 units run, 2 cached)``.
    """
    names = [s.name for s in stages]
    for stage in stages:
        missing = [n for n in stage.needs if n not in names[: names.index(stage.name)]]
        if missing:
            raise ValueError(f"stage {stage.name!r} needs {missing}, which must come before it in the stage list.")
    actions: dict[str, str] = {}
    for stage in stages:
        ctx.stage, ctx.code_hash, ctx.counts = stage.name, code_version(stage.code), {"ran": 0, "cached": 0}
        record = ctx.manifest.stage(stage.name)
        key = _stage_key(stage, ctx, inputs)
        paths = {t: ctx.run_dir / "tables" / f"{t}.parquet" for t in record.get("tables", [])}
        if (stage.name not in ctx.force and record.get("status") == "done" and record.get("key") == key
                and all(p.exists() for p in paths.values())):
            record["last"] = "cached"
            ctx.manifest.save()
            log.info("[%s] cached", stage.name)
            actions[stage.name] = "cached"
            continue
        record.update(status="started", key=key, started=_now(), last="ran")
        record["executions"] = record.get("executions", 0) + 1
        ctx.manifest.save()
        start = time.perf_counter()
        try:
            tables = stage.fn(ctx)
            paths = {t: ctx.run_dir / "tables" / f"{t}.parquet" for t in tables}
            if ctx.is_main:
                for table, frame in tables.items():
                    write_table(frame, paths[table])
            PartialState().wait_for_everyone()
        except BaseException as err:
            record.update(status="failed", error=f"{type(err).__name__}: {err}")
            ctx.manifest.save()
            log.error("[%s] failed: %s", stage.name, err)
            raise
        seconds = time.perf_counter() - start
        record.update(status="done", seconds=round(seconds, 3), finished=_now(), tables=sorted(tables),
                      outputs=_outputs_hash(record, paths))
        record.pop("error", None)
        ctx.manifest.save()
        log.info("[%s] done in %.1f s (%d units run, %d cached; tables: %s)", stage.name, seconds, ctx.counts["ran"],
                 ctx.counts["cached"], ", ".join(sorted(tables)) or "none")
        actions[stage.name] = "ran"
    return actions
