"""configs/paper.toml as real users run it, on stand-ins of its hub models laid out as the hub ships them.

The stand-ins (``tests/hub_standins.py``): a bert-base-uncased pre-training checkpoint with a briefly trained MLM
head (usable), a distilbert-base-uncased masked LM with a random head, and the TinyBERT general layout (``cls.*``
present but not an LM head). The run is the paper config with sources swapped and sizes shrunk, on the Bias in
Bios sample. The default suite runs a selection of variants covering every kind of MLM head (``--only``); the full
plan (48 variants) is ``slow``.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
from hub_standins import build_standins, shrunk_paper_config
from run_fixtures import run_pipeline

from pipeline.cli.main import main as atlas
from pipeline.figures.run_figures import main as figures_cli
from pipeline.metrics.evaluate import MLM_FAMILIES
from pipeline.models import load_model
from pipeline.runs.config import config_from_dict
from pipeline.runs.plan import plan_variants
from pipeline.runs.runfolder import RunFolder
from pipeline.schema import read_table

SELECTED = [
    "teacher",
    "distil-ft_none",
    "int8-ft_none",
    "prune30-ft_before",
    "tiny-ft_before",
    "hub-tinybert-ft_none",
    "hub-distilbert-ft_after@balanced",
    "teacher-ft@balanced",
    "distil-ft_before@balanced",
]
USABLE = "pretrained together with this encoder"  # the bert stand-in's head, as the teacher reads it
MLM_METRICS = ("crows_stereo_pct", "stereoset_icat", "winobias_stereotype", "winogender_male_pref_pct")


@pytest.fixture(scope="module")
def standins(tmp_path_factory):
    return build_standins(tmp_path_factory.mktemp("hub"))


@pytest.fixture(scope="module")
def selected_run(tmp_path_factory, standins):
    cfg = shrunk_paper_config(tmp_path_factory.mktemp("runs"), standins, name="paper-selected")
    cfg["attribution"]["variants"] = ["teacher-ft@balanced", "distil-ft_before@balanced"]
    cfg["probes"]["variants"] = ["distil-ft_none"]
    return cfg, run_pipeline(cfg, only=SELECTED)


def _check_run(result, expected: list[str]) -> pd.DataFrame:
    """Every expected variant built and evaluated; MLM rows: values with a usable head, a reason otherwise."""
    run_dir = result.run_dir
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert all(unit["status"] == "done" for unit in manifest["stages"]["build"]["units"].values())
    task = read_table(run_dir / "tables" / "task_metrics.parquet")
    bias = read_table(run_dir / "tables" / "bias_metrics.parquet")
    assert sorted(task["variant"].unique()) == sorted(expected) == sorted(bias["variant"].unique())
    mlm = bias[bias["metric"].isin(MLM_METRICS)]
    for variant, rows in mlm.groupby("variant"):
        usable = (rows["mlm_head_top1"] > rows["mlm_head_baseline"]).all()
        if usable:
            assert rows["value"].notna().all() and (rows["skipped"] == "").all(), variant
            assert rows["mlm_head"].str.len().gt(0).all(), variant
        else:
            assert rows["value"].isna().all(), variant
            reasons = set(rows["skipped"])
            assert len(reasons) == 1 and reasons.pop().startswith(("MLM head untrained", "no MLM head")), variant
    assert set(MLM_FAMILIES) == {"crows", "stereoset", "winobias", "winogender"}
    return mlm


def _heads(mlm: pd.DataFrame) -> dict[str, str]:
    """variant -> the ``mlm_head`` column, or the skip reason's start."""
    first = mlm.drop_duplicates("variant").set_index("variant")
    return {
        v: (r["mlm_head"] if r["skipped"] == "" else r["skipped"].split(":")[0].split(" (")[0])
        for v, r in first.iterrows()
    }


