"""The viewer under ``streamlit.testing.v1.AppTest``: every tab on run folders written by ``pipeline.runs.run`` in the
test session (see ``conftest.py``): a full run, an empty one and a partial one (models and task metrics only)."""

from __future__ import annotations

import shutil

import pytest
import torch
from streamlit.testing.v1 import AppTest
from viewer_helpers import infos, open_app, show

from app import PAGES
from pipeline.data import GenderSwapper
from pipeline.gates import HeadGates, ones_gates
from pipeline.models import load_model
from pipeline.runs.runfolder import RunFolder
from pipeline.schema import read_table
from pipeline.viewer.viewer_overview import bias_metrics

# Written by the demo run of conftest.py: every variant with both seeds, except the untrained teacher (first seed).
ROWS = [
    ("teacher", 0),
    ("teacher-ft", 0),
    ("teacher-ft", 1),
    ("distil-ft_before", 0),
    ("distil-ft_before", 1),
    ("int8-ft_before", 0),
    ("int8-ft_before", 1),
]


@pytest.fixture(scope="module")
def demo_app(demo_run) -> AppTest:
    return open_app(demo_run.parent)


def _number(text: str) -> float:
    """The point value of a cell ``"0.137 [0.059, 0.32]"`` (or ``"(…)"`` for a model not fit to be read)."""
    return float(text.strip("()").split(" ")[0]) if text else float("nan")


def test_overview_shows_the_variant_table_and_the_compression_scatter(demo_app, demo_run):
    at = show(demo_app, "Overview")
    table = at.dataframe[0].value
    assert list(zip(table["variant"], table["seed"])) == ROWS
    assert {"accuracy", "macro-F1", "GAP_RMS", "cf gap", "cf flip rate", "mean |SEAT d|", "size (MB)"} <= set(table)
    assert table["order"].tolist() == ["none", "ft", "ft", "before", "before", "before", "before"]
    assert table["method"].tolist() == ["teacher"] * 3 + ["distil"] * 2 + ["int8"] * 2
    assert (table["accuracy"] != "").all() and (table["mean |SEAT d|"] != "").all()
    trained = table["variant"] != "teacher"  # the untrained head's task-dependent bias metrics are skipped
    assert (table.loc[trained, "GAP_RMS"] != "").all() and (table.loc[~trained, "GAP_RMS"] == "").all()
    size = table.set_index(["variant", "seed"])["size (MB)"].map(float)
    assert size["int8-ft_before", 0] < size["teacher-ft", 0] and size["distil-ft_before", 0] < size["teacher-ft", 0]
    written = read_table(demo_run / "tables" / "task_metrics.parquet").query("unit == 'model' and metric == 'accuracy'")
    assert sorted(table["accuracy"].map(_number)) == pytest.approx(sorted(written["value"]), abs=5e-4)
    assert len(at.image) == 1 and at.image[0].proto.imgs[0].caption.startswith("bias_vs_compression")
    assert {b.label for b in at.download_button} == {"PNG", "SVG", "CSV"}
    skipped = next(c.value for c in at.caption if c.value.startswith("Not computed"))
    assert "crows_stereo_pct (no MLM head" in skipped  # skipped metrics are named, with the reason
    assert "gap_rms (classifier head not trained" in skipped
    assert not at.info
    manifests = at.json  # the run's manifest, as the pipeline wrote it
    assert len(manifests) == 1 and '"task_metrics"' in manifests[0].proto.body


def test_heads_compares_variants_for_every_head_table(demo_app):
    at = show(demo_app, "Heads")
    effect = at.selectbox(key="head_metric")
    assert effect.options == [
        "ablation: Δ bias score",
        "ablation: Δ accuracy",
        "gradient importance",
        "integrated gradients",
        "patching: indirect effect",
    ]
    assert at.multiselect(key="compare").value == ["teacher-ft", "distil-ft_before", "int8-ft_before"]
    captions = [img.proto.imgs[0].caption for img in at.image]
    assert captions == [
        "heads_delta_score_compare",
        "heads_delta_score_teacher-ft",
        "cumulative_ablation",
        "layer_ablation",
    ]
    layers = next(d.value for d in at.dataframe if "depth (l+1)/L" in d.value)  # whole-layer ablation, per seed
    assert layers.groupby("variant")["layer"].nunique().to_dict() == {
        "teacher-ft": 4,
        "distil-ft_before": 2,
        "int8-ft_before": 4,
    }
    assert layers["Δ bias score when removed"].str.fullmatch(r"\S+ \[\S+, \S+\]").all()  # value [low, high]
    comparison = at.dataframe[-1].value
    assert {"gini", "entropy", "seed_spearman", "seed_topk_overlap", "align_spearman"} <= set(comparison["metric"])
    assert set(comparison.query("metric == 'align_spearman'")["teacher_layer"]) == {0, 2}  # distil: blocks 0, 2
    effect.set_value("integrated gradients").run()  # int8 has no gradients: its IG rows are skipped ones
    assert not at.exception and at.multiselect(key="compare").value == ["teacher-ft", "distil-ft_before"]
    effect.set_value("patching: indirect effect").run()
    assert not at.exception and at.image[0].proto.imgs[0].caption == "heads_indirect_effect_compare"


