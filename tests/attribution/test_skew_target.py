"""The skew-oriented counterfactual target: its orientation is the training data's gender skew per class (exact on a
hand-made set), the score is that orientation times the signed gap per example, and the target of patching has the
skew gap as its total effect."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attribution.analysis import patching_score
from attribution.engine import evaluate
from attribution.patching import ActivationPatching
from attribution.scores import CounterfactualGap, SkewedClassProb, SkewGap, TrueClassProb
from pipeline.data import FEMALE, MALE, TaskData
from pipeline.gates import ones_gates


def test_orientation_is_the_sign_of_each_class_skew():
    from pipeline.metrics.counterfactual import skew_orientation

    labels = [0, 0, 0, 1, 1, 1, 2, 2]
    genders = [FEMALE, FEMALE, MALE, MALE, MALE, FEMALE, FEMALE, MALE]  # overall 4/8 women
    data = TaskData("t", tuple("abcdefgh"), np.array(labels), np.array(genders), ("x", "y", "z", "empty"))
    assert skew_orientation(data).tolist() == [1.0, -1.0, 0.0, 0.0]  # 2/3, 1/3, 1/2 and no rows


def test_skew_gap_is_the_oriented_signed_gap_and_patching_total_is_it(planted):
    loaded, data = planted  # 24 texts of class 1 ("f")
    gates = ones_gates(loaded.anatomy, batch=1)
    signed = evaluate(loaded, CounterfactualGap(), data, gates).values[0]
    skew = evaluate(loaded, SkewGap([1.0, -1.0]), data, gates).values[0]
    torch.testing.assert_close(skew, -signed)  # class 1 oriented -1: the gap counted towards men
    assert isinstance(patching_score(SkewGap([1.0, -1.0])), SkewedClassProb)
    assert isinstance(patching_score(CounterfactualGap()), TrueClassProb)
    table = ActivationPatching(loaded, SkewedClassProb([1.0, -1.0])).attribute(data, n_boot=0, progress=False)
    total = table[(table["unit"] == "model") & (table["metric"] == "total_effect")]["value"].iloc[0]
    assert total == pytest.approx(float(skew.mean()), abs=1e-6)


def test_orientation_must_match_the_classes(planted):
    loaded, data = planted
    with pytest.raises(ValueError, match="orientation has 3 classes"):
        SkewGap([1.0, 0.0, -1.0]).check(loaded, data)
