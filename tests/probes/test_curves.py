"""Comparison: normalised depth puts a 6-block student and a 12-block teacher on one axis; head maps pivot."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from pipeline.schema import tidy
from probes.curves import add_depth, depth_curves, head_map, plot_depth_curves, plot_head_map


def _layers(variant: str, n_layers: int) -> pd.DataFrame:
    rows = [
        {
            "unit": "layer",
            "layer": k,
            "metric": "probe_accuracy",
            "subset": target,
            "value": 0.5 + k / 100,
            "ci_low": 0.4,
            "ci_high": 0.6,
            "pooling": pooling,
            "chance": 0.5,
        }
        for k in range(n_layers + 1)
        for target in ("gender", "label")
        for pooling in ("cls", "mean")
    ]
    return tidy(rows, variant=variant)


def _heads(variant: str) -> pd.DataFrame:
    rows = [
        {
            "unit": "head",
            "layer": l,
            "head": h,
            "metric": "probe_accuracy",
            "subset": "gender",
            "value": l + h / 10,
            "pooling": "mean",
        }
        for l in range(2)
        for h in (0, 2)
    ]  # head 1 pruned
    return tidy(rows, variant=variant)


def test_depth_is_layer_over_blocks():
    table = add_depth(pd.concat([_layers("teacher", 12), _layers("student", 6), _heads("student")]))
    teacher = table[(table["variant"] == "teacher") & (table["unit"] == "layer")]
    np.testing.assert_allclose(teacher["depth"], teacher["layer"] / 12)
    student = table[(table["variant"] == "student") & (table["unit"] == "layer")]
    np.testing.assert_allclose(student["depth"], student["layer"] / 6)
    heads = table[table["unit"] == "head"]
    np.testing.assert_allclose(heads["depth"], (heads["layer"] + 1) / 6)  # head of block l writes hidden state l+1


def test_depth_curves_line_up_variants():
    curves = depth_curves({"teacher": _layers("x", 12), "student": _layers("y", 6)}, pooling="cls")
    assert set(curves["variant"]) == {"teacher", "student"} and set(curves["subset"]) == {"gender"}
    teacher = curves[curves["variant"] == "teacher"].set_index("layer")["depth"]
    student = curves[curves["variant"] == "student"].set_index("layer")["depth"]
    assert student[3] == teacher[6] == 0.5 and student[6] == teacher[12] == 1.0
    with pytest.raises(ValueError, match=r"no rows with metric='probe_auc'; available: \['probe_accuracy'\]"):
        depth_curves(_layers("t", 2), metric="probe_auc")


def test_head_map_and_plots():
    grid = head_map(_heads("student"))
    assert list(grid.index) == [0, 1] and list(grid.columns) == [0, 2]
    assert grid.loc[1, 2] == pytest.approx(1.2)
    with pytest.raises(ValueError, match="pick one with variant="):
        head_map(pd.concat([_heads("a"), _heads("b")]))
    fig = plot_head_map(grid, title="student")
    assert fig.axes[0].get_title() == "student"
    curves = depth_curves(_layers("t", 4), target=None, pooling="mean")
    fig = plot_depth_curves(curves, hue="subset")
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["gender", "label"]
    plt.close("all")
