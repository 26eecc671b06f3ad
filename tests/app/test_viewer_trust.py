"""What a researcher must be able to trust at a glance (issue #16), under AppTest on the test session's runs: models
not fit to be read are flagged wherever they appear, the overview shows intervals in one column, token labels follow
the model, colour scales can be shared, the head inspector shows a head's numbers, counterpart and attention, and the
Findings page answers the research questions."""

from __future__ import annotations

import re
import shutil

import pandas as pd
import pytest
from viewer_helpers import infos, open_app, show

from pipeline.figures import plots
from pipeline.figures.style import GREY
from pipeline.findings.compute import FINDINGS
from pipeline.findings.model_status import flags_by_point, model_status
from pipeline.report.run_report import SECTIONS
from pipeline.runs.runfolder import RunFolder
from pipeline.schema import read_table, write_table

INTERVAL = re.compile(r"^\(?-?[\d.e+-]+( \[-?[\d.e+-]+, -?[\d.e+-]+\])?\)?$")


@pytest.fixture(scope="module")
def demo_app(demo_run):
    return open_app(demo_run.parent)


@pytest.fixture(scope="module")
def collapsed_app(collapsed_run):
    return open_app(collapsed_run.parent)


def _warnings(at) -> str:
    return "\n".join(w.value for w in at.warning)


def test_the_untrained_teacher_and_weak_models_are_flagged_on_the_overview(demo_app):
    at = show(demo_app, "Overview")
    assert "**teacher** (untrained head)" in _warnings(at)
    warned = next(w.value for w in at.warning if w.value.startswith("Not fit to be read"))
    assert "Untrained head:" in warned and "Collapsed:" not in warned  # only the reasons that apply are explained
    table = at.dataframe[0].value.set_index(["variant", "seed"])
    assert table.loc[("teacher", 0), "fit to read"] == "✗ untrained head"
    fitness = read_table(RunFolder(at.session_state["runs_root"]).path / "demo" / "tables" / "fitness.parquet")
    fit = fitness.drop_duplicates(["variant", "seed"]).set_index(["variant", "seed"])["fit"]
    for key, ok in fit.items():  # the findings stage's verdict, row by row
        assert table.loc[key, "fit to read"].startswith("✓" if ok else "✗")
        if not ok and table.loc[key, "GAP_RMS"]:  # fairness numbers of unfit models are in parentheses
            assert table.loc[key, "GAP_RMS"].startswith("(")


def test_a_collapsed_model_is_found_without_the_findings_tables_and_flagged_on_every_page(collapsed_app, collapsed_run):
    run = RunFolder(collapsed_run)
    assert not run.has("fitness")
    status = model_status(None, run.table("task_metrics"), run.table("predictions")).set_index(["variant", "seed"])
    assert status.loc[("int8-ft_before", 0), "status"] == "collapsed"
    assert status.loc[("int8-ft_before", 0), "top_prediction_share"] == pytest.approx(47 / 48)
    assert status.loc[("teacher", 0), "status"] == "untrained"
    at = show(collapsed_app, "Overview")
    assert "**int8-ft_before** (collapsed (98% in one class)" in _warnings(at)
    assert "Collapsed: it predicts one class" in _warnings(at)
    table = at.dataframe[0].value.set_index(["variant", "seed"])
    assert table.loc[("int8-ft_before", 0), "fit to read"] == "✗ collapsed (98% in one class)"
    for page in ("Heads", "Probes"):  # int8 is attributed (heads), not probed
        warned = "int8-ft_before" in _warnings(show(collapsed_app, page))
        assert warned == (page == "Heads"), page


def test_the_scatter_greys_models_not_fit_to_be_read(collapsed_run):
    run = RunFolder(collapsed_run)
    flags = flags_by_point(model_status(None, run.table("task_metrics"), run.table("predictions")))
    fig = plots.bias_vs_compression(run.table("task_metrics"), run.table("bias_metrics"), flags=flags)
    size_ax = fig.axes[0]
    colours = {
        (round(line.get_xdata()[0], 6), round(line.get_ydata()[0], 6)): line.get_color()
        for line in size_ax.get_lines()
        if line.get_marker() not in ("None", "", None, "|", "_")
    }
    assert GREY in colours.values()
    labels = [t.get_text() for t in size_ax.texts]
    assert "int8-ft_before s0 (not fit)" in labels and "teacher-ft s0 (not fit)" in labels
    assert any(t.get_text() == "grey: not fit to be read" for t in fig.legends[0].get_texts())


