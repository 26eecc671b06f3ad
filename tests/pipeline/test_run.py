"""End to end on the offline MiniLM: every variant builds, reloads to its in-run predictions, the analysis stages
(bias metrics, attribution, probes) write their tables, and a run killed during the build, during task metrics and
during attribution resumes without recomputing anything finished."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest

import pipeline.runs.build as build_module
import pipeline.runs.stage_attribution as analyses_module
import pipeline.runs.task_metrics as task_metrics_module
from pipeline.bootstrap import bootstrap_ci
from pipeline.cli.full_run import run
from pipeline.cli.main import main
from pipeline.int8 import is_quantised
from pipeline.models import load_model
from pipeline.runs.config import config_from_dict
from pipeline.runs.task_metrics import classification_rows
from pipeline.schema import read_table

TOML = """
[run]
name = "ci"
out_dir = "{out}"
seeds = [0]
device = "cpu"

[task]
dataset = "bug"
max_classes = 3
max_train = 32
max_eval = 40
max_length = 16

[finetune]
epochs = 1
batch_size = 16

[compress.distil]
orders = ["before"]
batch_size = 16

[compress.tiny]
orders = ["before"]
n_layers = 2
hidden_size = 96
batch_size = 16

[compress.prune]
fractions = [0.3]
sparsities = [0.5]
importance_examples = 16

[compress.int8]
orders = ["before"]

[metrics]
latency_batch_sizes = [1]
latency_repeats = 1
metrics = ["extrinsic", "counterfactual", "seat", "crows"]
n_boot = 100
seat_form = "word"
seat_n_samples = 500
max_examples = 20

[attribution]
variants = ["teacher", "teacher-ft", "distil-ft_before", "int8-ft_before"]
n_examples = 6
ig_steps = 4
cumulative_steps = 3
token_examples = 2
n_boot = 100
top_k = 4

