"""A run folder that cannot lie: corrupt or missing outputs are found and rebuilt alone, a second run on the same
folder is refused while the first holds it, and ``bias-atlas verify`` reports each unit's state."""

from __future__ import annotations

import json
import multiprocessing
import shutil
import time

import pytest
from run_fixtures import demo_config, run_pipeline, save_teacher, write_toml

from pipeline.cli.main import main
from pipeline.runs.manifest import run_lock, verify
from pipeline.schema import read_table


def _config(out, teacher) -> dict:
    config = demo_config(out, teacher, name="rel", analyses=["bias_metrics"])
    config["run"]["seeds"] = [0]
    config["compress"] = {"int8": {"orders": ["before"]}}
    config["metrics"] = {**config["metrics"], "metrics": ["extrinsic"], "n_boot": 100}
    return config


def _executions(run_dir, stage):
    units = json.loads((run_dir / "manifest.json").read_text())["stages"][stage]["units"]
    return {name: unit["executions"] for name, unit in units.items()}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    teacher = save_teacher(tmp_path_factory.mktemp("teacher"))
    out = tmp_path_factory.mktemp("runs")
    config = _config(out, teacher)
    result = run_pipeline(config)
    assert result.actions == {"build": "ran", "task_metrics": "ran", "bias_metrics": "ran", "findings": "ran"}
    return result.run_dir, config


def test_a_fresh_run_verifies_and_files_are_not_private(run_dir):
    folder, _ = run_dir
    states = {(r["stage"], r["unit"]): r["state"] for r in verify(folder)}
    assert set(states.values()) == {"ok"} and ("build", "int8-ft_before/seed0") in states
    assert (folder / "tables" / "task_metrics.parquet").stat().st_mode & 0o777 == 0o644
    assert (folder / "manifest.json").stat().st_mode & 0o777 == 0o644
    weights = folder / "models" / "teacher-ft" / "seed0" / "model.safetensors"
    assert weights.stat().st_mode & 0o777 == 0o644


def test_a_truncated_table_is_detected_and_rewritten_from_cached_units(run_dir, capsys):
    folder, config = run_dir
    table = folder / "tables" / "task_metrics.parquet"
    good = read_table(table)
    table.write_bytes(table.read_bytes()[:100])
    assert main(["verify", str(folder)]) == 1
    assert "task_metrics  " in capsys.readouterr().out
    before = _executions(folder, "task_metrics")
    result = run_pipeline(config)
    # the rewritten table is byte-identical, so the findings read the same inputs and stay cached
    assert result.actions == {"build": "cached", "task_metrics": "ran", "bias_metrics": "cached", "findings": "cached"}
    assert _executions(folder, "task_metrics") == before  # every unit came from its intact cache
    assert read_table(table).equals(good)


def test_a_corrupt_unit_cache_recomputes_that_unit_alone(run_dir):
    """The stage's table is intact, so the stage stays cached; once it must run (its table deleted), the unit whose
    cache was emptied is recomputed and the others are read from their cache."""
    folder, config = run_dir
    cache = folder / ".cache" / "bias_metrics" / "teacher-ft__seed0" / "bias_metrics.parquet"
    cache.write_bytes(b"")
    assert run_pipeline(config).actions["bias_metrics"] == "cached"
    (folder / "tables" / "bias_metrics.parquet").unlink()
    before = _executions(folder, "bias_metrics")
    assert run_pipeline(config).actions["bias_metrics"] == "ran"
    after = _executions(folder, "bias_metrics")
    assert {u: after[u] - before[u] for u in after} == {u: int(u == "teacher-ft/seed0") for u in after}


def test_a_deleted_model_is_rebuilt_alone(run_dir):
    folder, config = run_dir
    shutil.rmtree(folder / "models" / "int8-ft_before" / "seed0")
    assert {r["unit"]: r["state"] for r in verify(folder) if r["stage"] == "build"}["int8-ft_before/seed0"] == "missing"
    before = _executions(folder, "build")
    result = run_pipeline(config)
    after = _executions(folder, "build")
    assert {u: after[u] - before[u] for u in after} == {u: int(u == "int8-ft_before/seed0") for u in after}
    assert (folder / "models" / "int8-ft_before" / "seed0" / "config.json").exists()
    assert result.actions["build"] == "ran" and all(r["state"] == "ok" for r in verify(folder))


def _hold(folder, ready, release):
    with run_lock(folder):
        ready.set()
        release.wait(60)


def test_a_second_run_on_a_locked_folder_stops_with_the_holders_pid(run_dir, tmp_path, capsys):
    folder, config = run_dir
    path = tmp_path / "rel.toml"
    write_toml(config, path)
    manifest = (folder / "manifest.json").read_text()
    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold, args=(folder, ready, release))
    holder.start()
    try:
        assert ready.wait(60)
        assert main(["run", str(path)]) == 2
        assert f"pid {holder.pid}" in capsys.readouterr().err
        assert (folder / "manifest.json").read_text() == manifest  # nothing written by the refused run
    finally:
        release.set()
        holder.join(30)
    start = time.perf_counter()
    assert main(["run", str(path)]) == 0 and time.perf_counter() - start < 60


def test_stale_temp_files_of_killed_runs_are_removed(run_dir):
    folder, config = run_dir
    stale = folder / "tables" / ".task_metrics.parquet.999999999.abc.tmp"
    stale.write_bytes(b"half")
    run_pipeline(config)
    assert not stale.exists()
