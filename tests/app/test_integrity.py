"""The viewer on a damaged run and outside its runs folder: one bad table is named once and costs only the views
that need it (a damaged fitness input leaves fitness unknown); the runs-folder box and links open nothing outside
the folder the viewer serves; stopping `bias-atlas view` stops its Streamlit server."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from viewer_helpers import infos, open_app, show

from pipeline.runs.runfolder import RunFolder


def test_a_truncated_table_is_named_and_the_other_pages_still_work(demo_run, tmp_path):
    run = tmp_path / "runs" / "demo"
    shutil.copytree(demo_run, run, ignore=shutil.ignore_patterns("models"))
    table = run / "tables" / "head_ablation.parquet"
    table.write_bytes(table.read_bytes()[:64])
    at = open_app(run.parent)
    assert not at.exception
    assert any("head_ablation is damaged" in w.value for w in at.sidebar.warning)
    overview = show(at, "Overview")
    assert len(overview.dataframe[0].value) > 0
    at.session_state["page"] = "Heads"
    at.run()
    assert not at.exception and "head_ablation.parquet cannot be read" in at.error[0].value
    assert show(at, "Probes").dataframe


def test_the_runs_folder_box_refuses_folders_outside_the_served_root(demo_run):
    at = open_app(demo_run.parent)
    at.sidebar.text_input(key="root").set_value("/").run()
    assert not at.exception
    assert "outside the runs folder this viewer serves" in at.error[0].value and not infos(at)


def _tables_copy(run, to):
    shutil.copytree(run, to, ignore=shutil.ignore_patterns("models", ".cache"))
    return to


@pytest.mark.parametrize("damaged, removed", [("fitness", None), ("predictions", "fitness")])
def test_a_damaged_fitness_input_leaves_fitness_unknown_not_every_page_broken(demo_run, tmp_path, damaged, removed):
    run = _tables_copy(demo_run, tmp_path / "runs" / "demo")
    path = run / "tables" / f"{damaged}.parquet"
    path.write_bytes(path.read_bytes()[:64])  # truncated
    if removed:  # no findings fitness: the viewer would compute it from the damaged predictions
        (run / "tables" / f"{removed}.parquet").unlink()
    at = open_app(run.parent)
    for page in ("Overview", "Heads", "Probes"):
        at = show(at, page)  # no error box on these pages: no SchemaError, no traceback
        warned = [w.value for w in at.warning]
        assert any(w.startswith(f"Fitness unknown: {damaged} is damaged") for w in warned), (page, warned)
    assert len(show(at, "Overview").dataframe[0].value) > 0  # the overview's numbers are still there


def test_links_out_of_the_served_folder_are_neither_listed_nor_opened(demo_run, tmp_path):
    root, outside = tmp_path / "runs", tmp_path / "elsewhere"
    run = _tables_copy(demo_run, root / "demo")
    _tables_copy(demo_run, outside / "other")
    (root / "linked").symlink_to(outside / "other")  # a whole run folder linked in from outside
    layers = run / "tables" / "probes_layers.parquet"
    layers.unlink()
    layers.symlink_to(outside / "other" / "tables" / "probes_layers.parquet")  # one table linked in
    at = open_app(root)
    assert not at.exception
    assert at.multiselect(key=f"runs:{root}").options == ["demo"]
    assert "probes_layers" not in RunFolder(run).tables() and RunFolder(run).table_path("probes_layers") is None
    at = show(at, "Probes")
    assert "probes_layers is missing" in infos(at)


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in text.read_text().split()] if text.exists() else []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stopping_view_stops_the_streamlit_server_it_started(tmp_path, sig):
    if not Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").exists():
        pytest.skip("needs /proc/PID/task/PID/children (Linux)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    view = subprocess.Popen([sys.executable, "-m", "pipeline", "view", str(tmp_path), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not (servers := _children(view.pid)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert servers, "bias-atlas view started no server"
        time.sleep(1.0)  # let the server install its own handlers
        view.send_signal(sig)
        view.wait(30)
        for pid in servers:  # the server is gone (not a zombie left running either)
            deadline = time.monotonic() + 15
            while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not Path(f"/proc/{pid}").exists(), f"streamlit server {pid} outlived `bias-atlas view`"
    finally:
        if view.poll() is None:
            view.kill()
