"""The manifest of a run folder, the lock that keeps two runs from writing one folder, and output verification.

``manifest.json`` records, per stage and per unit, its status, timings, cache key and a content hash of every
output: the sha256 of each table file and of each model folder. Before a run trusts its cache it checks those
hashes (:func:`intact`), so a truncated table or a deleted model is rebuilt, alone, instead of passing as cached;
``bias-atlas verify RUN`` reports the same state for every unit (:func:`verify`).

A run holds an exclusive lock on ``<run>/.lock`` (``fcntl.flock``; released by the OS when the process dies) for
as long as it writes; a second run on the same folder stops at once with a message naming the holder's pid.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pipeline.files import write_json

__all__ = [
    "SOUND",
    "Manifest",
    "ManifestError",
    "RunLockedError",
    "check_manifest",
    "file_hash",
    "hash_folder",
    "intact",
    "now",
    "run_lock",
    "verify",
]

SOUND = "ok"  # the one state of verify() that is verifiably sound; every other state makes it fail


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def file_hash(path: Path) -> str:
    """sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def hash_folder(path: Path) -> str:
    """sha256 over every file's relative name and bytes, in sorted order."""
    digest = hashlib.sha256()
    for file in sorted(p for p in Path(path).rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(path)).encode())
        digest.update(file_hash(file).encode())
    return digest.hexdigest()


class Manifest:
    """``manifest.json`` of a run folder: config, versions, plan, and status/timing/key/hashes of stages and units."""

    def __init__(self, path: Path, *, write: bool = True) -> None:
        self.path, self.write = Path(path), write
        try:
            self.data: dict[str, Any] = json.loads(self.path.read_text()) if self.path.exists() else {}
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(
                f"{self.path} is not valid JSON ({err}); the run folder's record is damaged. Fix: move "
                "the run folder aside (or delete manifest.json to recompute everything) and run "
                "again."
            ) from None
        self.data.setdefault("stages", {})
        self.data.setdefault("skipped", [])

    def save(self) -> None:
        if self.write:
            self.data["updated"] = now()
            write_json(self.path, self.data)

    def stage(self, name: str) -> dict[str, Any]:
        return self.data["stages"].setdefault(name, {"status": "pending", "executions": 0, "units": {}})

    def unit(self, stage: str, unit: str) -> dict[str, Any]:
        return self.stage(stage)["units"].setdefault(unit, {"status": "pending", "executions": 0})


class ManifestError(ValueError):
    """manifest.json records something a run must not trust or act on (e.g. a model folder outside the run)."""


def _outside(run_dir: Path, folder: str) -> bool:
    """True when a recorded unit folder is absolute or resolves (symlinks followed) outside the run folder."""
    root = Path(run_dir).resolve()
    target = (root / folder).resolve()
    return Path(folder).is_absolute() or not target.is_relative_to(root)


def check_manifest(run_dir: Path, manifest: Manifest) -> None:
    """Refuse a manifest whose units point at model folders outside the run folder (they would be hashed, trusted
    and never rebuilt there).

    Raises:
        ManifestError: the first such unit, with the fix.
    """
    for stage, record in manifest.data["stages"].items():
        for name, unit in record.get("units", {}).items():
            folder = unit.get("folder")
            if folder and _outside(run_dir, str(folder)):
                raise ManifestError(
                    f"{manifest.path}: unit {name} of stage {stage} records the model folder {folder!r}, which is "
                    f"outside the run folder {run_dir}; a run only trusts what it wrote inside it. Fix: delete that "
                    "unit's entry from manifest.json (or the whole file) and run again to rebuild it."
                )


def intact(record: dict[str, Any], tables: dict[str, Path], folder: Path | None = None) -> str | None:
    """None when every output of a finished stage or unit matches its recorded hash, else what is wrong."""
    hashes = record.get("table_hashes", {})
    for name, path in tables.items():
        if not path.exists():
            return f"{path.name} is missing"
        if name not in hashes:
            return f"{path.name} has no recorded hash (written by an older version; unverified)"
        if file_hash(path) != hashes[name]:
            return f"{path.name} changed since it was written (hash mismatch)"
    if folder is not None:
        if not folder.is_dir():
            return f"model folder {folder.name} is missing"
        if record.get("hash") and hash_folder(folder) != record["hash"]:
            return f"model folder {folder} changed since it was written (hash mismatch)"
    return None


def verify(run_dir: Path) -> list[dict[str, str]]:
    """The state of every stage and unit of a run folder: ``ok``, ``missing``/``corrupt``/``unverified`` (with why),
    ``outside`` (a unit folder outside the run folder, never hashed), or the recorded status (``failed``,
    ``started``, ``pending``). Only ``ok`` (:data:`SOUND`) is verifiably sound."""
    run_dir = Path(run_dir)
    manifest = Manifest(run_dir / "manifest.json", write=False)
    if not manifest.data["stages"]:
        raise FileNotFoundError(f"{run_dir} has no manifest.json with stages; is it a run folder?")
    rows = []
    for stage, record in manifest.data["stages"].items():
        tables = {t: run_dir / "tables" / f"{t}.parquet" for t in record.get("tables", [])}
        problem = intact(record, tables) if record.get("status") == "done" else None
        rows.append({"stage": stage, "unit": "", "state": _state(record, problem), "detail": problem or ""})
        for unit, urecord in record.get("units", {}).items():
            cache = run_dir / ".cache" / stage / unit.replace("/", "__")
            utables = {t: cache / f"{t}.parquet" for t in urecord.get("tables", [])}
            folder = run_dir / urecord["folder"] if urecord.get("folder") else None
            if folder is not None and _outside(run_dir, str(urecord["folder"])):
                detail = f"model folder {urecord['folder']!r} is outside the run folder (not hashed, refused by run)"
                rows.append({"stage": stage, "unit": unit, "state": "outside", "detail": detail})
                continue
            problem = intact(urecord, utables, folder) if urecord.get("status") == "done" else None
            rows.append({"stage": stage, "unit": unit, "state": _state(urecord, problem), "detail": problem or ""})
    return rows


def _state(record: dict[str, Any], problem: str | None) -> str:
    if record.get("status") != "done":
        return str(record.get("status", "pending"))
    if problem is None:
        return "ok"
    return next(s for s in ("unverified", "missing", "corrupt") if s in problem or s == "corrupt")


class RunLockedError(RuntimeError):
    """Another process is writing this run folder."""


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold the run folder's exclusive lock for the block.

    Raises:
        RunLockedError: another live process holds it; the message names its pid.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / ".lock"
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise RunLockedError(
                f"run folder {run_dir} is being written by another run (pid {holder}); wait for it "
                "to finish, or give this run another [run] name."
            ) from None
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(str(os.getpid()))
            handle.flush()
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
