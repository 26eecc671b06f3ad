"""Tests for pipeline/metrics/extrinsic.py: TPR gaps, GAP_RMS, per-gender accuracy and F1 on hand-built cases."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import f1_score

from pipeline.metrics import extrinsic_metrics, gap_rms, gap_share_correlation, macro_f1, tpr_gaps
from pipeline.schema import COLUMNS

F, M = 1, 0


def _table(cells):
    """Examples from (true, pred, gender, count) cells."""
    t, p, g = zip(*[(a, b, c) for a, b, c, k in cells for _ in range(k)])
    return np.array(t), np.array(p), np.array(g)


# A hand-built confusion table, 3 classes:
#   class 0: women 4 (3 right, 1 -> class 1), men 4 (2 right, 2 -> class 2)   TPR_F = 3/4, TPR_M = 2/4, gap = +1/4
#   class 1: women 2 (1 right, 1 -> class 0), men 5 (5 right)                 TPR_F = 1/2, TPR_M = 1,   gap = -1/2
#   class 2: men only 3 (3 right)                                              gap undefined (no women)
CELLS = [(0, 0, F, 3), (0, 1, F, 1), (0, 0, M, 2), (0, 2, M, 2), (1, 1, F, 1), (1, 0, F, 1), (1, 1, M, 5), (2, 2, M, 3)]


def test_tpr_fpr_and_gap_rms_by_hand():
    y, p, g = _table(CELLS)
    table = tpr_gaps(y, p, g, 3)
    assert table["tpr_female"].tolist()[:2] == [0.75, 0.5] and np.isnan(table["tpr_female"][2])
    assert table["tpr_male"].tolist() == [0.5, 1.0, 1.0]
    assert table["gap"].tolist()[:2] == [0.25, -0.5] and np.isnan(table["gap"][2])
    # FPR(0, F): women not of class 0 = 2 (class 1), of which 1 predicted 0 -> 1/2. FPR(2, M): men not of class 2 = 9,
    # of which 2 predicted 2 -> 2/9. FPR(1, F): women not of class 1 = 4, 1 predicted 1 -> 1/4.
    assert table["fpr_female"][0] == 0.5 and table["fpr_female"][1] == 0.25
    assert table["fpr_male"][2] == pytest.approx(2 / 9)
    assert gap_rms(table["gap"]) == pytest.approx(np.sqrt((0.25**2 + 0.5**2) / 2))


def test_accuracy_and_macro_f1_per_gender_by_hand():
    y, p, g = _table(CELLS)
    frame = extrinsic_metrics(y, p, g, ["a", "b", "c"], n_boot=50, seed=0)
    value = frame.set_index(["metric", "subset"])["value"]
    assert value["accuracy", "female"] == pytest.approx(4 / 6)
    assert value["accuracy", "male"] == pytest.approx(10 / 12)
    # Women: class 0 P = 3/4 (3 of 4 predicted 0), R = 3/4 -> F1 3/4; class 1: P = 1/2, R = 1/2 -> 1/2; class 2 absent.
    assert value["macro_f1", "female"] == pytest.approx((0.75 + 0.5) / 2)
    assert value["accuracy_gap", ""] == pytest.approx(4 / 6 - 10 / 12)
    for subset, sel in (("female", g == F), ("male", g == M), ("all", g >= 0)):
        expected = f1_score(y[sel], p[sel], average="macro", zero_division=0)
        assert value["macro_f1", subset] == pytest.approx(expected)


def test_macro_f1_equals_sklearn_on_random_cases():
    rng = np.random.default_rng(0)
    for _ in range(20):
        y, p = rng.integers(0, 6, 40), rng.integers(0, 6, 40)
        assert macro_f1(y, p, 7) == pytest.approx(f1_score(y, p, average="macro", zero_division=0))


def test_undefined_gap_is_excluded_and_counted(caplog):
    y, p, g = _table(CELLS)
    with caplog.at_level(logging.WARNING):
        frame = extrinsic_metrics(y, p, g, ["a", "b", "c"], n_boot=20, seed=0)
    rows = frame.set_index(["metric", "subset"])
    assert rows.loc[("gap_rms_excluded_classes", ""), "value"] == 1
    assert rows.loc[("gap_rms", ""), "value"] == pytest.approx(np.sqrt((0.25**2 + 0.5**2) / 2))
    assert np.isnan(rows.loc[("tpr_gap", "c"), "value"])
    assert "left out" in caplog.text and "'c'" in caplog.text


def test_correlation_with_training_share_and_tidy_rows():
    rng = np.random.default_rng(1)
    n, c = 600, 5
    y, g = rng.integers(0, c, n), rng.integers(0, 2, n)
    p = np.where(rng.random(n) < 0.7 + 0.05 * g * y, y, rng.integers(0, c, n))
    share = np.array([0.1, 0.3, 0.5, 0.7, 0.9])
    frame = extrinsic_metrics(y, p, g, [f"c{i}" for i in range(c)], share, n_boot=200, seed=0)
    assert tuple(frame.columns[: len(COLUMNS)]) == COLUMNS
    r = frame.query("metric == 'gap_share_pearson_r'").iloc[0]
    assert r.value == pytest.approx(stats.pearsonr(tpr_gaps(y, p, g, c)["gap"], share).statistic)
    assert r.n == c
    aggregates = frame[(frame.unit == "model") & frame.ci_low.notna()]  # the count, p-value and n rows have none
    assert ((aggregates.ci_low <= aggregates.value) & (aggregates.value <= aggregates.ci_high)).all()
    assert set(frame[frame.unit == "class"].subset) == {f"c{i}" for i in range(c)}
    assert gap_share_correlation([0.1, 0.2], [0.3, 0.4]) != gap_share_correlation([0.1, 0.2], [0.3, 0.4])  # NaN


def test_bad_input_names_the_problem():
    with pytest.raises(ValueError, match="same length"):
        extrinsic_metrics([0, 1], [0], [0, 1], ["a", "b"])
    with pytest.raises(ValueError, match="class ids in 0..1"):
        extrinsic_metrics([0, 2], [0, 1], [0, 1], ["a", "b"])
    with pytest.raises(ValueError, match="one share per class"):
        extrinsic_metrics([0, 1], [0, 1], [0, 1], ["a", "b"], [0.5])