def test_neurons_lists_the_top_neurons_per_layer(demo_app):
    at = show(demo_app, "Neurons")
    assert len(at.image) == 1
    assert at.selectbox(key="neuron_variant").options == ["teacher-ft", "distil-ft_before"]  # int8: no gradients
    at.slider(key="neuron_k").set_value(3).run()
    table = at.dataframe[0].value
    assert set(table["variant"]) == {"teacher-ft"} and table["value"].notna().all()
    assert table.groupby(["seed", "layer"]).size().to_dict() == {(s, l): 3 for s in (0, 1) for l in range(4)}
    assert table["rank"].max() == 3  # ranked per seed and layer
    at.selectbox(key="neuron_variant").set_value("distil-ft_before").run()
    assert not at.exception and set(at.dataframe[0].value["layer"]) == {0, 1}


def test_tokens_draws_the_chosen_example(demo_app, demo_run):
    at = show(demo_app, "Tokens")
    assert at.selectbox(key="token_variant").value == "teacher-ft" and at.selectbox(key="token_seed").value == 0
    examples = at.selectbox(key="token_example:teacher-ft:0")  # keyed by model: its labels are that model's
    config = RunFolder(demo_run).manifest["config"]["attribution"]
    assert len(examples.options) == config["token_examples"] and len(at.image) == 1
    examples.select_index(len(examples.options) - 1).run()
    example, *facts = examples.options[-1].split(" · ")  # the example id, its class, gender and prediction, Σ
    assert [f.split(" ")[0] for f in facts] == ["label", "gender", "pred", "Σ"]
    assert not at.exception and at.image[0].proto.imgs[0].caption.endswith(f"ex{example}")
    rows = at.dataframe[0].value
    assert {str(v) for v in rows["example"]} == {example}
    assert set(rows["variant"]) == {"teacher-ft"} and set(rows["seed"]) == {0} and rows["value"].notna().all()
    at.selectbox(key="token_seed").set_value(1).run()
    assert not at.exception and at.image[0].proto.imgs[0].caption.startswith("tokens_teacher-ft_seed1_ex")


def test_tokens_offers_the_filters_the_table_has_columns_for(demo_app, demo_run):
    written = set(read_table(demo_run / "tables" / "token_ig.parquet").columns)
    assert {"label", "gender", "pred"} <= written  # the attribution stage writes them with each example
    at = show(demo_app, "Tokens")
    filters = {m.key for m in at.multiselect if m.key in ("token_label", "token_gender")}
    assert filters == {f"token_{c}" for c in ("label", "gender") if c in written}
    assert any(r.key == "token_correct" for r in at.radio) == ({"label", "pred"} <= written)
    lacking = [c for c in ("label", "gender", "pred") if c not in written]
    notes = [c.value for c in at.caption if c.value.startswith("token_ig has no")]
    if lacking:  # the note names exactly the columns the run did not write
        assert len(notes) == 1 and notes[0].startswith(f"token_ig has no {', '.join(lacking)} column,"), notes
    else:
        assert not notes


def test_tokens_of_a_variant_without_gradients_says_why_instead_of_failing(demo_run):
    at = show(open_app(demo_run.parent), "Tokens")
    assert "int8-ft_before" not in at.selectbox(key="token_variant").options  # only its skipped row exists
    notes = [c.value for c in at.caption if c.value.startswith("Not explained:")]
    assert len(notes) == 1 and "int8-ft_before (int8 model" in notes[0], notes
    assert not at.exception and not at.error, [e.value for e in at.error]


def test_overview_scatter_draws_every_bias_metric_offered(demo_run):
    at = show(open_app(demo_run.parent), "Overview")
    offered = at.selectbox(key="bias_metric").options  # readable names, not column names
    assert {"GAP_RMS (TPR gap)", "counterfactual gap", "counterfactual flip rate"} <= set(offered)
    for metric in [m for m, name in bias_metrics().items() if name in offered]:
        at.selectbox(key="bias_metric").set_value(metric).run()
        drawn = not any(w.value.startswith("Figure") for w in at.warning)  # (the not-fit notice is expected)
        assert not at.exception and drawn, (metric, [w.value for w in at.warning])
        assert [i.proto.imgs[0].caption for i in at.image] == [f"bias_vs_compression_{metric}"]


