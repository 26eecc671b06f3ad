"""The Examples page (issue #28, item 1) under ``streamlit.testing.v1.AppTest`` on the test session's demo run: every
test example with its twin and each model's numbers, filters, sorting, the slice metrics (checked against a
brute-force pandas / scipy computation on the run's own tables) and the jump to the Playground and the inspector."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from scipy.stats import beta
from viewer_helpers import infos, open_app, show

from pipeline.bootstrap import bootstrap_ci
from pipeline.data import MALE, GenderSwapper
from pipeline.runs.config import config_from_dict
from pipeline.runs.runfolder import RunFolder
from pipeline.runs.task_data import load_task_splits
from pipeline.schema import read_table
from pipeline.viewer.examples_data import slice_metrics
from pipeline.viewer.viewer_data import interval_text


@pytest.fixture(scope="module")
def expected(demo_run) -> pd.DataFrame:
    """One row per (variant, seed, example), joined by hand from the run's tables and its test split."""
    test = load_task_splits(config_from_dict(RunFolder(demo_run).manifest["config"]).task).test
    swapper = GenderSwapper.from_winobias()
    predictions = read_table(demo_run / "tables" / "predictions.parquet")
    predictions = predictions[["variant", "seed", "example", "label", "gender", "pred"]]
    cf = read_table(demo_run / "tables" / "counterfactual_examples.parquet")
    cf = cf[cf["subset"].fillna("").isin(["", "all"])]
    gap = cf[cf["metric"] == "cf_prob_gap"][["variant", "seed", "example", "value"]].rename(columns={"value": "gap"})
    flip = cf[cf["metric"] == "cf_flip_rate"][["variant", "seed", "example", "value"]].rename(columns={"value": "flip"})
    rows = predictions.merge(gap, how="left").merge(flip, how="left")
    assert len(rows) == len(predictions) and rows["gap"].notna().any()
    names = test.label_names
    return rows.assign(
        text=[test.texts[e] for e in rows["example"]],
        twin=[swapper.swap(test.texts[e]) for e in rows["example"]],
        **{"class": [names[y] for y in rows["label"]]},
        gender=["male" if g == MALE else "female" for g in rows["gender"]],
        predicted=[names[p] for p in rows["pred"]],
        correct=rows["pred"] == rows["label"],
    )


@pytest.fixture(scope="module")
def page(demo_run):
    return show(open_app(demo_run.parent), "Examples")


def _shown(at) -> pd.DataFrame:
    return next(d.value for d in at.dataframe if "twin" in d.value).reset_index(drop=True)


def _key(frame: pd.DataFrame) -> list[tuple]:
    return sorted(zip(frame["variant"].astype(str), frame["seed"], frame["example"]))


def _reset(at) -> None:
    at.multiselect(key="ex_class").set_value([])
    at.multiselect(key="ex_gender").set_value([])
    at.multiselect(key="ex_models").set_value([])
    at.text_input(key="ex_search").set_value("")
    at.selectbox(key="ex_sort").set_value("|gap|")
    at.toggle(key="ex_descending").set_value(True)
    at.run()


def test_every_example_is_listed_with_its_twin_and_each_models_numbers(page, expected):
    _reset(page)
    shown = _shown(page)
    assert _key(shown) == _key(expected)
    both = shown.merge(expected, on=["variant", "seed", "example"], suffixes=("", "_x"))
    for column in ("text", "twin", "class", "gender", "predicted", "correct"):
        assert (both[column] == both[f"{column}_x"]).all(), column
    for column in ("gap", "flip"):
        assert both[column].equals(both[f"{column}_x"]) or np.array_equal(
            both[column].to_numpy(), both[f"{column}_x"].to_numpy(), equal_nan=True
        ), column
    assert both.loc[both["variant"] == "teacher", "gap"].isna().all()  # untrained head: no counterfactual rows
    assert "teacher" in next(w.value for w in page.warning if w.value.startswith("Not fit to be read"))


def test_filters_keep_exactly_the_matching_rows(page, expected):
    _reset(page)
    word = expected["text"].str.split().str[1].iloc[0]  # a word of the first sentence
    a_class = min(expected["class"])
    page.multiselect(key="ex_class").set_value([a_class])
    page.multiselect(key="ex_gender").set_value(["female"])
    page.multiselect(key="ex_models").set_value(["teacher-ft", "distil-ft_before"])
    page.run()
    want = expected[
        (expected["class"] == a_class)
        & (expected["gender"] == "female")
        & expected["variant"].isin(["teacher-ft", "distil-ft_before"])
    ]
    assert not page.exception and len(want) and _key(_shown(page)) == _key(want)
    page.multiselect(key="ex_class").set_value([])
    page.multiselect(key="ex_gender").set_value([])
    page.text_input(key="ex_search").set_value(word.upper()).run()
    hit = expected["text"].str.lower().str.contains(word.lower(), regex=False) | expected[
        "twin"
    ].str.lower().str.contains(word.lower(), regex=False)
    want = expected[hit & expected["variant"].isin(["teacher-ft", "distil-ft_before"])]
    assert len(want) and _key(_shown(page)) == _key(want)


