"""The floors of DESIGN.md section 2, asserted by parsing every import statement of the project (function bodies
included): the base of ``pipeline`` imports neither the analyses nor the orchestration; ``attribution`` and
``probes`` import neither the orchestration nor each other; no module is over 400 lines. The ``__main__.py``
aliases (``python -m attribution`` = ``bias-atlas``) are entry points above every floor and are exempt."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("pipeline", "attribution", "probes")


def _modules() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py") if p.name != "__main__.py")


def _imported(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


def _floor(path: Path) -> str:
    rel = path.relative_to(ROOT).as_posix()
    if rel.startswith("pipeline/runs/"):
        return "orchestration"
    return rel.split("/")[0]  # pipeline (the base), attribution, probes


FORBIDDEN = {  # floor -> module prefixes it must not import
    "pipeline": ("attribution", "probes", "pipeline.runs"),
    "attribution": ("pipeline.runs", "probes"),
    "probes": ("pipeline.runs", "attribution"),
    "orchestration": (),
}


@pytest.mark.parametrize("path", _modules(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_import_goes_up_a_floor(path):
    bad = sorted(
        m for m in _imported(path) for prefix in FORBIDDEN[_floor(path)] if m == prefix or m.startswith(prefix + ".")
    )
    assert not bad, f"{path.relative_to(ROOT)} ({_floor(path)} floor) imports {bad}"


def test_only_the_orchestration_calls_the_analyses():
    callers = {
        p.relative_to(ROOT).as_posix()
        for p in _modules()
        if _floor(p) == "pipeline" and any(m.split(".")[0] in ("attribution", "probes") for m in _imported(p))
    }
    assert callers == set()


def test_no_file_over_400_lines():
    files = [*_modules(), ROOT / "app.py", *(ROOT / "tests").rglob("*.py"), *(ROOT / "bench").glob("*.py")]
    long = {p.relative_to(ROOT).as_posix(): n for p in files if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}
