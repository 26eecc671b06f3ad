"""Every figure type lays out cleanly, judged from the matplotlib objects (``tests/figure_layout.py``): no two tick
labels of an axis overlap and no text leaves the canvas, on paper-sized inputs that used to break (12 x 12 heads,
seven models side by side, 50 neurons, long sentences, many labelled points) and on the test run's own tables; and
``bias-atlas figures`` exports every attributed variant."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from circuit_tables import circuit_tables
from figure_layout import layout_problems
from matplotlib.figure import Figure

from pipeline.figures import plots
from pipeline.figures import run_figures as figures
from pipeline.findings.model_status import model_status
from pipeline.runs.findings_config import FindingsConfig
from pipeline.runs.runfolder import RunFolder
from pipeline.schema import tidy

RNG = np.random.default_rng(0)
MODELS = {
    "teacher-ft": 12,
    "distil-ft_before": 6,
    "distil-ft_after@balanced": 6,
    "prune30-ft_before": 12,
    "int8-ft_before": 12,
    "tiny-ft_both": 4,
    "hub-tinybert-ft_none": 4,
}  # name -> layers (12 heads each)


def _heads(scale: float = 1e-3) -> pd.DataFrame:
    rows = [
        {
            "variant": v,
            "seed": s,
            "unit": "head",
            "layer": layer,
            "head": h,
            "metric": "delta_score",
            "value": RNG.normal() * scale,
            "ci_low": -scale,
            "ci_high": scale,
            "q": RNG.random(),
            "n": 400,
            "score": "cf_gap",
            "mode": "single",
        }
        for v, n in MODELS.items()
        for s in (0, 1)
        for layer in range(n)
        for h in range(12)
    ]
    rows += [
        {
            "variant": v,
            "seed": s,
            "unit": "model",
            "metric": "intact_score",
            "value": -0.02,
            "score": "cf_gap",
            "mode": "single",
        }
        for v in MODELS
        for s in (0, 1)
    ]
    rows += [
        {
            "variant": v,
            "seed": s,
            "unit": "layer",
            "layer": layer,
            "metric": m,
            "value": RNG.normal() * scale,
            "ci_low": -2 * scale,
            "ci_high": 2 * scale,
            "mode": "layer",
        }
        for v, n in MODELS.items()
        for s in (0, 1)
        for layer in range(n)
        for m in ("delta_score", "delta_accuracy")
    ]
    return tidy(rows)


def _stress_figures() -> dict[str, Figure]:
    heads = _heads()
    flags = {"tiny-ft_both": "collapsed (99% in one class)", "hub-tinybert-ft_none": "untrained head"}
    cumulative = tidy(
        [
            {
                "variant": v,
                "metric": m,
                "value": RNG.random(),
                "ci_low": 0.0,
                "ci_high": 1.0,
                "step": k,
                "fraction": k / 12,
                "order": o,
                "score": "cf_gap",
            }
            for v in MODELS
            for o in ("most", "least", "random0", "random1", "random2")
            for k in range(13)
            for m in ("ablated_score", "ablated_accuracy")
        ]
    )
    probes = tidy(
        [
            {
                "variant": v,
                "unit": "layer",
                "layer": layer,
                "metric": m,
                "subset": "gender",
                "value": RNG.random(),
                "ci_low": 0.4,
                "ci_high": 0.9,
                "chance": 0.5,
                "pooling": "mean",
            }
            for v, n in MODELS.items()
            for layer in range(n + 1)
            for m in ("probe_accuracy", "control_accuracy", "selectivity")
        ]
    )
    variants = [f"distil{i}-ft_before" for i in range(8)] + ["teacher-ft", "int8-ft_before"]
    task = tidy(
        [
            {"variant": v, "seed": s, "unit": "model", "metric": m, "value": x}
            for v in variants
            for s in (0, 1)
            for m, x in (("size_mb", 60.0 + RNG.random()), ("accuracy", 0.8 + 0.01 * RNG.random()))
        ]
    )
    bias = tidy(
        [
            {
                "variant": v,
                "seed": s,
                "unit": "model",
                "metric": "gap_rms",
                "value": 0.1 + 0.005 * RNG.random(),
                "ci_low": 0.05,
                "ci_high": 0.2,
            }
            for v in variants
            for s in (0, 1)
        ]
    )
    tokens = tidy(
        [
            {
                "variant": "distil_mixup-ft_before@balanced",
                "unit": "token",
                "metric": "token_ig",
                "value": RNG.normal() * 1e-3,
                "example": 3,
                "position": i,
                "token": t,
                "label": 7.0,
                "gender": 1.0,
                "pred": 2.0,
                "score": "cf_gap",
            }
            for i, t in enumerate(["[CLS]"] + ["instagram", "##s", ",", "photographer"] * 40 + ["[SEP]"])
        ]
    )
    neurons = tidy(
        [
            {
                "variant": "teacher-ft",
                "seed": s,
                "unit": "neuron",
                "layer": layer,
                "head": j,
                "metric": "ig",
                "value": RNG.normal() * 1.5e-4,
                "ci_low": -3e-4,
                "ci_high": 3e-4,
                "q": 0.01,
                "n": 400,
            }
            for s in (0, 1)
            for layer in range(12)
            for j in range(3072 // 64)
        ]
    )
    words = ["[CLS]"] + [f"word{i}" for i in range(38)] + ["[SEP]"]
    weights = RNG.dirichlet(np.ones(len(words)), size=len(words))
    return {
        "head_heatmap": plots.head_heatmap(
            heads[heads["variant"] == "distil-ft_after@balanced"], "delta_score", flag="collapsed (99% in one class)"
        ),
        "side_by_side_shared": plots.side_by_side_heatmaps(
            {v: heads[heads["variant"] == v] for v in MODELS}, "delta_score", flags=flags
        ),
        "side_by_side_panel": plots.side_by_side_heatmaps(
            {v: heads[heads["variant"] == v] for v in MODELS}, "delta_score", scale="panel", flags=flags
        ),
        "cumulative_curve": plots.cumulative_curve(cumulative, flags=flags),
        "layer_effects": plots.layer_effects(heads, flags=flags),
        "probe_curves": plots.probe_curves(probes, flags=flags),
        "selectivity_curves": plots.selectivity_curves(probes, flags=flags),
        "bias_vs_compression": plots.bias_vs_compression(task, bias, flags={("int8-ft_before", 0): "untrained"}),
        "token_attributions": plots.token_attributions(tokens, 3, label_names=[f"job{i}" for i in range(10)]),
        "top_neurons": plots.top_neurons(neurons, 50, flag="untrained head"),
        "circuit_figure": plots.circuit_figure(*circuit_tables()),
        "attention_pattern": plots.attention_pattern(
            [("text", words, weights), ("twin", words, weights.T)], title="teacher-ft: layer 3, head 7"
        ),
        "twin_attention": plots.twin_attention(
            words, weights - weights.T, np.abs(weights[:12, :12]), selected=(3, 7), marked=(2, 17), title="teacher-ft"
        ),
        "lineage_effects": plots.lineage_effects(
            [f"distil-ft_before L{i % 6} patching" for i in range(20)],
            np.linspace(-1, 1, 20),
            np.linspace(-1.5, 0.5, 20),
            np.linspace(-0.5, 1.5, 20),
            ["adds", "reduces", "", "adds"] * 5,
            title="head 7: effect per model",
        ),
    }


STRESS = _stress_figures()


@pytest.mark.parametrize("name", sorted(STRESS))
def test_no_tick_labels_overlap_and_no_text_leaves_the_canvas(name):
    assert layout_problems(STRESS[name]) == []


def test_every_figure_type_is_checked():
    kinds = {
        name.removesuffix("_shared").removesuffix("_panel").replace("side_by_side", "side_by_side_heatmaps")
        for name in STRESS
    }
    assert kinds == set(plots.FIGURE_SIZES)


def test_the_checker_sees_crowded_ticks_and_text_outside():
    crowded = Figure(figsize=(1.0, 1.0), layout="constrained")
    ax = crowded.add_subplot()
    ax.imshow(np.zeros((2, 12)), aspect="auto")
    ax.set_xticks(range(12))  # "01234567891011"
    assert any("overlap" in p for p in layout_problems(crowded))
    outside = Figure(figsize=(2.0, 1.0))
    outside.text(0.9, 0.5, "a label cut at (layer+1")
    assert any("leaves the canvas" in p for p in layout_problems(outside))


@pytest.fixture(scope="module")
def demo_jobs(demo_run):
    run = RunFolder(demo_run)
    tables = {n: run.table(n) for n in run.tables()}
    status = model_status(tables.get("fitness"), tables.get("task_metrics"), tables.get("predictions"))
    return tables, dict(figures._jobs(tables, status, FindingsConfig(), tuple(run.manifest["label_names"])))


def test_figures_export_every_attributed_variant(demo_jobs):
    tables, jobs = demo_jobs
    ablation = tables["head_ablation"]
    attributed = set(ablation.loc[ablation["unit"] == "head", "variant"])
    assert attributed == {"teacher-ft", "distil-ft_before", "int8-ft_before"}
    assert {f"heads_delta_score_{v}" for v in attributed} <= set(jobs)
    compare = jobs["compare_delta_score"]()
    assert sorted(ax.get_title().split("\n")[0] for ax in compare.axes if ax.images) == sorted(attributed)
    assert {"layer_ablation", "probe_selectivity", "cumulative_ablation", "bias_vs_compression"} <= set(jobs)


def test_the_run_figures_lay_out_cleanly(demo_jobs):
    _, jobs = demo_jobs
    kinds = {}
    for stem, draw in jobs.items():  # one figure of each kind
        kinds.setdefault(stem.split("_")[0] + ("_" + stem.split("_")[1] if stem.startswith("probe") else ""), draw)
    problems = {kind: layout_problems(draw()) for kind, draw in kinds.items()}
    assert {k: p for k, p in problems.items() if p} == {}
    assert len(kinds) >= 9
