"""The Ray executor on a local Ray cluster: the same tables as the local executor, a failing unit does not stop the
others, and a killed driver resumes with only the unfinished units recomputed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
from run_fixtures import demo_config, run_pipeline

from pipeline.runs.config import config_from_dict
from pipeline.runs.executors import RayResources, UnitsFailedError, ray_prefill
from pipeline.runs.manifest import Manifest
from pipeline.runs.stages import Stage, StageContext, concat_tables, run_stages
from pipeline.schema import read_table, tidy

ray = pytest.importorskip("ray", reason="the Ray executor needs the [ray] extra")
# Measured times and where a unit ran differ between executors by nature; every other number must be equal.
_TIMED = ("seconds", "latency", "train_seconds")


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, log_to_driver=False, include_dashboard=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def _comparable(frame: pd.DataFrame) -> pd.DataFrame:
    timed = frame["metric"].astype(str).str.contains("|".join(_TIMED)) if "metric" in frame else False
    return frame[~timed].sort_values([c for c in ("variant", "seed", "metric", "unit", "layer", "head", "subset",
                                                  "example") if c in frame]).reset_index(drop=True)  # fmt: skip


def test_ray_executor_writes_the_tables_of_the_local_executor(cluster, demo_run, demo_teacher, tmp_path):
    config = demo_config(tmp_path, demo_teacher)
    config["run"]["executor"] = "ray"
    result = run_pipeline(config)
    manifest = json.loads((result.run_dir / "manifest.json").read_text())
    workers = {u["worker"] for u in manifest["stages"]["build"]["units"].values()}
    assert len(workers) == 2 and all(":" in w for w in workers)  # two worker processes shared the builds
    for table in sorted(p.stem for p in (demo_run / "tables").glob("*.parquet")):
        local, remote = (_comparable(read_table(r / "tables" / f"{table}.parquet")) for r in (demo_run, result.run_dir))
        pd.testing.assert_frame_equal(local, remote, obj=table)


def _stage(fail: str):
    def fn(ctx):
        def unit(name):
            if name == fail:
                raise RuntimeError(f"unit {name} broke")
            return {"rows": tidy([{"variant": name, "metric": "m", "value": 1.0}])}

        return {"rows": concat_tables([ctx.unit(n, {"n": n}, lambda n=n: unit(n))["rows"] for n in "abc"])}

    return Stage("toy", fn, sections=("task",))


def test_a_failing_unit_does_not_stop_the_others_and_is_named(cluster, tmp_path):
    cfg = config_from_dict({"run": {"name": "t"}})
    ctx = StageContext(cfg, tmp_path, Manifest(tmp_path / "manifest.json"))
    prefill = lambda stage, c: ray_prefill(stage, c, RayResources())
    with pytest.raises(UnitsFailedError, match=r"1 unit\(s\) failed.*b: RuntimeError: unit b broke"):
        run_stages([_stage("b")], ctx, registry={"rows": "toy"}, prefill=prefill)
    units = ctx.manifest.data["stages"]["toy"]["units"]
    assert {n: u["status"] for n, u in units.items()} == {"a": "done", "b": "failed", "c": "done"}
    run_stages([_stage("")], ctx, registry={"rows": "toy"}, prefill=prefill)  # fixed: only b runs again
    assert {n: u["executions"] for n, u in units.items()} == {"a": 1, "b": 2, "c": 1}


@pytest.mark.slow  # 31 s: keeps the default suite within 10 minutes; resuming is also tested without Ray (test_run)
def test_a_killed_driver_resumes_with_only_unfinished_units(cluster, demo_teacher, tmp_path):
    config = demo_config(tmp_path, demo_teacher, name="killed", analyses=[])
    config["run"].update(seeds=[0], executor="ray")
    config["finetune"]["epochs"] = 1  # resuming is tested, not learning
    path = tmp_path / "killed.json"
    path.write_text(json.dumps(config))
    code = (
        "import json, sys, torch; torch.set_num_threads(1); from pipeline.runs.config import config_from_dict; "
        "from pipeline.cli.full_run import run; run(config_from_dict(json.load(open(sys.argv[1]))))"
    )
    env = {**os.environ, "RAY_ADDRESS": cluster}
    driver = subprocess.Popen(
        [sys.executable, "-c", code, str(path)],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    manifest = tmp_path / "killed" / "manifest.json"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and driver.poll() is None:
        try:
            units = json.loads(manifest.read_text())["stages"]["build"]["units"]
        except (OSError, ValueError, KeyError):
            units = {}
        if any(u["status"] == "done" for u in units.values()):
            break
        time.sleep(0.2)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    before = json.loads(manifest.read_text())["stages"]["build"]["units"]
    finished = {n for n, u in before.items() if u["status"] == "done"}
    assert finished and len(finished) < 4, before  # killed mid-build
    result = run_pipeline(config)
    after = json.loads(manifest.read_text())["stages"]["build"]["units"]
    assert result.actions["build"] == "ran"
    assert {n: after[n]["executions"] for n in finished} == {n: before[n]["executions"] for n in finished}
    assert all(u["status"] == "done" for u in after.values())
