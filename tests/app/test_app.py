"""The viewer under ``streamlit.testing.v1.AppTest``: every tab on a full, an empty and a partial run folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from app import PAGES, RUNS_ENV
from pipeline.data import GenderSwapper
from pipeline.gates import HeadGates, ones_gates
from pipeline.models import load_model

APP = str(Path(__file__).resolve().parents[2] / "app.py")


def open_app(root: Path) -> AppTest:
    """A fresh app whose runs folder is ``root`` (read from the environment on the first run)."""
    previous = os.environ.get(RUNS_ENV)
    os.environ[RUNS_ENV] = str(root)
    try:
        return AppTest.from_file(APP, default_timeout=120).run()
    finally:
        os.environ.pop(RUNS_ENV) if previous is None else os.environ.__setitem__(RUNS_ENV, previous)


def show(at: AppTest, page: str) -> AppTest:
    at.session_state["page"] = page
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def infos(at: AppTest) -> str:
    return "\n".join(i.value for i in at.info)


@pytest.fixture(scope="module")
def demo_app(demo_run) -> AppTest:
    return open_app(demo_run.parent)


def test_overview_shows_the_variant_table_and_the_compression_scatter(demo_app):
    at = show(demo_app, "Overview")
    table = at.dataframe[0].value
    assert table["variant"].tolist() == ["teacher-ft", "teacher-ft", "distil-ft_before"]
    assert {"accuracy", "gap_rms", "gap_rms_lo", "gap_rms_hi", "cf_gap", "seat_abs_d", "size_mb"} <= set(table)
    assert table["order"].tolist() == ["ft", "ft", "before"]
    assert len(at.image) == 1 and at.image[0].proto.imgs[0].caption.startswith("bias_vs_compression")
    assert {b.label for b in at.download_button} == {"PNG", "SVG", "CSV"}
    assert "crows_stereo_pct (no MLM head" in at.caption[0].value  # skipped metrics are named, with the reason
    assert not at.info


def test_heads_compares_variants_for_every_head_table(demo_app):
    at = show(demo_app, "Heads")
    effect = at.selectbox(key="head_metric")
    assert effect.options == ["ablation: Δ bias score", "ablation: Δ accuracy", "gradient importance",
                              "integrated gradients", "patching: indirect effect"]
    assert at.multiselect(key="compare").value == ["teacher-ft", "distil-ft_before"]
    captions = [img.proto.imgs[0].caption for img in at.image]
    assert captions == ["heads_delta_score_compare", "heads_delta_score_teacher-ft", "cumulative_ablation"]
    comparison = at.dataframe[-1].value
    assert {"gini", "entropy", "seed_spearman"} <= set(comparison["metric"])
    effect.set_value("patching: indirect effect").run()
    assert not at.exception and at.image[0].proto.imgs[0].caption == "heads_indirect_effect_compare"


def test_neurons_lists_the_top_neurons_per_layer(demo_app):
    at = show(demo_app, "Neurons")
    assert len(at.image) == 1
    at.slider(key="neuron_k").set_value(3).run()
    table = at.dataframe[0].value
    assert table.groupby(["seed", "layer"]).size().max() == 3 and table["rank"].max() == 3  # ranked per seed
    assert not at.exception


def test_tokens_draws_the_chosen_example(demo_app, demo_run):
    at = show(demo_app, "Tokens")
    examples = at.selectbox(key="token_example")
    assert len(examples.options) == 3 and len(at.image) == 1
    examples.set_value(examples.options[-1]).run()
    assert not at.exception and at.image[0].proto.imgs[0].caption.endswith(f"ex{examples.value}")
    assert {str(v) for v in at.dataframe[0].value["example"]} == {str(examples.value)}


def test_probes_show_curves_head_maps_and_tables(demo_app):
    at = show(demo_app, "Probes")
    assert [img.proto.imgs[0].caption for img in at.image] == ["probe_curves_probe_accuracy",
                                                                "probe_heads_teacher-ft"]
    assert len(at.dataframe) == 2  # control task, erasure
    at.selectbox(key="probe_metric").set_value("probe_auc").run()
    assert not at.exception and at.image[0].proto.imgs[0].caption == "probe_curves_probe_auc"


def test_playground_switches_heads_off_as_the_gates_do(demo_app, demo_run):
    at = show(demo_app, "Playground")
    assert at.selectbox(key="play_model").value[1:] == ("teacher-ft", 0)
    boxes = [c for c in at.checkbox if c.key.startswith("gate:")]
    assert len(boxes) == 16 and all(c.value for c in boxes)  # 4 layers x 4 heads, all on
    full = at.dataframe[0].value
    assert (full["P(text)"] == full["P(text), all heads"]).all()
    for box in boxes[:4]:  # layer 0 off
        box.uncheck()
    at.run()
    assert not at.exception and "4 of 16 heads off" in at.caption[-1].value
    table = at.dataframe[0].value

    loaded = load_model(demo_run / "models" / "teacher-ft" / "seed0", head="classifier")
    text = at.text_input(key="play_text").value
    gates = ones_gates(loaded.anatomy)
    gates[0] = 0
    with torch.no_grad(), HeadGates(loaded.anatomy, gates):
        expected = loaded.model(**loaded.tokenize([text, GenderSwapper.from_winobias().swap(text)])).logits.softmax(-1)
    torch.testing.assert_close(torch.tensor(table["P(text)"].to_numpy()), expected[0])
    torch.testing.assert_close(torch.tensor(table["P(twin)"].to_numpy()), expected[1])
    pred = int(expected[0].argmax())
    gap = at.metric[1].value
    assert float(gap) == pytest.approx(float(expected[0, pred] - expected[1, pred]), abs=1e-3)


@pytest.mark.parametrize(("page", "tables"), [
    ("Overview", ["task_metrics", "bias_metrics"]),
    ("Heads", ["head_ablation", "head_importance", "head_ig", "patching"]),
    ("Neurons", ["neuron_ig"]),
    ("Tokens", ["token_ig"]),
    ("Probes", ["probes_layers", "probes_heads", "probes_control", "erasure"]),
])
def test_empty_run_names_every_missing_table_and_how_to_produce_it(empty_run, page, tables):
    at = show(open_app(empty_run.parent), page)
    text = infos(at)
    for table in tables:
        assert f"{table} is missing from run 'empty'" in text
    assert "python -m pipeline run" in text and not at.image


def test_partial_run_shows_what_it_has_and_names_the_rest(partial_run):
    at = show(open_app(partial_run.parent), "Overview")
    assert at.dataframe[0].value["accuracy"].notna().all()
    assert "bias_metrics is missing from run 'partial'" in infos(at) and not at.image
    assert "head_ablation is missing" in infos(show(at, "Heads"))
    assert "No saved model" in infos(show(at, "Playground"))


def test_missing_or_empty_runs_folder_says_what_to_do(tmp_path):
    at = open_app(tmp_path / "absent")
    assert not at.exception and "does not exist" in infos(at) and "python -m pipeline run" in infos(at)
    at = open_app(tmp_path)
    assert not at.exception and "No run folders under" in infos(at)


def test_page_names_are_the_tabs(demo_app):
    assert [t.label for t in demo_app.tabs] == list(PAGES)


def test_several_runs_are_compared_with_run_prefixed_variants(demo_run, partial_run, tmp_path):
    (tmp_path / "demo").symlink_to(demo_run)
    (tmp_path / "partial").symlink_to(partial_run)
    at = open_app(tmp_path)
    at.multiselect(key=f"runs:{tmp_path}").set_value([str(tmp_path / "demo"), str(tmp_path / "partial")]).run()
    at = show(at, "Overview")
    assert at.dataframe[0].value["variant"].tolist() == [
        "demo/teacher-ft", "demo/teacher-ft", "partial/teacher-ft", "partial/teacher-ft", "demo/distil-ft_before",
        "partial/distil-ft_before"]
    assert "bias_metrics is missing from run 'partial'" in infos(at)  # the demo run has it; the partial one not
    assert len(at.image) == 1