def test_probes_show_curves_head_maps_and_tables(demo_app):
    at = show(demo_app, "Probes")
    assert [img.proto.imgs[0].caption for img in at.image] == [
        "probe_curves_probe_accuracy",
        "probe_heads_teacher-ft",
        "probe_selectivity",
    ]
    assert len(at.dataframe) == 2  # control task (raw rows, under the selectivity plot), erasure (wide)
    control, erasure = (frame.value for frame in at.dataframe)
    assert {"selectivity", "control_accuracy"} <= set(control["metric"])
    assert set(control["variant"]) == set(erasure["variant"]) == {"teacher-ft", "distil-ft_before"}
    last = erasure.groupby("variant")["erased_layer"].unique().map(list).to_dict()  # erasure_layers = [-1]
    assert last == {"teacher-ft": [4], "distil-ft_before": [2]} and {"before", "after", "change"} <= set(erasure)
    at.selectbox(key="probe_variant").set_value("distil-ft_before").run()
    assert not at.exception and at.image[1].proto.imgs[0].caption == "probe_heads_distil-ft_before"
    at.selectbox(key="probe_metric").set_value("probe_auc").run()
    assert not at.exception and at.image[0].proto.imgs[0].caption == "probe_curves_probe_auc"


def test_playground_offers_every_saved_model_and_opens_on_a_trained_one(demo_app, demo_run):
    at = show(demo_app, "Playground")
    model = at.selectbox(key="play_model")
    fitness = read_table(demo_run / "tables" / "fitness.parquet").drop_duplicates(["variant", "seed"])
    fit = {(v, s): bool(f) for v, s, f in zip(fitness["variant"], fitness["seed"], fitness["fit"])}
    trained = [(v, s) for v, s in ROWS if v != "teacher"]
    trained = [f"{v} (seed {s})" for v, s in trained if fit[v, s]] + [
        f"{v} (seed {s}) — not fit to be read" for v, s in trained if not fit[v, s]
    ]  # fit ones first
    assert model.options == [*trained, "teacher (seed 0) — untrained head"]
    assert model.value[1:] == next((v, s) for v, s in ROWS if v != "teacher" and (fit[v, s] or not any(fit.values())))
    assert not at.warning
    model.set_value((model.value[0], "teacher", 0)).run()
    assert "never trained on the task" in at.warning[0].value


def _heads_off(at: AppTest) -> str:
    return next(c.value for c in at.caption if "heads off" in c.value)


@pytest.mark.parametrize(
    ("variant", "seed", "n_layers"), [("teacher-ft", 0, 4), ("distil-ft_before", 1, 2), ("int8-ft_before", 0, 4)]
)
def test_playground_switches_heads_off_as_the_gates_do(demo_app, demo_run, variant, seed, n_layers):
    at = show(demo_app, "Playground")
    at.selectbox(key="play_model").set_value((at.selectbox(key="play_model").value[0], variant, seed)).run()
    assert not at.exception and at.selectbox(key="play_model").value[1:] == (variant, seed)
    boxes = [c for c in at.checkbox if c.key.startswith("gate:") and f":{variant}:{seed}:" in c.key]
    assert len(boxes) == n_layers * 4 and all(c.value for c in boxes)  # layers x 4 heads, all on
    full = at.dataframe[0].value
    assert (full["P(text)"] == full["P(text), all heads"]).all()
    for box in boxes[:4]:  # layer 0 off
        box.uncheck()
    at.run()
    assert not at.exception and f"4 of {n_layers * 4} heads off" in _heads_off(at)
    table = at.dataframe[0].value

    loaded = load_model(demo_run / "models" / variant / f"seed{seed}", head="classifier")
    assert table["class"].tolist() == RunFolder(demo_run).manifest["label_names"]
    text = at.text_input(key="play_text").value
    gates = ones_gates(loaded.anatomy)
    gates[0] = 0
    with torch.no_grad():
        texts = loaded.tokenize([text, GenderSwapper.from_winobias().swap(text)])
        intact = loaded.model(**texts).logits.softmax(-1)
        with HeadGates(loaded.anatomy, gates):
            expected = loaded.model(**texts).logits.softmax(-1)
    assert not torch.allclose(intact, expected, atol=1e-4)  # switching layer 0 off changes the prediction
    torch.testing.assert_close(torch.tensor(full["P(text), all heads"].to_numpy()), intact[0])
    torch.testing.assert_close(torch.tensor(table["P(text), all heads"].to_numpy()), intact[0])
    torch.testing.assert_close(torch.tensor(table["P(text)"].to_numpy()), expected[0])
    torch.testing.assert_close(torch.tensor(table["P(twin)"].to_numpy()), expected[1])
    pred = int(expected[0].argmax())
    assert at.metric[0].value == loaded.model.config.id2label[pred]
    gap = at.metric[1].value
    assert float(gap) == pytest.approx(float(expected[0, pred] - expected[1, pred]), abs=1e-3)
    for box in [c for c in at.checkbox if c.key in {b.key for b in boxes[:4]}]:  # back on: the intact model again
        assert not box.value
        box.check()
    at.run()
    assert not at.exception and f"0 of {n_layers * 4} heads off" in _heads_off(at)
    torch.testing.assert_close(torch.tensor(at.dataframe[0].value["P(text)"].to_numpy()), intact[0])


