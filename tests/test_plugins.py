"""Plug-ins: a toy bias metric, a toy attribution method and a toy compression method, each defined here as one
record (plus the function it wraps), are picked up by a small run, the findings, the report, the figures, the viewer
and the command line, with no other file of the project edited (docs/ARCHITECTURE.md, "Registries")."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
import torch
from run_fixtures import demo_config, run_pipeline, save_teacher

from attribution.ablation import HeadAblation
from pipeline.compress.config import MethodSection
from pipeline.compress.registry import CompressionMethod, method_markers, register_compression, unregister_compression
from pipeline.method_registry import AttributionMethod, UnitFacts, register_method, unregister_method
from pipeline.metrics._rows import metric_row, to_frame
from pipeline.metrics.registry import MetricFacts, MetricFamilySpec, register_family, unregister_family
from pipeline.runs.build_job import carried
from pipeline.schema import read_table
from pipeline.settings import Order


# ---- the toy bias metric: the mean [CLS] norm of a few fixed sentences (an intrinsic metric of the encoder) --------
def toy_metric(inputs) -> pd.DataFrame:
    """``toy_cls_norm``: the mean L2 norm of the last [CLS] state over three fixed sentences."""
    loaded = inputs.loaded
    with torch.no_grad():
        batch = loaded.tokenize(["she is here", "he is here", "they are here"])
        hidden = loaded.anatomy.base(**batch).last_hidden_state[:, 0]
    norms = hidden.norm(dim=-1).double().numpy()
    return to_frame([metric_row("toy_cls_norm", (float(norms.mean()), float(norms.min()), float(norms.max())), 3)])


TOY_METRIC = MetricFamilySpec(
    "toy",
    "encoder",
    ("toy_cls_norm",),
    "a test plug-in",
    toy_metric,
    prefix="toy_",
    facts={"toy_cls_norm": MetricFacts("toy [CLS] norm", 0.0, "0 = none")},
)


# ---- the toy attribution method: single-head ablation on the run's score, under another name ----------------------
def toy_attribution(job) -> pd.DataFrame:
    """Single-head ablation effects, relabelled as the toy method's table."""
    return HeadAblation(job.loaded, job.score).attribute(job.data, mode="single", n_boot=20, progress=False)


TOY_METHOD = AttributionMethod(
    table="toy_ablation",
    switch="toy",
    what="a test plug-in: single-head ablation again",
    needs_gradients=False,
    main_metric="delta_score",
    run=toy_attribution,
    head_maps=(("toy: Δ bias", ("delta_score",)),),
    unit=UnitFacts(
        "toy",
        "delta_score",
        "delta_score",
        causal=True,
        total="intact_score",
        adds_sign=-1,
        where={"mode": "single"},
    ),
    command=("toy-ablate", "a test plug-in attribution command"),
)


# ---- the toy compression method: shrink the classifier's weights (data-free, like int8) ----------------------------
class ToyShrinkSection(MethodSection):
    """``[compress.toyshrink]``: scale the classifier head's weights and bias (so its logits) by ``scale``."""

    op: ClassVar[str] = "toyshrink"
    orders: tuple[Order, ...] = ("before",)
    scale: float = 0.5


def toy_shrink(job):
    """The input classifier with its head's logits times ``job.section.scale``."""
    loaded = job.inputs.classifier()
    with torch.no_grad():
        loaded.model.classifier.weight.mul_(job.section.scale)
        loaded.model.classifier.bias.mul_(job.section.scale)
    return carried(loaded, job, [{"unit": "model", "metric": "toy_scale", "value": job.section.scale}], "toy-shrunk")


TOY_COMPRESSION = CompressionMethod(
    "toyshrink",
    ToyShrinkSection,
    {"toyshrink": toy_shrink},
    "a test plug-in: the classifier's logits scaled down",
    {"toyshrink": "8"},
    data_free=frozenset({"toyshrink"}),
)


@pytest.fixture(scope="module")
def plugins():
    """The three records registered (a plug-in's one step each), and removed again after this module's tests."""
    register_family(TOY_METRIC)
    register_method(TOY_METHOD)
    register_compression(TOY_COMPRESSION)
    yield
    unregister_compression(TOY_COMPRESSION)
    unregister_method(TOY_METHOD)
    unregister_family(TOY_METRIC)


