"""Stages of a run: content-hashed caching, atomic writes and the manifest (docs/DESIGN.md section 5).

A run is a list of :class:`Stage` objects, each a function ``(ctx) -> {table name: tidy frame}``. The orchestrator
(:mod:`pipeline.runs.run`) executes them in order; the tables land in ``<run>/tables/<table>.parquet``. New stages (bias
metrics, attribution, probes) are appended to the list; nothing else changes.

Caching. A stage's key is the sha256 of (the config sections it reads, the output hashes of the stages it needs,
the source of every project module its function imports, the run's inputs: planned models and a fingerprint of the data). A stage whose key matches a finished entry in the manifest
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
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from accelerate import PartialState

from pipeline.files import atomic_dir
from pipeline.runs.code_version import code_version
from pipeline.runs.manifest import Manifest, file_hash, hash_folder, intact, now
from pipeline.schema import read_table, tidy, write_table

__all__ = [
    "Manifest",
    "RunInputs",
    "Stage",
    "StageContext",
    "concat_tables",
    "hash_folder",
    "run_stages",
    "sha256_json",
]

log = logging.getLogger("pipeline.runs.run")
Tables = dict[str, pd.DataFrame]


# ---- hashing and atomic writes ----------------------------------------------------------------------------------
def sha256_json(obj: Any) -> str:
    """sha256 of the canonical JSON of ``obj`` (sorted keys; paths and other objects as strings)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def concat_tables(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate tidy frames; an empty list gives an empty frame with the schema columns."""
    frames = [f for f in frames if len(f)]
    if not frames:
        return tidy(pd.DataFrame({c: pd.Series(dtype="object") for c in ("variant", "metric", "value")}))
    return pd.concat(frames, ignore_index=True)


PENDING = "__pending__"  # stands for the hash of a unit that has not finished, while units are collected


@dataclass(frozen=True)
class UnitSpec:
    """A unit a distributed executor runs: its name, cache key, function and model folder."""

    name: str
    key: str
    fn: Callable[..., Tables]
    folder: Path | None


class _Placeholder(dict):
    """What a collected unit returns while its stage is being collected: an empty table for any name."""

    def __missing__(self, name: str) -> pd.DataFrame:
        return concat_tables([])


# ---- stages -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Stage:
    """One step of the run.

    Attributes:
        name: stage id (also the manifest key).
        fn: ``fn(ctx) -> {table name: tidy frame}``; table names are unique across stages.
        sections: config sections the stage reads (hashed into its key).
        needs: upstream stages whose outputs it reads.
        reads: ``reads(config) -> {file: content hash}`` of the files outside the run folder it reads besides the
            task data (benchmark files); hashed into its key, so an edited file recomputes the stage.

    The stage's code version is the import closure of ``fn``'s module (:func:`code_version`), so no list of
    source paths can go stale.
    """

    name: str
    fn: Callable[[StageContext], Tables]
    sections: tuple[str, ...]
    needs: tuple[str, ...] = ()
    reads: Callable[[Any], dict[str, str]] | None = None


@dataclass
class RunInputs:
    """What the orchestrator hands its stages beside the config (:func:`pipeline.runs.run.run` fills it).

    Attributes:
        plan: the run's (selected) build steps, parents first (:class:`pipeline.runs.plan.Step`).
        splits: the task data (:class:`pipeline.runs.task_data.TaskSplits`).
        fingerprint: the data's hash, part of every unit key that reads it.
        device: where analyses run (int8 variants stay on CPU).
        accelerator: makes the training accelerator on first use.
        swapper: makes the gender-word swapper on first use.
    """

    plan: list = field(default_factory=list)
    splits: Any = None
    fingerprint: str = ""
    device: Any = None
    accelerator: Callable[[], Any] | None = None
    swapper: Callable[[], Any] | None = None


@dataclass
class StageContext:
    """What a stage sees: the config, the run folder, the manifest, the orchestrator's :class:`RunInputs` and helpers
    for cached units."""

    config: Any
    run_dir: Path
    manifest: Manifest
    force: frozenset[str] = frozenset()
    run: RunInputs = field(default_factory=RunInputs)
    stage: str = ""
    code_hash: str = ""
    counts: dict[str, int] = field(default_factory=lambda: {"ran": 0, "cached": 0})
    collecting: list[UnitSpec] | None = None  # set by a distributed executor: units to run, not run here
    pending: set[str] = field(default_factory=set)  # units submitted and not finished (their dependants wait)

    @property
    def is_main(self) -> bool:
        return PartialState().is_main_process

    def _cache_dir(self, unit: str) -> Path:
        return self.run_dir / ".cache" / self.stage / unit.replace("/", "__")

    def unit(
        self, name: str, parts: dict[str, Any], fn: Callable[..., Tables], *, folder: Path | None = None
    ) -> Tables:
        """Run ``fn`` once per distinct input: cached by the sha256 of ``parts`` and the stage's code.

        Args:
            name: unit id within the stage, e.g. ``"distil-ft_after/seed0"``.
            parts: everything the result depends on besides code (config values, upstream hashes).
            fn: ``fn()`` (or ``fn(tmp_folder)`` with ``folder``) returning tables for this unit.
            folder: a model folder the unit writes; ``fn`` fills a temp folder that is renamed into place and
                hashed (the hash is in ``manifest.stages[stage].units[name].hash``).

        While a distributed executor collects the units of a stage (``collecting`` is a list), a unit that is not
        cached is appended to it instead of run, and an empty placeholder is returned.
        """
        key = sha256_json({"stage": self.stage, "unit": name, "parts": parts, "code": self.code_hash})
        cached = self.cached(name, key, folder)
        if cached is not None:
            self.counts["cached"] += 1
            return cached
        if self.collecting is not None:
            if PENDING not in json.dumps(parts, default=str):  # inputs ready: a task of this wave
                self.collecting.append(UnitSpec(name, key, fn, folder))
            return _Placeholder()
        record = self.begin(name, key)
        start = time.perf_counter()
        try:
            if folder is None:
                tables = fn()
            else:
                with atomic_dir(folder, commit=self.is_main) as tmp:
                    tables = fn(tmp)
                PartialState().wait_for_everyone()
        except BaseException as err:
            record.update(status="failed", error=f"{type(err).__name__}: {err}")
            self.manifest.save()
            raise
        self.complete(name, tables, time.perf_counter() - start, folder)
        PartialState().wait_for_everyone()
        return tables

    def cached(self, name: str, key: str, folder: Path | None) -> Tables | None:
        """The tables of a finished unit with this key whose outputs are intact (else None, with a warning when
        outputs were damaged)."""
        record = self.manifest.unit(self.stage, name)
        paths = {t: self._cache_dir(name) / f"{t}.parquet" for t in record.get("tables", [])}
        if self.stage in self.force or record.get("status") != "done" or record.get("key") != key:
            return None
        problem = intact(record, paths, folder)
        if problem is None:
            return {t: read_table(p) for t, p in paths.items()}
        log.warning("[%s] %s: %s; recomputing this unit", self.stage, name, problem)
        return None

    def begin(self, name: str, key: str) -> dict[str, Any]:
        """Record that unit ``name`` (cache key ``key``) starts; returns its manifest record."""
        record = self.manifest.unit(self.stage, name)
        record.update(status="started", key=key, started=now())
        record["executions"] = record.get("executions", 0) + 1
        self.manifest.save()
        return record

    def complete(self, name: str, tables: Tables, seconds: float, folder: Path | None, **extra: Any) -> None:
        """Write a finished unit's tables to its cache and record it done, with the hashes of its outputs."""
        record, cache = self.manifest.unit(self.stage, name), self._cache_dir(name)
        if self.is_main:
            for table, frame in tables.items():
                write_table(frame, cache / f"{table}.parquet")
        record.update(
            status="done",
            seconds=round(seconds, 3),
            finished=now(),
            tables=sorted(tables),
            table_hashes=_table_hashes(cache, tables) if self.is_main else {},
            **extra,
        )
        if folder is not None:
            record.update(folder=folder.relative_to(self.run_dir).as_posix(), hash=hash_folder(folder))
        record.pop("error", None)
        self.manifest.save()
        self.counts["ran"] += 1

    def unit_hash(self, stage: str, name: str) -> str:
        """The folder hash a finished unit of ``stage`` recorded (e.g. a built model); while collecting, a marker
        for a unit that is not finished yet (its dependants wait for a later wave)."""
        record = self.manifest.data["stages"].get(stage, {}).get("units", {}).get(name, {})
        if self.collecting is not None and (record.get("status") != "done" or name in self.pending):
            return f"{PENDING}:{name}"
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
    parts = {"stage": stage.name, "config": config, "upstream": upstream, "code": ctx.code_hash, "inputs": inputs}
    if stage.reads is not None:
        parts["reads"] = stage.reads(ctx.config)
    return sha256_json(parts)


def _table_hashes(folder: Path, tables: Mapping[str, Any]) -> dict[str, str]:
    return {t: file_hash(folder / f"{t}.parquet") for t in tables}


def _units_problem(ctx: StageContext, record: dict[str, Any]) -> str | None:
    """What is wrong with the model folders the finished units of a stage wrote (None: all intact)."""
    for name, unit in record.get("units", {}).items():
        if unit.get("status") == "done" and unit.get("folder"):
            problem = intact(unit, {}, ctx.run_dir / unit["folder"])
            if problem:
                return f"unit {name}: {problem}"
    return None


def _outputs_hash(record: dict[str, Any], tables: dict[str, Path]) -> str:
    """What downstream keys depend on: the finished units' folder hashes (or keys) and the table bytes."""
    units = {n: u.get("hash") or u.get("key") for n, u in record["units"].items() if u.get("status") == "done"}
    files = {t: file_hash(p) for t, p in tables.items()}
    return sha256_json({"units": units, "tables": files})


def run_stages(
    stages: Sequence[Stage],
    ctx: StageContext,
    *,
    inputs: Any = None,
    registry: Mapping[str, str] | None = None,
    prefill: Callable[[Stage, StageContext], None] | None = None,
) -> dict[str, str]:
    """Run ``stages`` in order, skipping those whose key matches a finished entry; return ``{stage: action}``.

    ``inputs`` (JSON-able) enters every stage key: the run passes the planned models and the data fingerprint.
    ``registry`` (table name -> the stage that writes it): a stage that writes a table not registered to it
    fails before anything is written. ``prefill(stage, ctx)``, when given, runs the stage's uncached units first
    (a distributed executor, :mod:`pipeline.runs.executors`); the stage then finds them in the cache.

    Each stage logs one summary line: ``[name] cached`` or ``[name] done in 12.3 s (4 units run, 2 cached)``.
    """
    names = [s.name for s in stages]
    for stage in stages:
        missing = [n for n in stage.needs if n not in names[: names.index(stage.name)]]
        if missing:
            raise ValueError(f"stage {stage.name!r} needs {missing}, which must come before it in the stage list.")
    actions: dict[str, str] = {}
    for stage in stages:
        ctx.stage, ctx.code_hash, ctx.counts = stage.name, code_version([stage.fn.__module__]), {"ran": 0, "cached": 0}
        record = ctx.manifest.stage(stage.name)
        key = _stage_key(stage, ctx, inputs)
        paths = {t: ctx.run_dir / "tables" / f"{t}.parquet" for t in record.get("tables", [])}
        if stage.name not in ctx.force and record.get("status") == "done" and record.get("key") == key:
            problem = intact(record, paths) or _units_problem(ctx, record)
            if problem is None:
                record["last"] = "cached"
                ctx.manifest.save()
                log.info("[%s] cached", stage.name)
                actions[stage.name] = "cached"
                continue
            log.warning(
                "[%s] %s: running the stage again (finished units whose outputs are intact stay cached)",
                stage.name,
                problem,
            )
        record.update(status="started", key=key, started=now(), last="ran")
        record["executions"] = record.get("executions", 0) + 1
        ctx.manifest.save()
        start = time.perf_counter()
        try:
            if prefill is not None:
                prefill(stage, ctx)
            tables = stage.fn(ctx)
            unknown = sorted(t for t in tables if registry is not None and registry.get(t) != stage.name)
            if unknown:
                raise RuntimeError(
                    f"stage {stage.name!r} wrote tables {unknown} that the table registry "
                    "(pipeline/runs/tables.py) does not give to it; register them there."
                )
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
        record.update(
            status="done",
            seconds=round(seconds, 3),
            finished=now(),
            tables=sorted(tables),
            outputs=_outputs_hash(record, paths),
            table_hashes=_table_hashes(ctx.run_dir / "tables", tables),
        )
        record.pop("error", None)
        ctx.manifest.save()
        log.info(
            "[%s] done in %.1f s (%d units run, %d cached; tables: %s)",
            stage.name,
            seconds,
            ctx.counts["ran"],
            ctx.counts["cached"],
            ", ".join(sorted(tables)) or "none",
        )
        actions[stage.name] = "ran"
    return actions
