"""Run-folder reading: variant names, discovery, missing-table messages, overview and top-neuron tables."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pipeline.runs.runfolder import (
    RunFolder,
    combine_tables,
    find_runs,
    overview_table,
    parse_variant,
    top_neurons_table,
    variant_sort_key,
)
from pipeline.schema import tidy, write_table


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("teacher", ("teacher", "none")),
        ("teacher-ft", ("teacher", "ft")),
        ("teacher-mlm", ("teacher-mlm", "none")),
        ("distil-ft_after", ("distil", "after")),
        ("distil_mixup-ft_both", ("distil_mixup", "both")),
        ("tiny-ft_before", ("tiny", "before")),
        ("prune30-ft_before", ("prune30", "before")),
        ("prune12.5-ft_both@balanced", ("prune12.5", "both")),
        ("sparse50-ft_before", ("sparse50", "before")),
        ("int8-ft_none", ("int8", "none")),
        ("hub-distilbert-base-uncased-ft_after", ("hub-distilbert-base-uncased", "after")),
        ("runA/tiny-ft_after", ("tiny", "after")),
    ],
)
def test_parse_variant(name, expected):
    assert parse_variant(name) == expected


@pytest.mark.parametrize(
    "name", ["student", "distil-ft_later", "distil", "teacher-ft_after", "Distil-ft_before"]
)  # any lower-case method name is allowed: new methods need no grammar edit
def test_parse_variant_rejects_other_names_with_the_pattern(name):
    with pytest.raises(ValueError, match="<method>-ft_<order>"):
        parse_variant(name)


def test_variant_sort_key_puts_the_teacher_first_and_unknown_names_last():
    names = ["zzz", "int8-ft_none", "distil-ft_after", "teacher-ft", "distil-ft_before", "teacher"]
    assert sorted(names, key=variant_sort_key) == [
        "teacher",
        "teacher-ft",
        "distil-ft_before",
        "distil-ft_after",
        "int8-ft_none",
        "zzz",
    ]


def _write(run, name, rows, **const):
    write_table(tidy(rows, **const), run / "tables" / f"{name}.parquet")


@pytest.fixture()
def run(tmp_path):
    run = tmp_path / "runs" / "r1"
    _write(
        run,
        "task_metrics",
        [
            {"variant": "teacher-ft", "seed": 0, "metric": "accuracy", "subset": "test", "value": 0.8},
            {"variant": "distil-ft_after", "seed": 1, "metric": "accuracy", "subset": "test", "value": 0.7},
        ],
    )
    (run / "models" / "teacher-ft" / "seed0").mkdir(parents=True)
    (run / "models" / "teacher-ft" / "seed0" / "config.json").write_text("{}")
    (run / "models" / "tiny-ft_before" / "seed2").mkdir(parents=True)  # no config.json: not a saved model
    (run / "manifest.json").write_text(json.dumps({"name": "r1"}))
    return run


def test_run_folder_lists_tables_variants_seeds_and_models(run):
    folder = RunFolder(run)
    assert folder.tables() == ("task_metrics",)
    assert folder.has("task_metrics") and not folder.has("head_ablation")
    assert folder.variants() == ["teacher-ft", "distil-ft_after"]
    assert folder.seeds() == [0, 1] and folder.seeds("distil-ft_after") == [1]
    assert folder.saved_models() == [("teacher-ft", 0)]
    assert folder.model_dir("teacher-ft", 0) == run / "models" / "teacher-ft" / "seed0"
    assert folder.manifest == {"name": "r1"}
    assert folder.table("task_metrics")["value"].tolist() == [0.8, 0.7]


def test_missing_table_and_model_messages_name_what_and_how(run):
    folder = RunFolder(run)
    message = folder.missing("head_ablation")
    assert "head_ablation is missing" in message and "bias-atlas run" in message
    assert "[attribution] ablation" in message and "tables/head_ablation.parquet" in message
    with pytest.raises(FileNotFoundError, match="head_ablation is missing"):
        folder.table("head_ablation")
    with pytest.raises(FileNotFoundError, match=r"saved: teacher-ft/seed0"):
        folder.model_dir("tiny-ft_before", 2)
    with pytest.raises(FileNotFoundError, match="bias-atlas run"):
        RunFolder(run / "nope")


def test_find_runs_takes_a_run_or_a_folder_of_runs(run, tmp_path):
    other = tmp_path / "runs" / "r2"
    (other / "tables").mkdir(parents=True)
    (tmp_path / "runs" / "notes").mkdir()  # not a run: no manifest, tables or models
    assert set(find_runs(tmp_path / "runs")) == {run, other}
    assert find_runs(run) == [run]
    assert find_runs(tmp_path / "runs" / "notes") == []
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_runs(tmp_path / "absent")


def test_combine_tables_prefixes_variants_with_several_runs(run, tmp_path):
    other = tmp_path / "runs" / "r2"
    _write(other, "task_metrics", [{"variant": "teacher-ft", "metric": "accuracy", "value": 0.5}])
    one = combine_tables([RunFolder(run)], "task_metrics")
    both = combine_tables([RunFolder(run), RunFolder(other)], "task_metrics")
    assert one["variant"].tolist() == ["teacher-ft", "distil-ft_after"]
    assert both["variant"].tolist() == ["r1/teacher-ft", "r1/distil-ft_after", "r2/teacher-ft"]
    assert combine_tables([RunFolder(run)], "head_ablation") is None


def test_overview_table_picks_metrics_subsets_and_aliases():
    task = tidy(
        [
            {"variant": "distil-ft_after", "unit": "model", "metric": "accuracy", "subset": "test", "value": 0.7},
            {
                "variant": "distil-ft_after@balanced",
                "unit": "model",
                "metric": "accuracy",
                "subset": "test",
                "value": 0.6,
            },
            {"variant": "teacher-ft", "unit": "model", "metric": "accuracy", "subset": "test", "value": 0.8},
            {"variant": "teacher-ft", "unit": "model", "metric": "params", "value": 1e6},
            {"variant": "teacher-ft", "unit": "class", "metric": "recall", "subset": "test", "value": 0.1},
        ]
    )
    bias = tidy(
        [
            {"variant": "teacher-ft", "metric": "gap_rms", "value": 0.2, "ci_low": 0.1, "ci_high": 0.3},
            {"variant": "teacher-ft", "metric": "cf_prob_gap", "subset": "all", "value": 0.05},
            {"variant": "teacher-ft", "metric": "cf_prob_gap", "subset": "female", "value": 0.9},
            {"variant": "teacher-ft", "metric": "seat_effect_size", "subset": "weat6", "value": -0.4},
            {"variant": "teacher-ft", "metric": "seat_effect_size", "subset": "weat7", "value": 0.2},
            {"variant": "teacher-ft", "metric": "crows_stereo_pct", "subset": "gender", "value": np.nan},
        ]
    )
    table = overview_table(task, bias)
    assert table["variant"].tolist() == ["teacher-ft", "distil-ft_after", "distil-ft_after@balanced"]
    teacher = table.iloc[0]
    assert (teacher["method"], teacher["order"], teacher["training_set"]) == ("teacher", "ft", "original")
    assert table.iloc[2][["method", "order", "training_set"]].tolist() == ["distil", "after", "balanced"]
    assert teacher["accuracy"] == 0.8 and teacher["n_params"] == 1e6
    assert (teacher["gap_rms"], teacher["gap_rms_lo"], teacher["gap_rms_hi"]) == (0.2, 0.1, 0.3)
    assert teacher["cf_gap"] == 0.05  # subset "all", not "female"
    assert teacher["seat_abs_d"] == pytest.approx(0.3)  # mean |d| over tests
    assert np.isnan(teacher["crows_stereo_pct"])
    assert np.isnan(table.iloc[1]["gap_rms"]) and table.iloc[1]["accuracy"] == 0.7
    assert "stereoset_ss" not in table  # no table has it


def test_overview_table_of_nothing_is_empty():
    assert overview_table(None, None).empty


def test_top_neurons_table_equals_brute_force():
    rng = np.random.default_rng(0)
    rows = [
        {"variant": "v", "unit": "neuron", "layer": layer, "head": j, "metric": "ig", "value": rng.normal()}
        for layer in range(3)
        for j in range(20)
    ]
    frame = tidy(rows)
    table = top_neurons_table(frame, 4)
    for layer in range(3):
        part = frame[frame["layer"] == layer]
        expected = part.loc[part["value"].abs().sort_values(ascending=False).index[:4], "head"].tolist()
        got = table[table["layer"] == layer]
        assert got["neuron"].tolist() == expected and got["rank"].tolist() == [1, 2, 3, 4]
    with pytest.raises(ValueError, match="k=0"):
        top_neurons_table(frame, 0)
    with pytest.raises(ValueError, match="pass metric="):
        top_neurons_table(pd.concat([frame, frame.assign(metric="indirect_effect")]), 3)