def test_every_kind_of_mlm_head_is_read_or_skipped_with_its_reason(selected_run):
    _, result = selected_run
    mlm = _check_run(result, SELECTED)
    assert _heads(mlm) == {
        "teacher": USABLE,
        "distil-ft_none": "trained by general distillation together with this encoder",
        "int8-ft_none": "pretrained, encoder quantised to int8 since",
        "prune30-ft_before": "pretrained, encoder fine-tuned, then head-pruned since",
        "teacher-ft@balanced": "pretrained, encoder fine-tuned since",
        "distil-ft_before@balanced": "pretrained, encoder fine-tuned, then distilled since",
        "tiny-ft_before": "no MLM head",
        "hub-tinybert-ft_none": "MLM head untrained",
        "hub-distilbert-ft_after@balanced": "MLM head untrained",
    }
    teacher = mlm[mlm["variant"] == "teacher"].iloc[0]
    assert teacher["mlm_head_top1"] > teacher["mlm_head_baseline"] > 0.05


def test_distillation_from_an_mlm_teacher_saves_a_classifier_with_the_task_classes(selected_run):
    _, result = selected_run
    folder = result.run_dir / "models" / "distil-ft_none" / "seed0"
    classifier = load_model(folder, head="classifier")
    assert len(classifier.label_names) == 28 and classifier.model.config.task_head_trained is False
    assert load_model(folder, head="mlm").head_trained
    tiny = load_model(result.run_dir / "models" / "hub-tinybert-ft_none" / "seed0", head="classifier")
    assert tiny.anatomy.n_layers == 3 and tiny.model.config.mlm_head == {"origin": "checkpoint", "since": []}


def test_an_analysis_that_cannot_run_is_skipped_and_the_run_goes_on(selected_run):
    _, result = selected_run
    assert [(s["stage"], s["variant"]) for s in result.skipped] == [("probes", "distil-ft_none")]
    assert "no class has both women and men" in result.skipped[0]["reason"]
    assert result.skipped_summary().startswith("skipped: 1 item(s) (1 in probes)")
    probes = read_table(result.run_dir / "tables" / "probes_layers.parquet")
    assert probes["value"].isna().all() and probes["skipped"].str.startswith("ValueError").all()


def test_a_balanced_student_is_aligned_with_the_balanced_teacher_and_the_viewer_keeps_the_set(selected_run):
    _, result = selected_run
    comparison = read_table(result.run_dir / "tables" / "comparison.parquet")
    assert set(comparison.query("metric == 'align_spearman'")["variant"]) == {"distil-ft_before@balanced"}
    folder = RunFolder(result.run_dir)
    assert set(SELECTED) <= set(folder.variants()) and folder.has("bias_metrics")
    assert figures_cli([str(result.run_dir), "--format", "png"]) == 0
    assert any((result.run_dir / "figures").glob("*.png"))


def test_metrics_command_reads_a_usable_head_and_names_an_untrained_one(standins, capsys):
    """``bias-atlas metrics crows --model <folder>`` on the TinyBERT layout and on the bert-base-uncased layout."""
    tinybert = standins["huawei-noah/TinyBERT_General_4L_312D"]
    assert atlas(["metrics", "crows", "--model", str(tinybert), "--max-examples", "4", "--n-boot", "100"]) == 0
    out = capsys.readouterr().out
    assert "skipped: MLM head untrained: masked-token top-1 accuracy" in out and "check: top-1" in out
    assert (
        atlas(
            [
                "metrics",
                "crows",
                "--model",
                str(standins["bert-base-uncased"]),
                "--max-examples",
                "4",
                "--n-boot",
                "100",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "skipped:" not in out and "crows_stereo_pct" in out and "(passed)" in out


@pytest.mark.slow
def test_the_whole_shrunk_paper_plan_runs_on_the_standins(tmp_path_factory, standins):
    cfg = shrunk_paper_config(tmp_path_factory.mktemp("runs"), standins)
    result = run_pipeline(cfg)
    expected = sorted({s.variant for s in plan_variants(config_from_dict(cfg)) if s.exposed})
    mlm = _check_run(result, expected)
    heads = _heads(mlm)
    assert heads["teacher"] == USABLE and heads["hub-tinybert-ft_none"] == "MLM head untrained"
    assert all(heads[v] == "no MLM head" for v in expected if v.startswith("tiny"))
    assert mlm.groupby("variant")["value"].apply(lambda v: v.notna().all()).sum() > len(expected) / 2
    assert figures_cli([str(result.run_dir), "--format", "png"]) == 0
    assert set(expected) <= set(RunFolder(result.run_dir).variants())