def test_overview_shows_intervals_in_one_column_drops_empty_ones_and_adds_macro_f1(demo_app):
    table = show(demo_app, "Overview").dataframe[0].value
    for column in ("accuracy", "GAP_RMS", "cf gap", "cf flip rate"):
        cells = [c for c in table[column] if c]
        assert cells and all(INTERVAL.match(c) for c in cells), (column, cells)
        assert any("[" in c for c in cells), column  # with their interval
    assert "macro-F1" in table and not {"CrowS %", "StereoSet SS"} & set(table)  # no MLM head: no value at all


def test_tokens_example_labels_follow_the_model_and_name_the_gender(collapsed_app, collapsed_run):
    at = show(collapsed_app, "Tokens")
    teacher = at.selectbox(key="token_example:teacher-ft:0").options
    assert all(" · gender female · " in o or " · gender male · " in o for o in teacher)  # names, not 0.0 / 1.0
    at.selectbox(key="token_variant").set_value("distil-ft_before").run()
    assert not at.exception
    distil = at.selectbox(key="token_example:distil-ft_before:0").options  # its own box, with its own predictions
    assert all(" · pred person · " in o for o in distil) and not any(" · pred person · " in o for o in teacher)
    assert at.image[0].proto.imgs[0].caption.startswith("tokens_distil-ft_before_seed0_ex")


@pytest.mark.parametrize("rule", ["largest", "wrong", "gender"])
def test_tokens_examples_follow_the_chosen_rule(demo_app, demo_run, rule):
    at = show(demo_app, "Tokens")
    at.radio(key="token_order").set_value(rule).run()
    options = at.selectbox(key="token_example:teacher-ft:0").options
    facts = [dict(f.split(" ", 1) for f in o.split(" · ")[1:]) for o in options]
    if rule == "largest":
        sums = [abs(float(f["Σ"])) for f in facts]
        assert sums == sorted(sums, reverse=True)
    elif rule == "wrong":
        wrong = [f["label"] != f["pred"] for f in facts]
        assert wrong == sorted(wrong, reverse=True)
    else:
        female = [f["gender"] == "female" for f in facts]
        assert female == sorted(female, reverse=True)


def test_heads_offer_a_shared_absolute_scale_and_one_per_map(demo_app):
    at = show(demo_app, "Heads")
    scale = at.radio(key="head_scale")
    assert scale.value == "shared" and set(scale.options) >= {"one absolute scale for all maps (compare magnitudes)"}
    shared = at.image[0].proto.imgs[0].url
    scale.set_value("panel").run()
    assert not at.exception and at.image[0].proto.imgs[0].url != shared  # another figure
    noise = at.dataframe[0].value
    assert {"intervals excluding 0", "expected by chance (5%)", "q < 0.05", "carry bias"} <= set(noise)
    top = at.dataframe[1].value
    assert {"interval", "p", "q", "significant", "carries bias", "n"} <= set(top) and (top["n"] == 12).all()


def test_tokens_compare_models_on_one_scale_by_default(demo_app):
    at = show(demo_app, "Tokens")
    assert not at.checkbox(key="token_shared:False").value  # one model: its own scale
    at.multiselect(key="token_compare").set_value(["distil-ft_before"]).run()
    assert not at.exception and at.checkbox(key="token_shared:True").value
    assert [i.proto.imgs[0].caption.split("_seed")[0] for i in at.image] == [
        "tokens_teacher-ft",
        "tokens_distil-ft_before",
    ]


