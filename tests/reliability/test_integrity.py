"""Integrity attacks (issue #27) on one tiny run (the 4-layer teacher, BUG with 4 classes, SEAT only): changed
benchmark files recompute, ``verify`` fails on anything not verifiably sound, the run refuses a manifest whose units
point outside the run folder, and the crashes of a hostile user end in one ``error:`` line with exit status 2."""

from __future__ import annotations

import errno
import json
import shutil

import pytest
from run_fixtures import demo_config, run_pipeline, save_teacher, write_toml

from pipeline.cli.main import main
from pipeline.data import data_root
from pipeline.schema import read_table

# what this run reads of the shared data (SEAT only: no MLM benchmarks; the build reads the swap lists)
DATA = ("bug/balanced_BUG.csv", "seat", "winobias/generalized_swaps.txt", "winobias/extra_gendered_words.txt")


def _config(out, teacher, data) -> dict:
    config = demo_config(out, teacher, name="integrity", analyses=["bias_metrics"])
    config["run"] |= {"seeds": [0], "data_root": str(data)}
    config["compress"] = {"int8": {"orders": ["before"]}}
    config["metrics"] = {**config["metrics"], "metrics": ["seat"], "n_boot": 100, "seat_n_samples": 50}
    return config


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(run folder, config, data copy) of a finished run on a private copy of the data it reads."""
    data = tmp_path_factory.mktemp("data")
    _copy_data(data_root(), data)
    config = _config(tmp_path_factory.mktemp("runs"), save_teacher(tmp_path_factory.mktemp("teacher")), data)
    return run_pipeline(config).run_dir, config, data


@pytest.fixture
def run_copy(built, tmp_path):
    """A copy of the finished run (and its TOML config) that a test may damage."""
    folder, config, _ = built
    out = tmp_path / "runs"
    shutil.copytree(folder, out / folder.name)
    config = {**config, "run": {**config["run"], "out_dir": str(out)}}
    return out / folder.name, write_toml(config, tmp_path / "run.toml")


def _copy_data(source, target) -> None:
    for name in DATA:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        if (source / name).is_dir():
            shutil.copytree(source / name, target / name, dirs_exist_ok=True)
        else:
            shutil.copy2(source / name, target / name)


def _weat6(folder) -> float:
    table = read_table(folder / "tables" / "bias_metrics.parquet")
    row = table[(table["variant"] == "teacher-ft") & (table["metric"] == "seat_effect_size")]
    return float(row[row["subset"] == "weat6"]["value"].iloc[0])


def _manifest(folder) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def _save_manifest(folder, data: dict) -> None:
    (folder / "manifest.json").write_text(json.dumps(data))


# ---- 4. verify fails on anything not verifiably sound; the run refuses units outside the run ----------------------
def test_verify_fails_on_missing_hashes_and_an_edited_table(run_copy, capsys):
    folder, _ = run_copy
    manifest = _manifest(folder)
    manifest["stages"]["task_metrics"].pop("table_hashes")
    _save_manifest(folder, manifest)
    table = folder / "tables" / "task_metrics.parquet"
    frame = read_table(table)
    frame["value"] = frame["value"] * 10
    frame.to_parquet(table)
    assert main(["verify", str(folder)]) == 1
    out = capsys.readouterr().out
    assert "unverified" in out and "not sound" in out


@pytest.mark.parametrize("status", ["failed", "started"])
def test_verify_fails_on_a_failed_or_unfinished_unit(run_copy, status, capsys):
    folder, _ = run_copy
    manifest = _manifest(folder)
    manifest["stages"]["bias_metrics"]["units"]["teacher-ft/seed0"]["status"] = status
    _save_manifest(folder, manifest)
    assert main(["verify", str(folder)]) == 1
    assert f"{status}" in capsys.readouterr().out


def test_a_unit_folder_outside_the_run_is_refused_by_verify_and_run(run_copy, tmp_path, capsys):
    folder, toml = run_copy
    outside = tmp_path / "elsewhere"
    shutil.copytree(folder / "models" / "teacher-ft" / "seed0", outside)
    manifest = _manifest(folder)
    manifest["stages"]["build"]["units"]["teacher-ft/seed0"]["folder"] = "../../elsewhere"
    _save_manifest(folder, manifest)
    before = (folder / "manifest.json").read_text()
    assert main(["verify", str(folder)]) == 1
    assert "outside" in capsys.readouterr().out
    assert main(["run", str(toml)]) == 2
    err = capsys.readouterr().err
    assert "outside the run folder" in err and "Fix:" in err and "Traceback" not in err
    assert (folder / "manifest.json").read_text() == before  # nothing written, nothing hashed there


# ---- 5. crashes become one error line with the fix, exit 2 -----------------------------------------------------
def test_a_run_name_too_long_for_a_folder_fails_validate(tmp_path, capsys):
    config = write_toml({"run": {"name": "a" * 300, "out_dir": str(tmp_path)}}, tmp_path / "c.toml")
    assert main(["validate", str(config)]) == 2
    assert "at most 100 characters" in capsys.readouterr().err


def _model_folders(tmp_path):
    import torch
    from tiny import make_tiny

    empty, config_only, nan = (tmp_path / n for n in ("empty", "config_only", "nan"))
    empty.mkdir()
    model = make_tiny("bert", "mlm")
    model.config.save_pretrained(config_only)
    with torch.no_grad():
        model.bert.encoder.layer[0].output.dense.weight[0, 0] = float("nan")
    model.save_pretrained(nan)
    return {"has no config.json": empty, "has no weights": config_only, "NaN or infinite weights": nan}


@pytest.mark.parametrize("command", [["metrics", "seat"], ["ablate", "--data", "bug", "--n", "4"]])
def test_bad_model_folders_are_refused_with_the_fix(tmp_path, command, capsys):
    folders = _model_folders(tmp_path)
    capsys.readouterr()  # save_pretrained's progress bar
    for expected, folder in folders.items():
        assert main([*command, "--model", str(folder)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and expected in err and "Fix:" in err and "Traceback" not in err


@pytest.mark.parametrize("target", ["pipeline.runs.stages.write_table", "pipeline.runs.stages.atomic_dir"])
def test_a_full_disk_while_writing_a_table_or_a_model_is_one_error_line(run_copy, monkeypatch, target, capsys):
    _, toml = run_copy

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", "model.safetensors")

    monkeypatch.setattr(target, full)
    stage = "task_metrics" if target.endswith("write_table") else "build"
    assert main(["run", str(toml), "--force", stage]) == 2
    err = capsys.readouterr().err
    assert "error: the disk is full while writing model.safetensors" in err
    assert "MB free; the run needs about" in err and "Traceback" not in err


def test_a_read_only_run_folder_is_refused_by_run_and_report(run_copy, monkeypatch, capsys):
    import os

    folder, toml = run_copy
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p).startswith(str(folder)) else real(p, mode))
    assert main(["run", str(toml)]) == 2
    assert "cannot be written" in capsys.readouterr().err
    monkeypatch.setattr(os, "access", real)

    def denied(path, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr("pipeline.report.run_report.atomic_path", denied)
    assert main(["report", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot write") and "chmod u+w" in err and "Traceback" not in err


def test_ray_resources_the_cluster_lacks_are_refused_up_front(tmp_path, capsys):
    import torch

    from pipeline.runs.executors import RayResources, check_cluster

    if torch.cuda.device_count() == 0:
        run = {"name": "t", "out_dir": str(tmp_path), "executor": "ray", "ray_gpus": 1}
        config = write_toml({"run": run}, tmp_path / "c.toml")
        assert main(["validate", str(config)]) == 2
        assert "run.ray_gpus = 1 but this machine" in capsys.readouterr().err
    nodes = [{"Alive": True, "Resources": {"CPU": 8.0, "memory": 2**34}}]
    with pytest.raises(ValueError, match="no node of the cluster has that"):
        check_cluster(nodes, RayResources(cpus=1, gpus=1))
    check_cluster(nodes, RayResources(cpus=8, gpus=0, memory_gb=16))  # fits: no error


def _build_keys(folder) -> dict[str, str]:
    return {name: unit["key"] for name, unit in _manifest(folder)["stages"]["build"]["units"].items()}


@pytest.mark.slow  # a second tiny run (35 s): keeps the default suite under 10 minutes
def test_edited_swap_lists_rebuild_exactly_the_variants_that_read_them(built, tmp_path):
    _, config, data = built
    config = {**config, "run": {**config["run"], "out_dir": str(tmp_path), "analyses": []}}
    config["compress"] = {"distil": {"orders": ["before"], "epochs": 1, "mixup": True}}
    folder = run_pipeline(config).run_dir
    before = _build_keys(folder)
    words = data / "winobias" / "extra_gendered_words.txt"
    original = words.read_text()
    try:
        words.write_text(original + "\nsomeking\tsomequeen\n")  # the attack: one more swap pair
        assert run_pipeline(config).actions["build"] == "ran"
        after = _build_keys(folder)
    finally:
        words.write_text(original)
    changed = {name for name in before if before[name] != after[name]}
    assert changed == {"distil_mixup-ft_before/seed0"}  # plain distillation and the teachers read no swap list


# ---- 1. changed benchmark data recomputes what read it (last: it changes the module's run) ----------------------------------------------------------
def test_swapped_seat_targets_flip_the_sign_without_force(built):
    folder, config, data = built
    before = _weat6(folder)
    assert before != 0
    for path in (data / "seat").glob("weat*.jsonl"):  # the attack: swap the target groups of every gender test
        test = json.loads(path.read_text())
        test["targ1"], test["targ2"] = test["targ2"], test["targ1"]
        path.write_text(json.dumps(test))
    try:
        actions = run_pipeline(config).actions
        assert actions["build"] == "cached" and actions["task_metrics"] == "cached"
        assert actions["bias_metrics"] == "ran"  # no --force: the files' hashes are in its key
        assert _weat6(folder) == pytest.approx(-before)
    finally:
        shutil.rmtree(data / "seat")
        _copy_data(data_root(), data)


# ---- 2. class identity by name ----------------------------------------------------------------------------------
def _relabelled_teacher(built, tmp_path, names, *, flag=True):
    """The run's fine-tuned teacher with ``names`` written as its head's classes (``flag``: task_head_trained kept)."""
    folder = built[0]
    teacher = tmp_path / "teacher"
    shutil.copytree(folder / "models" / "teacher-ft" / "seed0", teacher)
    model_config = json.loads((teacher / "config.json").read_text())
    model_config["id2label"] = {str(i): n for i, n in enumerate(names)}
    model_config["label2id"] = {n: i for i, n in enumerate(names)}
    if not flag:
        model_config.pop("task_head_trained", None)
    (teacher / "config.json").write_text(json.dumps(model_config))
    return teacher


def _teacher_toml(built, tmp_path, teacher, label_map=None):
    _, config, _ = built
    config = {
        **config,
        "run": {**config["run"], "out_dir": str(tmp_path / "runs")},
        "teacher": {"source": str(teacher)},
    }
    if label_map:
        config["teacher"]["label_map"] = label_map
    return write_toml(config, tmp_path / "t.toml")


def test_a_teacher_head_for_other_classes_or_unnamed_ones_is_refused(built, tmp_path, capsys):
    data = _manifest(built[0])["label_names"]
    other = [*data[:3], "some other class"]
    assert main(["validate", str(_teacher_toml(built, tmp_path, _relabelled_teacher(built, tmp_path, other)))]) == 2
    err = capsys.readouterr().err
    assert "matched by name, never by position" in err and "label_map" in err
    shutil.rmtree(tmp_path / "teacher")
    unnamed = _relabelled_teacher(built, tmp_path, [f"LABEL_{i}" for i in range(4)], flag=False)
    assert main(["validate", str(_teacher_toml(built, tmp_path, unnamed))]) == 2
    assert "unnamed classes" in capsys.readouterr().err
    mapping = {"LABEL_0": data[0], "LABEL_1": data[1], "LABEL_2": data[3], "LABEL_3": data[2]}
    assert main(["validate", str(_teacher_toml(built, tmp_path, unnamed, mapping))]) == 0


def test_a_class_map_reorders_the_head_into_the_data_order(built, tmp_path):
    from pipeline.class_map import apply_class_map
    from pipeline.models import load_model

    data = _manifest(built[0])["label_names"]
    unnamed = _relabelled_teacher(built, tmp_path, [f"LABEL_{i}" for i in range(4)], flag=False)
    loaded = load_model(unnamed, head="classifier")
    rows = loaded.model.classifier.weight.detach().clone()
    apply_class_map(
        loaded.model, data, {"LABEL_0": data[0], "LABEL_1": data[1], "LABEL_2": data[3], "LABEL_3": data[2]}
    )
    assert loaded.model.config.id2label == dict(enumerate(data))
    assert loaded.model.classifier.weight[2].equal(rows[3]) and loaded.model.classifier.weight[3].equal(rows[2])


# ---- 3. a damaged input table voids the sections that read it, and the report command fails naming it -------------
def test_a_damaged_table_voids_its_sections_and_report_exits_non_zero(run_copy, capsys):
    folder, _ = run_copy
    table = folder / "tables" / "bias_metrics.parquet"
    table.write_bytes(table.read_bytes()[:200])
    assert main(["report", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: table bias_metrics is damaged or unreadable") and "Traceback" not in err
    report = (folder / "report" / "report.md").read_text()
    sections = {part.split("\n")[0]: part for part in report.split("\n## ")[1:]}
    rq1 = next(text for title, text in sections.items() if title.startswith("RQ1"))
    assert "Not answered: the run's table bias_metrics is damaged" in rq1
    fitness = next(text for title, text in sections.items() if title.startswith("Models fit"))
    assert "Not answered" not in fitness  # predictions and task_metrics are intact: fitness is still answered
    assert "KeyError" not in report


def test_a_nan_value_without_a_reason_is_damaged_input_not_a_wide_interval(run_copy, capsys):
    from pipeline.findings.compute import compute_findings
    from pipeline.schema import write_table

    folder, _ = run_copy
    path = folder / "tables" / "bias_metrics.parquet"
    table = read_table(path)
    seat = table.index[(table["variant"] == "int8-ft_before") & (table["metric"] == "seat_effect_size")]
    explained = table.assign(skipped=table.get("skipped", "")).fillna({"skipped": ""})
    explained.loc[seat[1], ["value", "skipped"]] = [float("nan"), "no targets left"]  # a NaN that says why
    write_table(explained, path)
    intact = compute_findings(folder)
    assert "bias_metrics" not in intact.damaged and intact.get("comparisons")["metric"].str.startswith("seat").any()
    explained.loc[seat[0], "value"] = float("nan")  # a NaN that does not: lost after it was computed
    write_table(explained, path)
    found = compute_findings(folder)
    why = found.damaged["bias_metrics"]
    assert "1 row(s) have value NaN and no skipped reason (first: variant 'int8-ft_before', seed 0" in why
    assert found.missing["comparisons"] == [why]  # the comparisons say why their bias rows are absent
    compared = found.get("comparisons")
    assert compared is None or not compared["metric"].str.startswith("seat").any()  # none from the rest of the rows
    assert main(["report", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: table bias_metrics is damaged: 1 row(s)") and "Traceback" not in err


def _in_hub_cache(folder, cache, repo: str):
    """``folder`` laid out as the hub cache holds a downloaded checkpoint ``repo`` (snapshot + refs/main)."""
    revision = "0" * 40
    snapshot = cache / f"models--{repo.replace('/', '--')}" / "snapshots" / revision
    shutil.copytree(folder, snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text(revision)
    return snapshot


def test_a_hub_checkpoint_with_unnamed_classes_is_refused_not_mapped_by_position(built, tmp_path, capsys, monkeypatch):
    import huggingface_hub.constants

    data = _manifest(built[0])["label_names"]
    unnamed = _relabelled_teacher(built, tmp_path, [f"LABEL_{i}" for i in range(4)], flag=False)
    cache = tmp_path / "hub"
    _in_hub_cache(unnamed, cache, "someone/bug-classifier")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["validate", str(_teacher_toml(built, tmp_path, "someone/bug-classifier"))]) == 2
    err = capsys.readouterr().err
    assert "unnamed classes" in err and "someone/bug-classifier" in err and "Traceback" not in err
    mapping = {"LABEL_0": data[0], "LABEL_1": data[1], "LABEL_2": data[3], "LABEL_3": data[2]}
    assert main(["validate", str(_teacher_toml(built, tmp_path, "someone/bug-classifier", mapping))]) == 0


def test_a_hub_classifier_not_downloaded_yet_is_judged_by_its_config():
    from transformers import BertConfig

    from pipeline.class_map import head_classes

    classifier = BertConfig(architectures=["BertForSequenceClassification"], num_labels=3)
    assert head_classes("someone/not-cached", classifier) == ("LABEL_0", "LABEL_1", "LABEL_2")
    assert head_classes("someone/not-cached", BertConfig(architectures=["BertForMaskedLM"])) is None
