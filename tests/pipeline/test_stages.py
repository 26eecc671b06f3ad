"""Stage machinery: content keys, caching, resume after a failure, atomic writes."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from pipeline.files import atomic_dir
from pipeline.runs.code_version import PROJECT_PACKAGES, REPO_ROOT, code_version, import_closure
from pipeline.runs.config import config_from_dict
from pipeline.runs.stages import Manifest, Stage, StageContext, concat_tables, hash_folder, run_stages
from pipeline.schema import read_table, tidy


def test_atomic_dir_replaces_or_keeps_the_old_folder(tmp_path):
    target = tmp_path / "model"
    with atomic_dir(target) as tmp:
        (tmp / "w.bin").write_bytes(b"one")
        assert not target.exists()
    assert (target / "w.bin").read_bytes() == b"one"
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "w.bin").write_bytes(b"half")
        raise RuntimeError("killed")
    assert (target / "w.bin").read_bytes() == b"one" and sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    with atomic_dir(target) as tmp:
        (tmp / "v.bin").write_bytes(b"two")
    assert [p.name for p in target.iterdir()] == ["v.bin"]


def test_hashes_follow_content(tmp_path):
    (tmp_path / "a").write_text("x")
    first = hash_folder(tmp_path)
    (tmp_path / "a").write_text("y")
    assert hash_folder(tmp_path) != first
    assert list(concat_tables([]).columns)[:3] == ["variant", "seed", "unit"]


def test_code_version_follows_the_import_closure(tmp_path):
    """Editing a module the stage imports only indirectly (the bootstrap behind attribution's tables) changes the
    attribution stage's code version; editing a module outside its closure (the probes) does not."""
    for package in PROJECT_PACKAGES:
        shutil.copytree(REPO_ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    stage = ["pipeline.runs.stage_attribution"]
    files = {f.relative_to(tmp_path).as_posix() for f in import_closure(stage, root=tmp_path)}
    assert {"pipeline/bootstrap.py", "attribution/effect_rows.py", "pipeline/runs/__init__.py"} <= files
    assert "probes/linear.py" not in files and "pipeline/runs/stage_probes.py" not in files
    before = code_version(stage, root=tmp_path)
    (tmp_path / "probes" / "linear.py").write_text("# edited\n")
    assert code_version(stage, root=tmp_path) == before
    bootstrap = tmp_path / "pipeline" / "bootstrap.py"
    bootstrap.write_text(bootstrap.read_text() + "\n# edited\n")
    assert code_version(stage, root=tmp_path) != before


def _stages(calls: list[str], fail_at: set[str]):
    def first(ctx):
        tables = [ctx.unit(u, {"u": u}, lambda u=u: _unit(calls, fail_at, u)) for u in ("a", "b", "c")]
        return {"first": concat_tables([t["rows"] for t in tables])}

    def second(ctx):
        frame = read_table(ctx.run_dir / "tables" / "first.parquet")
        calls.append("second")
        if "second" in fail_at:
            raise KeyboardInterrupt  # a kill inside a later stage
        return {"second": tidy([{"variant": "all", "metric": "sum", "value": frame["value"].sum()}])}

    return [Stage("first", first, sections=("task",)), Stage("second", second, sections=("metrics",), needs=("first",))]


def _unit(calls, fail_at, unit):
    calls.append(unit)
    if unit in fail_at:
        raise RuntimeError(f"unit {unit} failed")
    return {"rows": tidy([{"variant": unit, "metric": "m", "value": float(ord(unit))}])}


def _ctx(tmp_path, cfg=None, force=()):
    cfg = cfg or config_from_dict({"run": {"name": "s"}})
    return StageContext(cfg, tmp_path, Manifest(tmp_path / "manifest.json"), force=frozenset(force))


def test_resume_runs_only_unfinished_units_and_stages(tmp_path):
    calls: list[str] = []
    with pytest.raises(RuntimeError, match="unit b failed"):
        run_stages(_stages(calls, {"b"}), _ctx(tmp_path))
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    units = manifest["stages"]["first"]["units"]
    assert manifest["stages"]["first"]["status"] == "failed" and units["a"]["status"] == "done"
    assert units["b"]["status"] == "failed" and "unit b failed" in units["b"]["error"] and "c" not in units

    with pytest.raises(KeyboardInterrupt):
        run_stages(_stages(calls, {"second"}), _ctx(tmp_path))
    assert calls == ["a", "b", "b", "c", "second"]  # a was cached
    second = json.loads((tmp_path / "manifest.json").read_text())["stages"]["second"]
    assert second["status"] == "failed" and second["error"].startswith("KeyboardInterrupt")

    actions = run_stages(_stages(calls, set()), _ctx(tmp_path))
    assert actions == {"first": "cached", "second": "ran"} and calls[-1] == "second" and calls.count("second") == 2
    assert read_table(tmp_path / "tables/second.parquet")["value"].tolist() == [97.0 + 98 + 99]

    assert run_stages(_stages(calls, set()), _ctx(tmp_path)) == {"first": "cached", "second": "cached"}
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert {u: r["executions"] for u, r in manifest["stages"]["first"]["units"].items()} == {"a": 1, "b": 2, "c": 1}
    assert manifest["stages"]["second"]["executions"] == 2 and manifest["stages"]["first"]["last"] == "cached"


def test_config_change_and_force_invalidate(tmp_path):
    calls: list[str] = []
    run_stages(_stages(calls, set()), _ctx(tmp_path))
    changed = config_from_dict({"run": {"name": "s"}, "metrics": {"latency_repeats": 2}})
    assert run_stages(_stages(calls, set()), _ctx(tmp_path, changed)) == {"first": "cached", "second": "ran"}
    assert run_stages(_stages(calls, set()), _ctx(tmp_path, changed, force=["first"])) == {
        "first": "ran",
        "second": "cached",
    }
    assert calls == ["a", "b", "c", "second", "second", "a", "b", "c"]  # same outputs: downstream stays cached


def test_stage_order_is_checked(tmp_path):
    stages = _stages([], set())
    with pytest.raises(ValueError, match="needs \\['first'\\]"):
        run_stages(stages[::-1], _ctx(tmp_path))


def test_skip_is_logged_and_recorded(tmp_path, caplog):
    ctx = _ctx(tmp_path)
    ctx.stage = "attribution"
    ctx.skip("int8 has no gradients", variant="int8-ft_before", seed=0)
    ctx.skip("int8 has no gradients", variant="int8-ft_before", seed=0)
    assert ctx.manifest.data["skipped"] == [
        {"stage": "attribution", "variant": "int8-ft_before", "seed": 0, "reason": "int8 has no gradients"}
    ]
    assert "skipped variant=int8-ft_before seed=0: int8 has no gradients" in caplog.text
    assert isinstance(concat_tables([tidy([{"variant": "x", "metric": "m", "value": 1.0}])]), pd.DataFrame)


def test_a_table_missing_from_the_registry_fails_the_stage(tmp_path):
    stage = Stage(
        "first", lambda ctx: {"mystery": tidy([{"variant": "v", "metric": "m", "value": 1.0}])}, sections=("task",)
    )
    with pytest.raises(RuntimeError, match=r"wrote tables \['mystery'\].*register them"):
        run_stages([stage], _ctx(tmp_path), registry={"known": "first"})
    assert not (tmp_path / "tables" / "mystery.parquet").exists()


def test_every_table_an_analysis_declares_is_registered_to_its_stage():
    from attribution.analysis import method_tables
    from pipeline.runs.tables import TABLES
    from probes.analysis import PROBE_TABLES

    assert {t: TABLES[t].stage for t in method_tables()} == {t: "attribution" for t in method_tables()}
    assert {t: TABLES[t].stage for t in PROBE_TABLES} == {t: "probes" for t in PROBE_TABLES}


def test_a_missing_table_names_the_setting_that_writes_it():
    from attribution.config import AttributionConfig
    from pipeline.method_registry import methods
    from pipeline.runs.tables import missing_message

    assert 'with [attribution] extra_methods = [..., "circuit"];' in missing_message("circuit", "demo")
    assert "with [attribution] ablation on;" in missing_message("head_ablation", "demo")
    for method in methods():  # every setting a message names exists: a flag, or a name extra_methods accepts
        flag = method.switch in AttributionConfig.model_fields
        assert flag or AttributionConfig(extra_methods=[method.switch]).extra_methods == (method.switch,)
