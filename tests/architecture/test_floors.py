"""The floors of docs/ARCHITECTURE.md, asserted by parsing every import statement of the project (function bodies
included): each module imports only from its own floor or the floors below; ``attribution`` and ``probes`` never
import each other; among the readers, figures import neither the report nor the viewer, and the report does not
import the viewer; no import cycle between modules; no module is over 400 lines. The ``__main__.py`` aliases
(``python -m attribution`` = ``bias-atlas``) are entry points, on the top floor with :mod:`pipeline.cli`."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("pipeline", "attribution", "probes")

# (floor, folder prefixes), lowest first; a module belongs to the first floor one of whose prefixes it starts with,
# and everything under pipeline/ that no upper floor claims is the base.
FLOORS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("entry", ("pipeline/cli/", "__main__")),
    ("viewer", ("pipeline/viewer/", "app.py")),
    ("report", ("pipeline/report/",)),
    ("figures", ("pipeline/figures/",)),
    ("findings", ("pipeline/findings/",)),
    ("orchestration", ("pipeline/runs/",)),
    ("attribution", ("attribution/",)),
    ("probes", ("probes/",)),
    ("base", ("pipeline/",)),
)
RANK = {"base": 0, "attribution": 1, "probes": 1, "orchestration": 2, "findings": 3, "figures": 4, "report": 5}
RANK |= {"viewer": 6, "entry": 7}


def _modules() -> list[Path]:
    return sorted([*(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")), ROOT / "app.py"])


def _name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("").as_posix().replace("/", ".")
    return rel.removesuffix(".__init__")


MODULES = {_name(p): p for p in _modules()}


def _imported(path: Path) -> set[str]:
    """Project modules ``path`` imports (``from a.b import c`` counts ``a.b.c`` when that is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return {m for m in found if m in MODULES}


def _floor(path: Path) -> str:
    rel = path.relative_to(ROOT).as_posix()
    if path.name == "__main__.py":
        return "entry"
    return next(floor for floor, prefixes in FLOORS if rel.startswith(prefixes))


def _allowed(floor: str, target: str) -> bool:
    if floor == target:
        return True
    return RANK[target] < RANK[floor] and {floor, target} != {"attribution", "probes"}


@pytest.mark.parametrize("path", _modules(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_import_goes_up_a_floor(path):
    floor = _floor(path)
    bad = sorted(m for m in _imported(path) if not _allowed(floor, _floor(MODULES[m])))
    assert not bad, f"{path.relative_to(ROOT)} ({floor} floor) imports {[(m, _floor(MODULES[m])) for m in bad]}"


def test_every_module_has_a_known_floor():
    assert {_floor(p) for p in _modules()} == set(RANK)


def _with_packages(name: str, imported: set[str]) -> set[str]:
    """``imported`` plus the packages each import runs first (``import a.b.c`` runs ``a/__init__`` and
    ``a/b/__init__``), less the importer's own packages (already running) and a package's own submodules (a package
    re-exporting its modules is not a cycle of ideas)."""
    out = set()
    for module in imported:
        parts = module.split(".")
        out.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return {m for m in out if m in MODULES and not name.startswith(m + ".") and not m.startswith(name + ".")}


def test_no_import_cycle_between_modules():
    """Tarjan's strongly connected components of the module-level import graph, with the package ``__init__`` each
    import runs (such a cycle fails at import time in one order and not the other)."""
    graph = {name: _with_packages(name, _imported(path)) - {name} for name, path in MODULES.items()}
    index, low, stack, on, cycles = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert cycles == []


def test_no_file_over_400_lines():
    files = [*_modules(), *(ROOT / "tests").rglob("*.py"), *(ROOT / "bench").glob("*.py")]
    long = {p.relative_to(ROOT).as_posix(): n for p in files if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}


# File names several folders share on purpose, each for the same role: a concept's settings and its registry, a floor's
# commands, an analysis package's runner, and a benchmark's loader (pipeline/data) beside its scorer (pipeline/metrics).
PARALLEL = {"__init__", "__main__", "config", "registry", "cli", "analysis", "counterfactual", "seat", "stereoset"}
PARALLEL |= {"winobias"}
PARALLEL |= {"winogender"}


def test_module_names_are_unique():
    """One name, one idea: two files of the project share a file name only in the parallel roles above."""
    seen: dict[str, list[str]] = {}
    for path in _modules():
        if path.stem not in PARALLEL:
            seen.setdefault(path.stem, []).append(path.relative_to(ROOT).as_posix())
    assert {stem: paths for stem, paths in seen.items() if len(paths) > 1} == {}
