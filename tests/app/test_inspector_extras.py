"""The Head inspector's jump to the heads that carry bias, its labelled probe rows and the minimum count of "attends
to most", and p-values written as text wherever the viewer shows a table (issue #28, item 6)."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from viewer_helpers import open_app, show

from pipeline.report.claims import p_text
from pipeline.schema import read_table, write_table
from pipeline.viewer.viewer_data import p_columns_as_text

CARRIERS = {(1, 2): ("ablation", 0.4), (3, 0): ("patching", 0.25)}  # (layer, head) -> (method, share)


@pytest.fixture(scope="module")
def flagged_run(tmp_path_factory, demo_run):
    """The demo run with two heads of teacher-ft seed 0 carrying bias (findings ``bias_units``)."""
    run_dir = tmp_path_factory.mktemp("runs_flagged") / "flagged"
    shutil.copytree(demo_run, run_dir, ignore=shutil.ignore_patterns(".cache"))
    units = read_table(run_dir / "tables" / "bias_units.parquet")
    units["carries"] = False
    for (layer, head), (method, share) in CARRIERS.items():
        hit = (
            (units["variant"] == "teacher-ft")
            & (units["seed"] == 0)
            & (units["unit"] == "head")
            & (units["layer"] == layer)
            & (units["head"] == head)
            & (units["method"] == method)
        )
        assert hit.any(), (layer, head, method)
        units.loc[hit, ["carries", "share"]] = [True, share]
    write_table(units, run_dir / "tables" / "bias_units.parquet")
    return run_dir


def test_the_inspector_jumps_to_the_heads_that_carry_bias(flagged_run):
    at = show(open_app(flagged_run.parent), "Head inspector")
    assert at.selectbox(key="inspect_model").value[1:] == ("teacher-ft", 0)
    jump = at.selectbox(key="inspect_jump")
    assert jump.value is None and jump.options == [
        "layer 1, head 2: ablation 40%",
        "layer 3, head 0: patching 25%",
    ]  # largest share first
    jump.set_value((3, 0)).run()
    assert not at.exception
    assert (at.selectbox(key="inspect_layer").value, at.selectbox(key="inspect_head").value) == (3, 0)
    assert at.selectbox(key="inspect_jump").value is None  # an action: the picker empties again
    assert at.subheader[0].value.endswith("layer 3, head 0")
    model = at.selectbox(key="inspect_model")
    model.set_value((model.value[0], "distil-ft_before", 0)).run()
    assert not at.exception and not any(s.key == "inspect_jump" for s in at.selectbox)  # no carrier: no picker


def test_probe_rows_name_their_pooling_and_attended_tokens_are_seen_often_enough(demo_run):
    at = show(open_app(demo_run.parent), "Head inspector")
    profile = at.dataframe[0].value
    probes = read_table(demo_run / "tables" / "probes_heads.parquet")
    poolings = sorted(set(probes["pooling"]))
    probe_rows = profile[profile["table"] == "probes_heads"]
    assert sorted(probe_rows["measure"]) == [f"gender probe accuracy ({p} pooling)" for p in poolings]
    for least in (5, 2):
        at.number_input(key="inspect_min_count").set_value(least).run()
        attended = at.dataframe[-1].value
        assert not at.exception and len(attended) and (attended["occurrences"] >= least).all()
    at.number_input(key="inspect_min_count").set_value(30).run()
    assert (at.dataframe[-1].value.get("occurrences", pd.Series(dtype=int)) >= 30).all()


def test_p_values_are_written_with_three_significant_digits():
    assert [p_text(p) for p in (0.0004, 0.001, 0.012345, 0.5, 1.0, np.nan)] == [
        "< 0.001",
        "0.001",
        "0.0123",
        "0.5",
        "1",
        "",
    ]
    frame = pd.DataFrame(
        {
            "p": [0.00012, 0.2],
            "total_q": [0.0456789, np.nan],
            "q < 0.05": [3, 7],  # a count, not a q-value
            "value": [0.0001, 0.3],
            "p_method": ["stored", "stored"],
        }
    )
    shown = p_columns_as_text(frame)
    assert shown["p"].tolist() == ["< 0.001", "0.2"] and shown["total_q"].tolist() == ["0.0457", ""]
    for column in ("q < 0.05", "value", "p_method"):
        assert shown[column].equals(frame[column])
