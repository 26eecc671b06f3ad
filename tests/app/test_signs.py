"""Signs per model (issue #28, item 4): which colour of a head map adds bias is decided by each model's own score,
never by an average over the models compared. Two models with opposite gaps must get opposite colours, on the
figures (each map's title, the colour bar) and on the Heads and Neurons pages."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from viewer_helpers import open_app, show

from pipeline.figures import plots
from pipeline.schema import read_table, tidy, write_table

TOTAL_ROW = {"delta_score": "intact_score", "ig": "ig_total", "indirect_effect": "total_effect"}
TOTALS = {"teacher-ft": 0.02, "distil-ft_before": -0.03}  # opposite signs; mean -0.005
MAP = np.array([[0.5, -1.0], [2.0, -0.25]])


def _adds_bias(metric: str, total: float) -> str:
    """By hand: ablation deltas add bias when they have the other sign than the model's own score (removing the
    head moves the score towards 0); IG and patching effects when they have the same sign."""
    sign = -np.sign(total) if metric == "delta_score" else np.sign(total)
    return "red (+)" if sign > 0 else "blue (-)"


def _frame(metric: str) -> pd.DataFrame:
    heads = [
        {"variant": v, "seed": 0, "unit": "head", "layer": l, "head": h, "metric": metric, "value": MAP[l, h]}
        for v in TOTALS
        for l in range(2)
        for h in range(2)
    ]
    totals = [
        {"variant": v, "seed": 0, "unit": "model", "metric": TOTAL_ROW[metric], "value": t} for v, t in TOTALS.items()
    ]
    return tidy([*heads, *totals])


@pytest.mark.parametrize("metric", list(TOTAL_ROW))
def test_each_maps_colour_that_adds_bias_follows_its_own_models_sign(metric):
    frame = _frame(metric)
    fig = plots.side_by_side_heatmaps({v: frame[frame["variant"] == v] for v in TOTALS}, metric)
    heat = [ax for ax in fig.axes if ax.images]
    for ax, (variant, total) in zip(heat, TOTALS.items()):
        title = ax.get_title().split("\n")
        assert title[0] == variant and title[-1] == f"{_adds_bias(metric, total)} adds bias", title
        assert title[-2].endswith(f"{total:+.2g}")
    assert len({ax.get_title().split("\n")[-1] for ax in heat}) == 2  # opposite gaps, opposite colours
    bar = next(ax for ax in fig.axes if ax.get_ylabel().startswith(plots.label(metric)))
    assert bar.get_ylabel().split("\n")[1] == "the colour that adds bias differs: see each title"
    image = heat[0].images[0]
    red, blue = (image.cmap(image.norm(x)) for x in (1.0, -1.0))
    assert red[0] > red[2] and blue[2] > blue[0]  # "red (+)": positive values are drawn red
    for variant, total in TOTALS.items():
        single = plots.head_heatmap(frame[frame["variant"] == variant], metric)
        words = single.axes[1].get_ylabel().split("\n")[1]
        assert words.endswith(f"{total:+.2g}: {_adds_bias(metric, total)} adds bias"), words


def test_maps_that_agree_say_so_on_the_shared_colour_bar():
    frame = _frame("delta_score")
    frame.loc[frame["metric"] == "intact_score", "value"] = [0.02, 0.05]
    fig = plots.side_by_side_heatmaps({v: frame[frame["variant"] == v] for v in TOTALS}, "delta_score")
    bar = next(ax for ax in fig.axes if ax.get_ylabel().startswith(plots.label("delta_score")))
    assert bar.get_ylabel().split("\n")[1] == "blue (-) adds bias in every model"


@pytest.fixture(scope="module")
def opposite_run(tmp_path_factory, demo_run):
    """The demo run's tables and models with teacher-ft's and distil-ft_before's own scores set to opposite signs."""
    run_dir = tmp_path_factory.mktemp("runs_signs") / "signs"
    shutil.copytree(demo_run, run_dir, ignore=shutil.ignore_patterns(".cache"))
    for table, metric in (("head_ablation", "intact_score"), ("neuron_ig", "ig_total")):
        frame = read_table(run_dir / "tables" / f"{table}.parquet")
        for variant, total in TOTALS.items():
            frame.loc[(frame["variant"] == variant) & (frame["metric"] == metric), "value"] = total
        write_table(frame, run_dir / "tables" / f"{table}.parquet")
    return run_dir


def test_the_heads_and_neurons_pages_name_each_models_own_colour(opposite_run):
    at = show(open_app(opposite_run.parent), "Heads")
    assert at.selectbox(key="head_metric").value == "ablation: Δ bias score"
    caption = next(c.value for c in at.caption if c.value.startswith("Colour:"))
    for variant, total in TOTALS.items():
        assert f"{variant} (" in caption
        assert f"{total:+.3g}): {_adds_bias('delta_score', total)} adds bias" in caption.split(f"{variant} (")[1]
    at = show(at, "Neurons")
    for variant, total in TOTALS.items():
        at.selectbox(key="neuron_variant").set_value(variant).run()
        words = next(c.value for c in at.caption if c.value.startswith(f"{variant}'s own"))
        assert f"is {total:+.3g}, so {_adds_bias('ig', total)} bars add to its bias" in words
        neurons = read_table(opposite_run / "tables" / "neuron_ig.parquet").query("unit == 'neuron'")
        hits = neurons.assign(hit=neurons["q"] < 0.05).groupby("variant")["hit"].sum()
        for name, count in hits.items():
            assert (f"{name} {count}" in words) == (count > 0) and (name in words)