@pytest.mark.parametrize(("by", "descending"), [("|gap|", True), ("gap", False), ("flip", True)])
def test_rows_are_sorted_as_asked(page, expected, by, descending):
    _reset(page)
    page.selectbox(key="ex_sort").set_value(by)
    page.toggle(key="ex_descending").set_value(descending).run()
    values = _shown(page)["gap" if "gap" in by else by]
    values = values.abs() if by == "|gap|" else values
    present = values.dropna().to_list()
    assert present == sorted(present, reverse=descending)
    assert values.isna().sum() == expected["gap" if "gap" in by else by].isna().sum()
    assert values.iloc[len(present) :].isna().all()  # no value: last


def _brute_force(rows: pd.DataFrame) -> pd.DataFrame:
    out = []
    for (variant, seed), g in rows.sort_values("example").groupby(["variant", "seed"]):
        gaps = g["gap"].dropna().to_numpy()
        flips = g.loc[g["gap"].notna(), "flip"].to_numpy()
        k_acc, n_acc, k_flip = int(g["correct"].sum()), len(g), int(flips.sum())
        gap = bootstrap_ci(np.mean, gaps, n_boot=1000, seed=0) if len(gaps) else (np.nan,) * 3

        def exact(k: int, n: int) -> tuple[float, float]:
            if n == 0:
                return np.nan, np.nan
            low = beta.ppf(0.025, k, n - k + 1) if k > 0 else 0.0
            return float(low), float(beta.ppf(0.975, k + 1, n - k) if k < n else 1.0)

        out.append(
            {
                "variant": variant,
                "seed": seed,
                "n": n_acc,
                "accuracy": k_acc / n_acc,
                "accuracy_ci": exact(k_acc, n_acc),
                "n_pairs": len(gaps),
                "gap": gaps.mean() if len(gaps) else np.nan,
                "gap_ci": gap[1:],
                "flip_rate": flips.mean() if len(flips) else np.nan,
                "flip_rate_ci": exact(k_flip, len(flips)),
            }
        )
    return pd.DataFrame(out).set_index(["variant", "seed"])


def test_slice_metrics_equal_a_brute_force_computation(page, expected):
    _reset(page)
    page.multiselect(key="ex_gender").set_value(["male"]).run()
    rows = expected[expected["gender"] == "male"]
    want = _brute_force(rows)
    got = slice_metrics(_shown(page)).set_index(["variant", "seed"]).loc[want.index]
    assert (got["n"] == want["n"]).all() and (got["n_pairs"] == want["n_pairs"]).all()
    for column in ("accuracy", "gap", "flip_rate"):
        np.testing.assert_allclose(got[column], want[column], rtol=1e-12, atol=0)
        bounds = np.array(want[f"{column}_ci"].to_list(), dtype=float)
        np.testing.assert_allclose(got[[f"{column}_lo", f"{column}_hi"]], bounds, rtol=1e-9, atol=1e-12)
    shown = page.dataframe[0].value.set_index(["variant", "seed"]).loc[want.index]  # the page's slice table
    for heading, column in (("accuracy", "accuracy"), ("mean cf gap", "gap"), ("flip rate", "flip_rate")):
        texts = [interval_text(v, *ci) for v, ci in zip(want[column], want[f"{column}_ci"])]
        assert shown[heading].to_list() == texts, heading
    assert shown["n"].to_list() == want["n"].to_list()


def _open(at, button: str) -> pd.Series:
    """Open the second distil-ft_before row of the Examples page with ``button``; returns that row."""
    at = show(at, "Examples")
    at.multiselect(key="ex_models").set_value(["distil-ft_before"]).run()
    frame = next(d.value for d in at.dataframe if "twin" in d.value)
    at.selectbox(key="ex_row").set_value(frame.index[1]).run()
    at.button(key=button).click().run()
    assert not at.exception, [e.value for e in at.exception]
    return frame.iloc[1]


def test_a_row_opens_in_the_playground_and_the_inspector(demo_run):
    at = open_app(demo_run.parent)
    row = _open(at, "ex_play")
    assert at.session_state["page"] == "Playground" and at.text_input(key="play_text").value == row["text"]
    assert at.selectbox(key="play_model").value[1:] == ("distil-ft_before", row["seed"])
    row = _open(at, "ex_inspect")
    assert at.session_state["page"] == "Head inspector" and at.selectbox(key="inspect_text").value == row["text"]
    assert at.selectbox(key="inspect_model").value[1:] == ("distil-ft_before", row["seed"])


def test_a_run_without_counterfactual_examples_lists_predictions_and_names_the_missing_table(demo_run, tmp_path):
    run_dir = tmp_path / "runs" / "nocf"
    shutil.copytree(demo_run, run_dir, ignore=shutil.ignore_patterns(".cache", "models"))
    (run_dir / "tables" / "counterfactual_examples.parquet").unlink()
    at = show(open_app(run_dir.parent), "Examples")
    assert "counterfactual_examples is missing" in infos(at)
    shown = _shown(at)
    predictions = read_table(run_dir / "tables" / "predictions.parquet")
    assert _key(shown) == _key(predictions) and shown["gap"].isna().all() and shown["predicted"].ne("").all()
    assert (slice_metrics(shown)["n_pairs"] == 0).all()
