"""The probes stage: config validation, data preparation and every table of run_probes on a tiny model."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.data import TaskData
from pipeline.schema import COLUMNS
from probes.analysis import TABLES, ProbeConfig, prepare_data, run_probes


@pytest.mark.parametrize("kwargs, match", [
    ({"poolings": ("max",)}, r"poolings=\('max',\): allowed values are \('cls', 'mean'\)"),
    ({"fit_on": "words"}, "fit_on='words'"),
    ({"n_folds": 1}, r"n_folds=1: give an integer >= 2"),
    ({"max_examples": 4}, "max_examples=4"),
    ({"min_class_size": 3}, "min_class_size=3 is below n_folds=5"),
    ({"erasure_layers": ("3",)}, "erasure_layers"),
])
def test_config_errors_name_the_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ProbeConfig(**kwargs)


def test_config_takes_toml_lists_and_rejects_unknown_keys():
    cfg = ProbeConfig(poolings=["mean"], erasure_layers=[1, -1])
    assert cfg.poolings == ("mean",) and cfg.erasure_layers == (1, -1) and cfg.to_dict()["poolings"] == ("mean",)
    with pytest.raises(TypeError):
        ProbeConfig(pooling=("mean",))


def test_prepare_data_balances_and_rejects_one_gender(bug_small):
    data = prepare_data(bug_small, ProbeConfig(max_examples=30, n_folds=3, min_class_size=3))
    assert len(data) == 30
    assert data.texts == prepare_data(bug_small, ProbeConfig(max_examples=30, n_folds=3, min_class_size=3)).texts
    men = bug_small.subset(bug_small.genders == 0)
    with pytest.raises(ValueError, match=r"'bug-top3 genders' has fewer than two classes \(counts \{0: 30\}\)"):
        prepare_data(men, ProbeConfig())


def test_run_probes_writes_every_table(tiny_loaded, bug_small, tmp_path):
    cfg = ProbeConfig(n_folds=3, inner_cv=2, max_examples=None, mdl=True, erasure_layers=(-1,), min_class_size=6,
                      fit_on="mean", batch_size=16, n_boot=50)
    tables = run_probes(tiny_loaded, bug_small, cfg, variant="tiny-ft", seed=7, cache_dir=tmp_path, progress=False)
    assert set(tables) == set(TABLES)
    for frame in tables.values():
        assert list(frame.columns[: len(COLUMNS)]) == list(COLUMNS)
        assert set(frame["variant"]) == {"tiny-ft"} and set(frame["seed"]) == {7}
    layers = tables["probes_layers"]
    assert set(layers["layer"]) == {0, 1, 2, 3} and set(layers["subset"]) == {"gender", "label"}
    assert set(layers["pooling"]) == {"cls", "mean"}
    heads = tables["probes_heads"]
    assert len(heads[heads["metric"] == "probe_accuracy"]) == 2 * 3 * 4  # poolings x blocks x heads
    assert set(tables["probes_control"]["metric"]) == {"probe_accuracy", "control_accuracy", "selectivity"}
    assert set(tables["erasure"]["erased_layer"]) == {3}  # -1 = the last block's output
    with pytest.raises(IndexError, match=r"hidden-state indices are 0\.\.3"):
        run_probes(tiny_loaded, bug_small, ProbeConfig(erasure_layers=(4,)), variant="x", cache_dir=tmp_path)


def test_label_probe_is_skipped_with_a_warning_when_classes_are_too_small(tiny_loaded, tmp_path):
    texts = tuple(f"{w} is here ." for w in ("he", "she") * 10)
    data = TaskData("toy", texts, np.arange(20) % 5, np.arange(20) % 2, tuple("abcde"))
    cfg = ProbeConfig(n_folds=2, inner_cv=2, max_examples=None, heads=False, control=False, min_class_size=5,
                      balance_genders=False)
    with pytest.warns(UserWarning, match="label probe skipped: fewer than two classes"):
        tables = run_probes(tiny_loaded, data, cfg, variant="toy", cache_dir=tmp_path, progress=False)
    assert set(tables["probes_layers"]["subset"]) == {"gender"}