[probes]
variants = ["teacher-ft", "distil-ft_before"]
n_folds = 2
inner_cv = 2
max_examples = 40
min_class_size = 6
heads = false
erasure_layers = [-1]
n_boot = 100
"""
N_EVAL = 40
VARIANTS = [
    "teacher",
    "teacher-ft",
    "distil-ft_before",
    "tiny-ft_before",
    "prune30-ft_before",
    "sparse50-ft_before",
    "int8-ft_before",
]


class Killed(RuntimeError):
    """Stands in for a killed process."""


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """Run the CI config four times: killed inside the build, inside task metrics, inside attribution, then to
    the end."""
    out = tmp_path_factory.mktemp("runs")
    path = out / "ci.toml"
    path.write_text(TOML.format(out=out))
    monkeypatch = pytest.MonkeyPatch()
    real_build, real_metrics = build_module.build_step, task_metrics_module.task_metric_rows
    real_attribution = analyses_module.run_attribution

    def build_then_die(step, **kw):
        if step.variant == "prune30-ft_before":
            raise Killed("killed while pruning")
        return real_build(step, **kw)

    calls = []

    def metrics_then_die(*args, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise Killed("killed in task metrics")
        return real_metrics(*args, **kw)

    with monkeypatch.context() as m:
        m.setattr(build_module, "build_step", build_then_die)
        with pytest.raises(Killed):
            main(["run", str(path)])
    with monkeypatch.context() as m:
        m.setattr(task_metrics_module, "task_metric_rows", metrics_then_die)
        with pytest.raises(Killed):
            main(["run", str(path)])

    def attribution_then_die(loaded, data, cfg, *, variant, seed, **kw):
        if variant == "distil-ft_before":
            raise Killed("killed in attribution")
        return real_attribution(loaded, data, cfg, variant=variant, seed=seed, **kw)

    with monkeypatch.context() as m:
        m.setattr(analyses_module, "run_attribution", attribution_then_die)
        with pytest.raises(Killed):
            main(["run", str(path)])
    assert main(["run", str(path)]) == 0
    return path, out / "ci"


def _manifest(run_dir):
    return json.loads((run_dir / "manifest.json").read_text())


def test_resume_recomputes_nothing_finished(finished):
    _, run_dir = finished
    stages = _manifest(run_dir)["stages"]
    build = {u: r["executions"] for u, r in stages["build"]["units"].items()}
    assert build == {f"{v}/seed0": 2 if v == "prune30-ft_before" else 1 for v in VARIANTS}
    assert stages["build"]["executions"] == 2 and stages["build"]["last"] == "cached"  # done in the 2nd run
    metrics = [r["executions"] for r in stages["task_metrics"]["units"].values()]
    assert metrics == [1, 1, 2] + [1] * (len(VARIANTS) - 3) and stages["task_metrics"]["status"] == "done"
    assert stages["task_metrics"]["executions"] == 2
    assert stages["bias_metrics"]["executions"] == 1  # finished in the third run, cached in the fourth
    attribution = {u: r["executions"] for u, r in stages["attribution"]["units"].items()}
    assert attribution == {
        "teacher/seed0": 1,
        "teacher-ft/seed0": 1,
        "distil-ft_before/seed0": 2,
        "int8-ft_before/seed0": 1,
    }
    assert stages["attribution"]["executions"] == 2 and stages["probes"]["executions"] == 1


def test_rerun_is_cached_and_forced_rerun_gives_identical_tables(finished, caplog):
    path, run_dir = finished
    before = {t: read_table(run_dir / "tables" / f"{t}.parquet") for t in ("task_metrics", "predictions", "training")}
    with caplog.at_level(logging.INFO, logger="pipeline"):
        assert main(["run", str(path)]) == 0
    for stage in ("build", "task_metrics", "bias_metrics", "attribution", "probes", "findings"):
        assert f"[{stage}] cached" in caplog.text
    cfg = config_from_dict(__import__("tomllib").loads(path.read_text()))
    assert run(cfg, force=["task_metrics"]).actions == {
        "build": "cached",
        "task_metrics": "ran",
        "bias_metrics": "cached",
        "attribution": "cached",
        "probes": "cached",
        "findings": "ran",
    }
    after = {t: read_table(run_dir / "tables" / f"{t}.parquet") for t in before}
    measured = before["task_metrics"]["metric"].str.startswith("latency")
    pd.testing.assert_frame_equal(before["task_metrics"][~measured], after["task_metrics"][~measured])
    pd.testing.assert_frame_equal(before["predictions"], after["predictions"])
    pd.testing.assert_frame_equal(before["training"], after["training"])


def test_every_variant_reloads_to_its_in_run_predictions(finished):
    _, run_dir = finished
    built = read_table(run_dir / "tables/build_predictions.parquet")
    reloaded = read_table(run_dir / "tables/predictions.parquet")
    assert sorted(reloaded["variant"].unique()) == sorted(VARIANTS)
    both = built.merge(reloaded, on=["variant", "seed", "example"], suffixes=("_run", "_reload"))
    assert len(both) == len(reloaded) == len(VARIANTS) * N_EVAL
    assert (both["pred_run"] == both["pred_reload"]).all() and (both["label_run"] == both["label_reload"]).all()
    np.testing.assert_allclose(both["value_run"], both["value_reload"], rtol=0, atol=1e-6)

    pruned = load_model(run_dir / "models/prune30-ft_before/seed0", head="classifier")
    assert sum(pruned.anatomy.heads_per_layer) < 72 and pruned.model.config.kept_heads is not None
    assert is_quantised(load_model(run_dir / "models/int8-ft_before/seed0", head="classifier").model)
    student = load_model(run_dir / "models/distil-ft_before/seed0", head="classifier")
    assert student.anatomy.n_layers == 3 and student.model.config.layer_map == [0, 2, 4]


def test_task_metric_tables(finished):
    _, run_dir = finished
    table = read_table(run_dir / "tables/task_metrics.parquet")
    model = table[table["unit"] == "model"].pivot_table(index="variant", columns="metric", values="value")
    assert {
        "accuracy",
        "macro_f1",
        "params",
        "params_nonzero",
        "size_mb",
        "disk_mb",
        "latency_ms_b1",
        "head_trained",
    } <= set(model.columns)
    assert model.loc["teacher", "head_trained"] == 0
    assert model.loc["teacher-ft", "head_trained"] == 1 and model.loc["int8-ft_before", "head_trained"] == 1
    assert model.loc["prune30-ft_before", "params"] < model.loc["teacher-ft", "params"]
    assert (
        model.loc["tiny-ft_before", "params"] < model.loc["distil-ft_before", "params"] < model.loc["teacher", "params"]
    )
    assert model.loc["sparse50-ft_before", "params_nonzero"] < 0.85 * model.loc["sparse50-ft_before", "params"]
    assert model.loc["int8-ft_before", "size_mb"] < 0.7 * model.loc["teacher-ft", "size_mb"]
    recall = table[table["unit"] == "class"]
    assert set(recall["metric"]) == {"recall"} and recall.groupby("variant").size().eq(3).all()
    assert set(recall["subset"]) == set(_manifest(run_dir)["label_names"])
    training = read_table(run_dir / "tables/training.parquet")
    assert training.query("variant == 'sparse50-ft_before' and metric == 'sparsity'")["value"].item() == pytest.approx(
        0.5, abs=1e-6
    )
    heads = training.query("variant == 'prune30-ft_before' and metric == 'head_importance'")
    assert len(heads) == 72 and (heads["unit"] == "head").all()
    manifest = _manifest(run_dir)
    assert manifest["versions"]["torch"] and "revision" in manifest["git"] and manifest["seeds"] == [0]
    assert [p["variant"] for p in manifest["plan"]] == VARIANTS


def test_classification_rows_known_values():
    rows = classification_rows(np.array([0, 0, 1, 1, 2]), np.array([0, 1, 1, 1, 0]), ["a", "b", "c"])
    by = {(r["metric"], r.get("subset")): r["value"] for r in rows}
    assert by[("accuracy", None)] == pytest.approx(0.6)
    accuracy = next(r for r in rows if r["metric"] == "accuracy")  # its interval: the bootstrap of the hits
    assert (accuracy["ci_low"], accuracy["ci_high"]) == bootstrap_ci(np.mean, np.array([1.0, 0, 1, 1, 0]))[1:]
    assert accuracy["ci_low"] <= 0.6 <= accuracy["ci_high"]
    assert by[("recall", "a")] == 0.5 and by[("recall", "b")] == 1.0 and by[("recall", "c")] == 0.0
    # F1: a = 2*.5*.5/1 = .5, b = 2*(2/3)*1/(5/3) = .8, c = 0
    assert by[("macro_f1", None)] == pytest.approx((0.5 + 0.8 + 0.0) / 3)


def test_cli_reports_config_errors_without_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('[run]\nname = "x"\n[compress.prune]\nsparsities = [1.5]\n')
    assert main(["validate", str(bad)]) == 2
    assert "`compress.prune.sparsities` = [1.5]: sparsities[0] = 1.5 is outside [0, 1)" in capsys.readouterr().err


def test_analysis_tables(finished):
    _, run_dir = finished
    table = lambda name: read_table(run_dir / "tables" / f"{name}.parquet")
    bias = table("bias_metrics")
    assert sorted(bias["variant"].unique()) == sorted(VARIANTS)
    gap = bias.query("metric == 'gap_rms' and variant == 'teacher-ft'")
    assert len(gap) == 1 and np.isfinite(gap["value"].item()) and gap["n"].item() == N_EVAL
    assert bias.query("metric == 'gap_rms' and variant == 'teacher'")["skipped"].str.contains("not trained").all()
    assert bias.query("metric == 'crows_stereo_pct'")["skipped"].str.contains("MLM").all()  # MiniLM has no MLM head
    assert set(bias.query("metric == 'seat_effect_size'")["pooling"]) == {"cls", "mean"}

    ablation = table("head_ablation")
    single = ablation[(ablation["unit"] == "head") & (ablation["metric"] == "delta_score")]
    assert single.groupby("variant").size().to_dict() == {
        "teacher": 72,
        "teacher-ft": 72,
        "distil-ft_before": 36,
        "int8-ft_before": 72,
    }
    scores = single.groupby("variant")["score"].first()
    assert scores["teacher"].startswith("seat") and scores["teacher-ft"] == scores["distil-ft_before"]
    ig = table("head_ig")
    assert ig.query("variant == 'int8-ft_before'")["skipped"].str.contains("int8").all()
    assert ig.query("variant == 'teacher-ft'")["value"].notna().all()

    comparison = table("comparison")
    assert {"gini", "entropy", "align_spearman", "align_share_spearman"} <= set(comparison["metric"])
    align = comparison.query("metric == 'align_spearman'")
    assert set(align["variant"]) == {"distil-ft_before"} and list(align["teacher_layer"]) == [0, 2, 4]

    probes = table("probes_layers")
    assert sorted(probes["variant"].unique()) == ["distil-ft_before", "teacher-ft"]
    gender = probes.query("variant == 'teacher-ft' and subset == 'gender' and metric == 'probe_accuracy'")
    assert sorted(gender["layer"].unique()) == list(range(7))  # embeddings + 6 blocks
    assert set(table("erasure")["variant"]) == {"distil-ft_before", "teacher-ft"}