@pytest.fixture(scope="module")
def plugin_run(plugins, tmp_path_factory):
    out = tmp_path_factory.mktemp("plugins")
    teacher = save_teacher(out / "teacher")
    config = demo_config(out / "runs", teacher, name="plugins", analyses=["bias_metrics", "attribution"])
    config["run"]["seeds"] = [0]
    config["compress"] = {"int8": {"orders": ["before"]}, "toyshrink": {"orders": ["before"], "scale": 0.25}}
    config["metrics"]["metrics"] = ["extrinsic", "counterfactual", "toy"]
    config["attribution"] |= {
        "variants": ["teacher-ft"],
        "extra_methods": ["toy"],
        "importance": False,
        "head_ig": False,
        "neuron_ig": False,
        "token_ig": False,
        "cumulative": False,
        "patching": False,
    }
    run_pipeline(config)
    return out / "runs" / "plugins"


def test_the_toy_metric_is_measured_and_compared_with_the_pretrained_teacher(plugin_run):
    bias = read_table(plugin_run / "tables" / "bias_metrics.parquet")
    assert (
        np.isfinite(bias[bias["metric"] == "toy_cls_norm"]["value"]).all()
        and len(bias.query("metric == 'toy_cls_norm'")) >= 3
    )
    comparisons = read_table(plugin_run / "tables" / "comparisons.parquet")
    toy = comparisons[comparisons["metric"] == "toy_cls_norm"]
    assert len(toy) and set(toy["reference"]) == {"teacher"} and set(toy["family"]) == {"intrinsic"}
    report = (plugin_run / "report" / "report.md").read_text()
    assert "toy_cls_norm" in report or "toy [CLS] norm" in report


def test_the_toy_method_writes_its_table_and_is_read_as_causal(plugin_run):
    table = read_table(plugin_run / "tables" / "toy_ablation.parquet")
    assert (table["unit"] == "head").sum() > 0
    units = read_table(plugin_run / "tables" / "bias_units.parquet")
    toy = units[units["method"] == "toy"]
    assert len(toy) and toy["causal"].all() and set(toy["direction"]) <= {"adds", "reduces", ""}


def test_the_toy_compression_is_planned_built_measured_and_compared(plugin_run):
    training = read_table(plugin_run / "tables" / "training.parquet")
    scale = training[(training["variant"] == "toyshrink-ft_before") & (training["metric"] == "toy_scale")]
    assert scale["value"].tolist() == [0.25]
    task = read_table(plugin_run / "tables" / "task_metrics.parquet")
    accuracy = task[task["metric"] == "accuracy"].set_index("variant")["value"]
    assert accuracy["toyshrink-ft_before"] == accuracy["teacher-ft"]  # a positive scale keeps every argmax
    comparisons = read_table(plugin_run / "tables" / "comparisons.parquet")
    toy = comparisons[comparisons["variant"] == "toyshrink-ft_before"]
    assert len(toy) and "teacher-ft" in set(toy["reference"])
    assert "toyshrink-ft_before" in (plugin_run / "report" / "report.md").read_text()
    assert method_markers()["toyshrink"] == "8"


def test_the_toy_compression_section_is_validated(plugins):
    from pipeline.runs.config import ConfigError, config_from_dict

    with pytest.raises(ConfigError, match="compress.toyshrink.scal"):
        config_from_dict({"run": {"name": "x"}, "compress": {"toyshrink": {"scal": 0.5}}})


def test_the_command_line_lists_and_runs_the_toy_command(plugins, plugin_run, tmp_path, capsys):
    from pipeline.cli.main import main

    assert main(["--help"]) == 0
    assert "toy-ablate" in capsys.readouterr().out
    model = plugin_run / "models" / "teacher-ft" / "seed0"
    out = tmp_path / "toy.parquet"
    assert main(["toy-ablate", "--model", str(model), "--data", "bug", "--n", "8", "--out", str(out)]) == 0
    assert (read_table(out)["unit"] == "head").any() and "top" in capsys.readouterr().out


def test_the_viewer_offers_the_toy_metric_and_the_toy_map(plugin_run):
    from viewer_helpers import open_app, show

    at = show(open_app(plugin_run.parent), "Overview")
    assert "toy [CLS] norm" in at.selectbox(key="bias_metric").options
    at = show(at, "Heads")
    assert "toy: Δ bias" in at.selectbox(key="head_metric").options
    assert not at.exception and "toyshrink-ft_before" in str(show(at, "Overview"))
