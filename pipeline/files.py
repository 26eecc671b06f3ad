"""Atomic writes: the one way this tool writes a file or a folder, so that nothing half-written is ever read.

A writer fills a temp file (or folder) beside the target, named ``.<name>.<pid>.<random>.tmp``, which is renamed
over the target in one step when the writer succeeds and removed when it fails. Written files get a normal file's
permissions (``0666`` minus the umask, usually ``0644``; ``tempfile.mkstemp`` alone would leave them ``0600``).
:func:`remove_stale_temps` deletes the temp files a killed process left behind.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = [
    "TEMP_SUFFIX",
    "atomic_dir",
    "atomic_path",
    "describe_write_error",
    "remove_stale_temps",
    "write_bytes",
    "write_json",
]

TEMP_SUFFIX = ".tmp"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path beside ``path`` for a writer that takes a path; rename it over ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=TEMP_SUFFIX)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON atomically (paths and other objects as strings); returns the path."""
    return write_bytes(path, json.dumps(obj, indent=2, sort_keys=False, default=str).encode())


@contextmanager
def atomic_dir(path: str | Path, *, commit: bool = True) -> Iterator[Path]:
    """Yield a temp folder; on success it replaces ``path`` in one rename (``commit=False``: it is discarded)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=TEMP_SUFFIX))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        for file in (p for p in tmp.rglob("*") if p.is_file()):  # writers such as safetensors leave files 0600
            os.chmod(file, 0o666 & ~_umask())
        if commit:
            old = path.with_name(f".{path.name}.{os.getpid()}.old{TEMP_SUFFIX}")
            if path.exists():
                os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def remove_stale_temps(root: str | Path) -> list[Path]:
    """Delete the temp files and folders under ``root`` that processes no longer running left behind."""
    removed = []
    for tmp in sorted(Path(root).rglob(f".*{TEMP_SUFFIX}")):
        parts = tmp.name.split(".")
        pid = int(parts[-3]) if len(parts) >= 4 and parts[-3].isdigit() else None
        if pid is None or not _alive(pid):
            shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _mb(n: float) -> str:
    return f"{n / 2**20:,.0f} MB"


def describe_write_error(err: OSError, where: str | Path, *, needed: int | None = None) -> str | None:
    """One line (what failed, where, the fix) for an OS error that stopped a write into ``where``: a full disk (with
    the free space and, when known, the ``needed`` bytes), a read-only or unwritable folder, a name too long; None
    for any other error (a bug, which keeps its traceback).
    """
    path = err.filename or where
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        probe = Path(where)
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        free = shutil.disk_usage(probe).free
        need = f"; the run needs about {_mb(needed)} for its models in all" if needed else ""
        return (
            f"the disk is full while writing {path} ({_mb(free)} free{need}). Fix: free space there (or point "
            "run.out_dir at a larger disk) and run the same command again; finished units are kept."
        )
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return (
            f"cannot write {path}: {err.strerror or 'permission denied'} (the folder is read-only or not yours). "
            f"Fix: make {where} writable (chmod u+w), or copy the run folder somewhere writable and use that."
        )
    if err.errno == errno.ENAMETOOLONG:
        return f"a file name under {where} is too long ({path}). Fix: use a shorter run name or folder."
    return None
