"""Comparison across models: known values of Gini / entropy, seed stability and teacher-student alignment."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from attribution.compare import (
    gini,
    homogeneity,
    layer_map,
    normalised_entropy,
    seed_stability,
    teacher_student_alignment,
    top_k_overlap,
)
from pipeline.schema import tidy


def _heads(values, variant="v", seed=0, n_heads=4):
    values = np.asarray(values, float)
    return tidy([{"unit": "head", "layer": i // n_heads, "head": i % n_heads, "metric": "ig", "value": v}
                 for i, v in enumerate(values)], variant=variant, seed=seed)  # fmt: skip


def test_gini_and_entropy_known_values():
    assert gini([1, 1, 1, 1]) == pytest.approx(0.0)
    assert gini([0, 0, 0, 5]) == pytest.approx(0.75)  # (n - 1) / n: one unit carries everything
    assert gini([1, 3]) == pytest.approx(abs(1 - 3) * 2 / (2 * 4 * 2))  # sum_ij |xi - xj| / (2 n^2 mean)
    assert gini([-2, 2]) == pytest.approx(0.0)  # magnitudes
    assert math.isnan(gini([0, 0]))
    assert normalised_entropy([1, 1, 1]) == pytest.approx(1.0)
    assert normalised_entropy([0, 0, 7]) == pytest.approx(0.0)
    assert normalised_entropy([1, 3]) == pytest.approx(-(0.25 * np.log(0.25) + 0.75 * np.log(0.75)) / np.log(2))


def test_homogeneity_rows_per_variant():
    frame = pd.concat([_heads([1] * 8, "flat"), _heads([0] * 7 + [1], "peaked")])
    out = homogeneity(frame, "ig").set_index(["variant", "metric"])["value"]
    assert out["flat", "gini"] == pytest.approx(0) and out["peaked", "gini"] == pytest.approx(7 / 8)
    assert out["flat", "entropy"] == pytest.approx(1) and out["peaked", "entropy"] == pytest.approx(0)


def test_seed_stability():
    base = np.arange(8.0)
    frame = pd.concat([_heads(base, seed=0), _heads(base * 2, seed=1), _heads(base[::-1], seed=2)])
    out = seed_stability(frame, "ig", k=2)
    get = lambda m, s: out[(out["metric"] == m) & (out["subset"] == s)]["value"].item()
    assert get("seed_spearman", "0-1") == pytest.approx(1.0) and get("seed_spearman", "0-2") == pytest.approx(-1.0)
    assert get("seed_topk_overlap", "0-1") == 1.0 and get("seed_topk_overlap", "0-2") == 0.0
    assert get("seed_spearman", "mean") == pytest.approx((1 - 1 - 1) / 3)
    assert top_k_overlap(pd.Series([3.0, -5, 1]), pd.Series([-4.0, 0, 9]), 2) == 0.5
    with pytest.raises(ValueError, match="two seeds"):
        seed_stability(_heads(base), "ig")


def test_teacher_student_alignment_uses_the_layer_map():
    teacher = _heads(np.r_[[1, 2, 3, 4], [9, 9, 9, 9], [5, 3, 2, 1], [9, 9, 9, 9]], "teacher")  # 4 layers
    student = _heads(np.r_[[10, 20, 30, 40], [40, 30, 20, 5]], "distil")  # 2 layers from teacher 0 and 2
    mapping = layer_map(SimpleNamespace(), 2)
    assert mapping == [0, 2] and layer_map(SimpleNamespace(layer_map=[0, 3]), 2) == [0, 3]
    out = teacher_student_alignment(teacher, student, "ig", mapping)
    rho = out[out["metric"] == "align_spearman"].set_index("layer")
    assert rho.loc[0, "value"] == pytest.approx(1.0) and rho.loc[1, "teacher_layer"] == 2
    assert rho.loc[1, "value"] == pytest.approx(1.0)
    share = out[out["metric"] == "teacher_share"].set_index("layer")["value"]
    assert share[0] == pytest.approx(10 / 93)
    assert out[out["metric"] == "align_share_spearman"]["value"].item() == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="3 entries for 2 student layers"):
        layer_map(SimpleNamespace(layer_map=[0, 1, 2]), 2)
