"""HeadAblation: every mode against brute-force global gates; cumulative end points; errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from attribution.ablation import HeadAblation
from attribution.data import AttributionData
from attribution.scores import CounterfactualGap, TaskLoss
from pipeline.gates import HeadGates, ones_gates


@pytest.fixture(scope="module")
def setup(tiny_loaded, tiny_task):
    loaded = tiny_loaded("bert")
    return loaded, AttributionData.from_task(loaded, tiny_task)


def _brute(loaded, data, gates, score):
    batch = data.batch(torch.arange(len(data)))
    with torch.no_grad(), HeadGates(loaded.anatomy, gates):
        return score(loaded, batch)


def _value(frame, metric, **where):
    rows = frame[frame["metric"] == metric]
    for key, val in where.items():
        rows = rows[rows[key] == val]
    assert len(rows) == 1, rows
    return rows.iloc[0]


def test_single_layer_and_leave_one_in_match_brute_force(setup):
    loaded, data = setup
    score = CounterfactualGap()
    reference = _brute(loaded, data, ones_gates(loaded.anatomy), score)
    ablation = HeadAblation(loaded, score)
    single = ablation.attribute(data, mode="single", n_boot=100, progress=False)
    slow = ablation.attribute(data, mode="single", n_boot=100, fast=False, progress=False)
    np.testing.assert_allclose(single["value"], slow["value"], atol=1e-6)
    gates = ones_gates(loaded.anatomy)
    gates[1, 3] = 0
    row = _value(single, "delta_score", layer=1, head=3)
    assert row["value"] == pytest.approx(float((_brute(loaded, data, gates, score) - reference).mean()), abs=1e-6)
    assert row["ci_low"] <= row["value"] <= row["ci_high"] and row["n"] == len(data)
    assert set(single["mode"]) == {"single"} and set(single["score"]) == {"cf_gap"}

    layer = ablation.attribute(data, mode="layer", n_boot=0, progress=False)
    gates = ones_gates(loaded.anatomy)
    gates[2] = 0
    assert _value(layer, "ablated_score", unit="layer", layer=2)["value"] == pytest.approx(
        float(_brute(loaded, data, gates, score).mean()), abs=1e-6
    )

    loo = ablation.attribute(data, mode="leave_one_in", n_boot=0, progress=False)
    gates = ones_gates(loaded.anatomy)
    gates[0, [0, 1, 3]] = 0
    assert _value(loo, "ablated_score", layer=0, head=2)["value"] == pytest.approx(
        float(_brute(loaded, data, gates, score).mean()), abs=1e-6
    )
    accuracy = _value(loo, "accuracy", unit="model")["value"]
    assert 0 <= accuracy <= 1


def test_batch_size_does_not_change_ablation(setup):
    loaded, data = setup
    kw = {"mode": "leave_one_in", "baseline": "mean", "n_boot": 0, "progress": False}
    one = HeadAblation(loaded, CounterfactualGap()).attribute(data, batch_size=1, **kw)
    many = HeadAblation(loaded, CounterfactualGap()).attribute(data, batch_size=64, **kw)
    np.testing.assert_allclose(one["value"], many["value"], atol=1e-6)


def test_cumulative_curve_end_points(setup):
    loaded, data = setup
    order = pd.DataFrame({"unit": "head", "layer": [0, 0, 1, 2], "head": [1, 2, 0, 3], "value": [0.1, -0.9, 0.5, 0.0]})
    frame = HeadAblation(loaded, TaskLoss()).attribute(data, mode="cumulative", order=order, n_boot=0, progress=False)
    curve = frame[frame["metric"] == "ablated_score"].sort_values("step")
    assert curve["step"].tolist() == [0, 1, 2, 3, 4] and set(curve["order"]) == {"most"}
    assert curve["removed_layer"].tolist()[1:] == [0, 1, 0, 2]  # by |value|: (0,2), (1,0), (0,1), (2,3)
    assert curve["value"].iloc[0] == pytest.approx(_value(frame, "intact_score")["value"])
    gates = ones_gates(loaded.anatomy)
    gates[0, 1] = gates[0, 2] = gates[1, 0] = gates[2, 3] = 0
    assert curve["value"].iloc[-1] == pytest.approx(float(_brute(loaded, data, gates, TaskLoss()).mean()), abs=1e-6)
    least = HeadAblation(loaded, TaskLoss()).attribute(
        data, mode="cumulative", order=order, most_first=False, steps=[1], n_boot=0, progress=False
    )
    assert _value(least, "ablated_score")["removed_head"] == 3


def test_bad_input(setup):
    loaded, data = setup
    ablation = HeadAblation(loaded, TaskLoss())
    with pytest.raises(ValueError, match="mode='sideways'"):
        ablation.attribute(data, mode="sideways")
    with pytest.raises(ValueError, match="order= is required"):
        ablation.attribute(data, mode="cumulative")
    with pytest.raises(IndexError, match="head 9 is not in layer 0"):
        ablation.attribute(data, mode="cumulative", order=pd.DataFrame({"layer": [0], "head": [9], "value": [1.0]}))
    with pytest.raises(ValueError, match="baseline='one'"):
        ablation.attribute(data, baseline="one")
