"""Planted structure: gender reaches the prediction only through head (1, 2) and neurons (1, {5, 17, 30}).

Every method must find it: ablation, gradient importance, integrated gradients over heads and activation
patching (both engines) rank head (1, 2) first; integrated gradients over neurons rank the planted neurons on top.
"""

from __future__ import annotations

import pandas as pd
import pytest

from attribution.ablation import HeadAblation
from attribution.ig import HeadIntegratedGradients, NeuronIntegratedGradients
from attribution.importance import GradientHeadImportance
from attribution.patching import ActivationPatching
from attribution.scores import CounterfactualGap, TrueClassProb


def _ranking(frame: pd.DataFrame, metric: str, unit: str = "head") -> list[tuple[int, int]]:
    rows = frame[(frame["metric"] == metric) & (frame["unit"] == unit)]
    rows = rows.assign(key=rows["value"].abs()).sort_values("key", ascending=False)
    return list(zip(rows["layer"], rows["head"]))


def _first_by_far(frame, metric, head):
    rows = frame[(frame["metric"] == metric) & (frame["unit"] == "head")].set_index(["layer", "head"])["value"].abs()
    top = rows.pop(head)
    assert top > 10 * rows.max(), (top, rows.nlargest(3))


@pytest.mark.parametrize("method", ["ablation", "importance", "head_ig", "patching", "patching_lens"])
def test_planted_head_ranks_first(planted, planted_truth, method):
    loaded, data = planted
    head, _ = planted_truth
    gap = CounterfactualGap()
    kw = {"n_boot": 0, "progress": False}
    frame, metric = {
        "ablation": lambda: (HeadAblation(loaded, gap).attribute(data, **kw), "delta_score"),
        "importance": lambda: (GradientHeadImportance(loaded, gap).attribute(data, **kw), "grad_importance"),
        "head_ig": lambda: (HeadIntegratedGradients(loaded, gap).attribute(data, n_steps=24, **kw), "ig"),
        "patching": lambda: (ActivationPatching(loaded, TrueClassProb()).attribute(data, **kw), "indirect_effect"),
        "patching_lens": lambda: (ActivationPatching(loaded, TrueClassProb(), engine="lens").attribute(data, **kw),
                                  "indirect_effect"),
    }[method]()  # fmt: skip
    assert _ranking(frame, metric)[0] == head
    _first_by_far(frame, metric, head)


def test_planted_head_mediates_the_whole_effect(planted, planted_truth):
    loaded, data = planted
    (layer, index), _ = planted_truth
    frame = ActivationPatching(loaded, TrueClassProb()).attribute(data, n_boot=0, progress=False)
    total = frame[frame["metric"] == "total_effect"]["value"].item()
    head = frame[(frame["metric"] == "indirect_effect") & (frame["layer"] == layer) & (frame["head"] == index)]
    assert total > 0.5 and head["value"].item() == pytest.approx(total, rel=0.05)


def test_planted_neurons_rank_on_top(planted, planted_truth):
    loaded, data = planted
    (layer, _), neurons = planted_truth
    frame = NeuronIntegratedGradients(loaded, CounterfactualGap()).attribute(data, n_steps=24, n_boot=0, progress=False)
    top = _ranking(frame, "ig", unit="neuron")[: len(neurons)]
    assert sorted(top) == [(layer, n) for n in neurons]
