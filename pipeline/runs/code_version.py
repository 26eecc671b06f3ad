"""The code version of a stage: the source of every project module its function imports, however indirectly.

A stage's cache key includes :func:`code_version` of its module, computed from the module's import closure inside
the project (parsed with :mod:`ast`, function bodies included, the ``__init__.py`` of every package on the way), so
editing any module a stage depends on recomputes it and no hand-written list of source paths can go stale.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from collections.abc import Sequence
from pathlib import Path

__all__ = ["PROJECT_PACKAGES", "REPO_ROOT", "code_version", "import_closure"]

REPO_ROOT = Path(__file__).resolve().parents[2]
PROJECT_PACKAGES = ("pipeline", "attribution", "probes")


def _module_file(name: str, root: Path) -> Path | None:
    """The source file of project module ``name`` (a package's ``__init__.py``), or None outside the project."""
    if name.split(".")[0] not in PROJECT_PACKAGES:
        return None
    base = root.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(file: Path, module: str) -> frozenset[str]:
    """Every module named by an import statement anywhere in ``file`` (function bodies too), absolute form."""
    stat = file.stat()
    return _parsed_imports(str(file), stat.st_mtime_ns, stat.st_size, module)


@functools.lru_cache(maxsize=4096)
def _parsed_imports(path: str, mtime_ns: int, size: int, module: str) -> frozenset[str]:
    """:func:`_imports` of one version of a file (keyed by its modification time and size): a run computes the
    closures of all its stages, and they share most modules."""
    found: set[str] = set()
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(Path(path).read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([base] if base else [])])
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # ``from pkg import submodule``
    return frozenset(found)


def import_closure(modules: Sequence[str], *, root: Path = REPO_ROOT) -> list[Path]:
    """Source files of the project modules that ``modules`` import, transitively (the modules themselves and the
    ``__init__.py`` of every package on the way included), sorted."""
    seen: dict[str, Path] = {}
    stack = list(modules)
    while stack:
        name = stack.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ first
            sub = ".".join(parts[:i])
            file = _module_file(sub, root)
            if file is None or sub in seen:
                continue
            seen[sub] = file
            stack.extend(_imports(file, sub))
    return sorted(set(seen.values()))


def code_version(modules: Sequence[str], *, root: Path = REPO_ROOT) -> str:
    """sha256 over the source of every project module in the import closure of ``modules`` (repo-relative names
    and bytes), so that editing any module a stage imports, however indirectly, changes its key."""
    digest = hashlib.sha256()
    for file in import_closure(modules, root=root):
        digest.update(str(file.relative_to(root)).encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()
