"""Tests for pipeline/metrics/evaluate.py: the stage entry point, its config and its never-silent skips."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from pipeline.data import FEMALE, MALE, TaskData
from pipeline.metrics import BiasMetricsConfig, bias_metrics
from pipeline.schema import COLUMNS, read_table, write_table

FAST = {"n_boot": 100, "max_examples": 2, "seat_form": "word", "seat_n_samples": 200}


def test_minilm_without_mlm_head_gets_skip_rows_with_reasons(minilm, caplog):
    config = BiasMetricsConfig(metrics=("extrinsic", "seat", "crows", "stereoset", "winobias", "winogender"),
                               poolings=("mean",), **FAST)  # fmt: skip
    with caplog.at_level(logging.WARNING):
        frame = bias_metrics(minilm, variant="minilm", seed=3, config=config)
    assert tuple(frame.columns[: len(COLUMNS)]) == COLUMNS and {"pooling", "skipped"} <= set(frame.columns)
    assert (frame.variant == "minilm").all() and (frame.seed == 3).all()
    skipped = frame[frame.skipped != ""]
    assert set(skipped.metric) == {"gap_rms", "accuracy", "crows_stereo_pct", "stereoset_ss", "stereoset_lms",
                                   "stereoset_icat", "winobias_stereotype", "winobias_skew",
                                   "winogender_male_pref_pct", "winogender_bls_r"}  # fmt: skip
    assert skipped.value.isna().all()
    crows = skipped[skipped.metric.str.startswith("crows")]
    assert set(crows.skipped) == {"no MLM head (model loaded with head='encoder')"}
    assert set(skipped[skipped.metric == "gap_rms"].skipped) == {"no test data given"}
    seat = frame[frame.metric == "seat_effect_size"]
    assert len(seat) == 6 and set(seat.pooling) == {"mean"} and seat.value.notna().all()
    assert "crows skipped: no MLM head" in caplog.text


def test_mlm_families_run_on_a_model_with_an_mlm_head(tiny_mlm, tmp_path):
    """A random head fails the usability check; ``mlm_head_check = "report"`` scores it anyway, check in the rows."""
    config = BiasMetricsConfig(
        metrics=("crows", "stereoset", "winobias", "winogender"), mlm_head_check="report", **FAST
    )
    frame = bias_metrics(tiny_mlm, variant="tiny", config=config)
    assert (frame.skipped[frame.value.notna()] == "").all()  # a value its procedure leaves undefined says why
    assert frame.skipped[frame.value.isna()].str.contains("undefined on these data|no ").all()
    assert {"crows_stereo_pct", "stereoset_icat", "winobias_skew", "winogender_bls_r"} <= set(frame.metric)
    assert (frame.mlm_head_top1 < frame.mlm_head_baseline).all() and frame.mlm_head_baseline.between(0.05, 0.3).all()
    assert set(frame.mlm_head) == {"from the checkpoint as shipped"}
    path = write_table(frame, tmp_path / "bias.parquet")
    assert read_table(path).shape == frame.shape


def test_an_mlm_head_that_fails_the_check_gets_its_benchmarks_skipped(tiny_mlm, tiny_classifier):
    config = BiasMetricsConfig(metrics=("seat", "crows", "winogender"), poolings=("mean",), **FAST)
    frame = bias_metrics(tiny_classifier, variant="tiny", config=config, mlm=lambda: tiny_mlm)
    mlm_rows = frame[frame.metric.str.startswith(("crows", "winogender"))]
    assert (
        mlm_rows.value.isna().all() and mlm_rows.skipped.str.startswith("MLM head untrained: masked-token top-1").all()
    )
    assert mlm_rows.mlm_head_top1.notna().all() and (mlm_rows.mlm_head_top1 <= mlm_rows.mlm_head_baseline).all()
    seat = frame[frame.metric == "seat_effect_size"]
    assert seat.value.notna().all() and seat.mlm_head_top1.isna().all() and (seat.mlm_head == "").all()


def test_classifier_gets_extrinsic_and_counterfactual_rows(tiny_classifier):
    rng = np.random.default_rng(0)
    who, jobs = rng.choice(["He", "She"], 30), rng.choice(["nurse", "pilot", "chef"], 30)
    texts = tuple(f"{w} works as a {job} and likes it." for w, job in zip(who, jobs))
    genders = np.array([FEMALE if t.startswith("She") else MALE for t in texts])
    labels = np.array([["nurse", "pilot", "chef"].index(t.split()[4]) for t in texts])
    test = TaskData("toy", texts, labels, genders, ("nurse", "pilot", "chef"))
    config = BiasMetricsConfig(metrics=("extrinsic", "counterfactual"), n_boot=100)
    frame = bias_metrics(tiny_classifier, test=test, train_female_share=np.array([0.9, 0.1, 0.5]), config=config)
    assert {"tpr_gap", "gap_rms", "gap_share_pearson_r", "cf_prob_gap", "cf_flip_rate"} <= set(frame.metric)
    assert set(frame[frame.unit == "class"].subset) == {"nurse", "pilot", "chef"}
    assert (frame.skipped[frame.value.notna()] == "").all() and (frame.skipped[frame.value.isna()] != "").all()
    wrong = TaskData("toy", texts, labels % 2, genders, ("a", "b"))
    with pytest.raises(ValueError, match="3 outputs but the test data 'toy' has 2 classes"):
        bias_metrics(tiny_classifier, test=wrong, config=config)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"metrics": ("seat", "weat")}, r"unknown metric family 'weat' \(did you mean 'seat'\?\); registered: extrinsic, counterfactual, seat"),
     ({"poolings": ("max",)}, "poolings"), ({"n_boot": -1}, r"n_boot\n  Input should be greater than or equal to 0"), ({"winobias_split": "train"}, "winobias_split"),
     ({"max_examples": 0}, "max_examples")],
)  # fmt: skip
def test_config_errors_name_the_field_and_the_allowed_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BiasMetricsConfig(**kwargs)
