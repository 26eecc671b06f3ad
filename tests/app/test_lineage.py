"""The Head inspector's signed lineage of a head (issue #28, round 2): the head in the teacher and its counterparts
with the findings' directions, and the buttons that open a counterpart in the inspector and the Playground."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from figure_layout import layout_problems
from viewer_helpers import open_app, show

from pipeline.figures import plots
from pipeline.schema import read_table
from pipeline.viewer import widgets
from pipeline.viewer.viewer_lineage import LINEAGE_COLUMNS, largest_gaps, lineage


@pytest.fixture(scope="module")
def units(demo_run) -> pd.DataFrame:
    return read_table(demo_run / "tables" / "bias_units.parquet")


def _expected(units: pd.DataFrame, variant: str, layer: int, head: int) -> pd.DataFrame:
    rows = units.query("variant == @variant and seed == 0 and unit == 'head' and layer == @layer and head == @head")
    return rows.sort_values("method").reset_index(drop=True)


def test_the_lineage_lists_the_teacher_and_the_student_through_its_layer_map(units, demo_run):
    rows = lineage(units, demo_run, "teacher-ft", 0, 2, 1)
    assert list(rows.columns) == LINEAGE_COLUMNS and rows["relation"].iloc[0] == "teacher"
    for variant, layer in (("teacher-ft", 2), ("distil-ft_before", 1)):  # distil block 1 comes from teacher block 2
        mine = rows[rows["variant"] == variant].sort_values("method").reset_index(drop=True)
        expected = _expected(units, variant, layer, 1)
        assert len(mine) == len(expected) > 0 and (mine["layer"] == layer).all()
        for column in ("method", "value", "ci_low", "ci_high", "q", "direction"):
            assert mine[column].tolist() == expected[column].tolist(), column
    assert set(rows["direction"]) <= {"adds", "reduces", ""}
    assert set(rows.loc[rows["variant"] == "distil-ft_before", "relation"]) == {"student (layer map)"}
    from_student = lineage(units, demo_run, "distil-ft_before", 0, 1, 1)
    assert from_student.sort_values(["variant", "method"]).equals(rows.sort_values(["variant", "method"]))
    unmapped = lineage(units, demo_run, "teacher-ft", 0, 1, 1)  # teacher block 1 has no student block
    assert "distil-ft_before" not in set(unmapped["variant"]) and len(unmapped)
    assert lineage(None, demo_run, "teacher-ft", 0, 2, 1).empty


def test_the_largest_gaps_are_the_models_largest_counterfactual_gaps(demo_run):
    texts = widgets.test_split(str(demo_run)).texts
    cf = read_table(demo_run / "tables" / "counterfactual_examples.parquet")
    gaps = largest_gaps(cf, texts, "distil-ft_before", 0)
    rows = cf.query("variant == 'distil-ft_before' and seed == 0 and metric == 'cf_prob_gap'")
    rows = rows[rows["subset"].fillna("").replace("", "all") == "all"]
    top = rows["value"].abs().sort_values(ascending=False).head(len(gaps))
    assert len(gaps) == 5 and np.allclose(gaps["gap"].abs(), top.to_numpy())
    assert gaps["text"].tolist() == [texts[i] for i in gaps["example"]]


def test_the_lineage_chart_fits_its_canvas():
    n = 24
    fig = plots.lineage_effects(
        [f"distil-ft_before L{i % 6} patching" for i in range(n)],
        np.linspace(-1, 1, n),
        np.linspace(-1.5, 0.5, n),
        np.linspace(-0.5, 1.5, n),
        ["adds", "reduces", ""] * (n // 3),
        title="head 3: effect per model",
    )
    assert layout_problems(fig) == []
    assert tuple(fig.get_size_inches()) == plots.FIGURE_SIZES["lineage_effects"]


def test_the_lineage_buttons_open_the_inspector_and_the_playground(demo_run, units):
    at = show(open_app(demo_run.parent), "Head inspector")
    at.selectbox(key="inspect_layer").set_value(2).run()
    at.selectbox(key="inspect_head").set_value(1).run()
    assert not any(i.proto.imgs[0].caption.startswith("lineage_") for i in at.image)  # off until asked for
    at.toggle(key="lineage_show").set_value(True).run()
    shown = next(d.value for d in at.dataframe if "relation" in d.value)
    assert {"teacher-ft", "distil-ft_before"} <= set(shown["variant"])
    assert any(i.proto.imgs[0].caption == "lineage_teacher-ft_L2H1" for i in at.image)
    at.selectbox(key="lineage_pick").set_value(("distil-ft_before", 1)).run()
    sentence = at.selectbox(key="lineage_sentence")
    texts = widgets.test_split(str(demo_run)).texts
    cf = read_table(demo_run / "tables" / "counterfactual_examples.parquet")
    expected = largest_gaps(cf, texts, "distil-ft_before", 0)
    assert sentence.options[0].startswith(f"gap {expected['gap'].iloc[0]:+.3g}")
    at.button(key="lineage_play").click().run()
    assert not at.exception and at.session_state["page"] == "Playground"
    assert at.text_input(key="play_text").value == expected["text"].iloc[0]
    at = show(open_app(demo_run.parent), "Head inspector")
    at.selectbox(key="inspect_layer").set_value(2).run()
    at.selectbox(key="inspect_head").set_value(1).run()
    at.toggle(key="lineage_show").set_value(True).run()
    at.selectbox(key="lineage_pick").set_value(("distil-ft_before", 1)).run()
    at.button(key="lineage_inspect").click().run()
    assert not at.exception and at.session_state["page"] == "Head inspector"
    assert at.selectbox(key="inspect_model").value[1:] == ("distil-ft_before", 0)
    assert (at.selectbox(key="inspect_layer").value, at.selectbox(key="inspect_head").value) == (1, 1)
