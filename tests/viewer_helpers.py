"""Driving the viewer under ``streamlit.testing.v1.AppTest``: open it on a runs folder, switch tabs."""

from __future__ import annotations

import os
from pathlib import Path

from streamlit.testing.v1 import AppTest

from app import RUNS_ENV

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def open_app(root: Path) -> AppTest:
    """A fresh app whose runs folder is ``root`` (read from the environment on the first run)."""
    previous = os.environ.get(RUNS_ENV)
    os.environ[RUNS_ENV] = str(root)
    try:
        return AppTest.from_file(APP, default_timeout=120).run()
    finally:
        os.environ.pop(RUNS_ENV) if previous is None else os.environ.__setitem__(RUNS_ENV, previous)


def show(at: AppTest, page: str) -> AppTest:
    at.session_state["page"] = page
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def infos(at: AppTest) -> str:
    return "\n".join(i.value for i in at.info)