@pytest.mark.parametrize(
    ("page", "tables"),
    [
        ("Overview", ["task_metrics", "bias_metrics"]),
        ("Heads", ["head_ablation", "head_importance", "head_ig", "patching"]),
        ("Neurons", ["neuron_ig"]),
        ("Tokens", ["token_ig"]),
        ("Probes", ["probes_layers", "probes_heads", "probes_control", "erasure"]),
        ("Playground", []),  # "No saved model ... (run `python -m pipeline run CONFIG`)"
        ("Head inspector", []),
        ("Findings", []),  # "Run 'empty' has no tables yet: run `bias-atlas run CONFIG` ..."
    ],
)
def test_empty_run_names_every_missing_table_and_how_to_produce_it(empty_run, page, tables):
    at = show(open_app(empty_run.parent), page)
    text = infos(at)
    for table in tables:
        assert f"{table} is missing from run 'empty'" in text
    assert "bias-atlas run" in text and not at.image
    if page in ("Playground", "Head inspector"):
        assert "No saved model" in text and not at.checkbox


def test_partial_run_shows_what_it_has_and_names_the_rest(partial_run):
    """``run.analyses = []``: the models and their task metrics, no bias metrics, attribution or probes."""
    stages = set(RunFolder(partial_run).manifest["stages"])  # (+ the findings of what there is)
    assert {"build", "task_metrics"} <= stages <= {"build", "task_metrics", "findings"}
    at = show(open_app(partial_run.parent), "Overview")
    table = at.dataframe[0].value
    assert list(zip(table["variant"], table["seed"])) == ROWS and (table["accuracy"] != "").all()
    assert not {"GAP_RMS", "cf gap", "mean |SEAT d|"} & set(table)  # columns no table fills are left out
    assert "bias_metrics is missing from run 'partial'" in infos(at) and not at.image
    assert "task_metrics is missing" not in infos(at)
    text = infos(show(at, "Heads"))
    assert (
        all(
            f"{t} is missing from run 'partial'" in text
            for t in ("head_ablation", "head_importance", "head_ig", "patching")
        )
        and not at.image
    )
    assert "neuron_ig is missing" in infos(show(at, "Neurons")) and not at.image
    assert "token_ig is missing" in infos(show(at, "Tokens")) and not at.image
    text = infos(show(at, "Probes"))
    assert all(f"{t} is missing" in text for t in ("probes_layers", "probes_heads", "probes_control", "erasure"))
    at = show(at, "Playground")  # the models are saved, so the playground works
    assert not at.info and len([c for c in at.checkbox if c.key.startswith("gate:")]) == 16
    assert at.dataframe[0].value["P(text)"].sum() == pytest.approx(1.0, abs=1e-5)


def test_missing_or_empty_runs_folder_says_what_to_do(tmp_path):
    at = open_app(tmp_path / "absent")
    assert not at.exception and "does not exist" in infos(at) and "bias-atlas run" in infos(at)
    at = open_app(tmp_path)
    assert not at.exception and "No run folders under" in infos(at)


def test_page_names_are_the_tabs(demo_app):
    assert [t.label for t in demo_app.tabs] == list(PAGES)


def test_several_runs_are_compared_with_run_prefixed_variants(demo_run, partial_run, tmp_path):
    for name, run in (("demo", demo_run), ("partial", partial_run)):  # copies: links out of the root are not listed
        shutil.copytree(run, tmp_path / name, ignore=shutil.ignore_patterns(".cache"))
    at = open_app(tmp_path)
    at.multiselect(key=f"runs:{tmp_path}").set_value([str(tmp_path / "demo"), str(tmp_path / "partial")]).run()
    at = show(at, "Overview")
    shown = list(zip(at.dataframe[0].value["variant"], at.dataframe[0].value["seed"]))
    variants = dict.fromkeys(v for v, _ in ROWS)  # in order; each run's rows of a variant side by side
    assert shown == [(f"{run}/{v}", s) for v in variants for run in ("demo", "partial") for v2, s in ROWS if v2 == v]
    assert "bias_metrics is missing from run 'partial'" in infos(at)  # the demo run has it; the partial one not
    assert len(at.image) == 1