def test_head_inspector_shows_a_heads_numbers_counterpart_and_attention(demo_app, demo_run):
    at = show(demo_app, "Head inspector")
    assert at.selectbox(key="inspect_model").value[1:] == ("teacher-ft", 0)
    at.selectbox(key="inspect_layer").set_value(2).run()
    at.selectbox(key="inspect_head").set_value(1).run()
    assert not at.exception
    profile = at.dataframe[0].value
    assert set(profile["measure"]) >= {
        "ablation: Δ bias score",
        "patching: indirect effect",
        "integrated gradients",
        "gradient importance",
        "gender probe accuracy (mean pooling)",  # the test run probes mean-pooled head outputs only
    }
    written = read_table(demo_run / "tables" / "head_ablation.parquet").query(
        "variant == 'teacher-ft' and seed == 0 and unit == 'head' and layer == 2 and head == 1 "
        "and metric == 'delta_score' and mode == 'single'"
    )
    row = profile[profile["measure"] == "ablation: Δ bias score"].iloc[0]
    assert row["value"] == pytest.approx(written["value"].iloc[0]) and row["interval"].count("[") == 1
    counterpart = next(m.value for m in at.markdown if m.value.startswith("**Counterpart**"))
    assert "distil-ft_before layer 1" in counterpart  # distil block 1 was initialised from teacher block 2
    assert at.image[0].proto.imgs[0].caption == "attention_teacher-ft_L2H1"
    attended = at.dataframe[-1].value
    assert len(attended) > 0 and attended["mean attention received"].is_monotonic_decreasing
    model = at.selectbox(key="inspect_model")
    model.set_value((model.value[0], "distil-ft_before", 0)).run()
    at.selectbox(key="inspect_layer").set_value(1).run()
    counterpart = next(m.value for m in at.markdown if m.value.startswith("**Counterpart**"))
    assert not at.exception and "teacher-ft layer 2" in counterpart


def test_findings_page_answers_each_question_from_the_stored_tables(demo_app):
    at = show(demo_app, "Findings")
    titles = [h.value for h in at.subheader]
    assert titles[0] == "Models fit to be read" and len(titles) == len(SECTIONS) + 1  # as in `bias-atlas report`
    assert [t.split(" ")[0] for t in titles[1:-1]] == [f"RQ{i}" for i in range(1, len(SECTIONS))]
    assert titles[-1] == "Glossary"
    assert len(at.info) == len(titles)  # one answer each
    assert "has no findings tables" not in infos(at)
    assert len(at.dataframe) >= len(titles)  # the run header and the table behind each answer


def test_findings_page_computes_what_the_findings_stage_did_not_write_and_says_so(collapsed_app, collapsed_run):
    run = RunFolder(collapsed_run)
    at = show(collapsed_app, "Findings")
    text = infos(at)
    assert "has no findings tables" in text and "`findings` stage of `bias-atlas run CONFIG`" in text
    assert [h.value.split(" ")[0] for h in at.subheader][1:-1] == [f"RQ{i}" for i in range(1, len(SECTIONS))]
    assert not any(run.has(f.name) for f in FINDINGS)  # nothing was written into the run


def test_playground_labels_heads_with_their_effect_and_compares_models(demo_app):
    at = show(demo_app, "Playground")
    gates = [c for c in at.checkbox if c.key.startswith("gate:") and ":teacher-ft:0:" in c.key]
    assert gates and all(re.fullmatch(r":(red|blue|gray)\[[+-][\d.e+-]+\]", c.label) for c in gates)
    models = pd.DataFrame(next(d.value for d in at.dataframe if "prediction" in d.value))
    assert {"teacher-ft", "distil-ft_before", "int8-ft_before"} <= set(models["model"])
    captions = [i.proto.imgs[0].caption for i in at.image]
    assert "play_tokens_teacher-ft_seed0" in captions and "play_tokens_distil-ft_before_seed0" in captions


def test_playground_opens_on_a_model_fit_to_be_read(demo_run, tmp_path):
    run = tmp_path / "runs" / "demo"
    shutil.copytree(demo_run, run, ignore=shutil.ignore_patterns(".cache"))
    fitness = read_table(run / "tables" / "fitness.parquet")
    fitness["fit"] = (fitness["variant"] == "distil-ft_before") & (fitness["seed"] == 1)
    write_table(fitness, run / "tables" / "fitness.parquet")
    at = show(open_app(run.parent), "Playground")
    model = at.selectbox(key="play_model")
    assert model.value[1:] == ("distil-ft_before", 1) and model.options[0] == "distil-ft_before (seed 1)"
    assert model.options[1].endswith(" — not fit to be read")
