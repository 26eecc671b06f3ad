"""The probes stage: config validation, data preparation and every table of run_probes on a tiny model."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.data import TaskData
from pipeline.schema import COLUMNS
from probes.analysis import PROBE_TABLES, ProbeConfig, prepare_data, run_probes


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"poolings": ("max",)}, r"poolings.0\n  Input should be 'cls' or 'mean'"),
        ({"fit_on": "words"}, r"fit_on\n  Input should be 'tokens', 'cls' or 'mean'"),
        ({"n_folds": 1}, r"n_folds\n  Input should be greater than or equal to 2"),
        ({"max_examples": 4}, "max_examples = 4 is too small for n_folds = 5"),
        ({"min_class_size": 3}, "min_class_size = 3 is below n_folds = 5"),
        ({"erasure_layers": ("3",)}, "erasure_layers"),
    ],
)
def test_config_errors_name_the_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ProbeConfig(**kwargs)


def test_config_takes_toml_lists_and_rejects_unknown_keys():
    cfg = ProbeConfig(poolings=["mean"], erasure_layers=[1, -1])
    assert cfg.poolings == ("mean",) and cfg.erasure_layers == (1, -1) and cfg.model_dump()["poolings"] == ("mean",)
    with pytest.raises(ValueError, match=r"pooling\n  Extra inputs are not permitted"):
        ProbeConfig(pooling=("mean",))


def test_prepare_data_balances_and_rejects_one_gender(bug_small):
    data = prepare_data(bug_small, ProbeConfig(max_examples=30, n_folds=3, min_class_size=3))
    assert len(data) == 30
    assert data.texts == prepare_data(bug_small, ProbeConfig(max_examples=30, n_folds=3, min_class_size=3)).texts
    men = bug_small.subset(bug_small.genders == 0)
    with pytest.raises(ValueError, match=r"'bug-top3 genders' has fewer than two classes \(counts \{0: 30\}\)"):
        prepare_data(men, ProbeConfig())
    # 3 women: too few for 5 folds, before any probe is fitted
    few = bug_small.subset(np.r_[np.flatnonzero(bug_small.genders == 0), np.flatnonzero(bug_small.genders == 1)[:3]])
    with pytest.raises(ValueError, match=r"'bug-top3 genders' has too few examples per class for 5 folds: \{1: 3\}"):
        prepare_data(few, ProbeConfig(balance_genders=False))
    # 5 women are enough before sampling, not in a draw of 10 of the 35 rows
    five = bug_small.subset(np.r_[np.flatnonzero(bug_small.genders == 0), np.flatnonzero(bug_small.genders == 1)[:5]])
    prepare_data(five, ProbeConfig(max_examples=None, balance_genders=False))
    with pytest.raises(ValueError, match=r"genders after sampling' has .*Fix: raise max_examples or lower n_folds"):
        prepare_data(five, ProbeConfig(max_examples=10, balance_genders=False))


def test_run_probes_writes_every_table(tiny_loaded, bug_small, tmp_path):
    cfg = ProbeConfig(
        n_folds=3,
        inner_cv=2,
        max_examples=None,
        mdl=True,
        erasure_layers=(-1,),
        min_class_size=6,
        fit_on="mean",
        batch_size=16,
        n_boot=100,
    )
    tables = run_probes(tiny_loaded, bug_small, cfg, variant="tiny-ft", seed=7, cache_dir=tmp_path, progress=False)
    assert set(tables) == set(PROBE_TABLES)
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
    for bad in (4, -5):  # 3 blocks: hidden states 0..3 or -4..-1; checked before any forward pass
        with pytest.raises(IndexError, match=r"hidden-state indices are 0\.\.3 \(or -4\.\.-1\)"):
            run_probes(tiny_loaded, bug_small, ProbeConfig(erasure_layers=(bad,)), variant="x", cache_dir=tmp_path)


def test_label_probe_is_skipped_with_a_warning_when_classes_are_too_small(tiny_loaded, tmp_path):
    texts = tuple(f"{w} is here {i} ." for i, w in enumerate(("he", "she") * 10))  # distinct: folds group copies
    data = TaskData("toy", texts, np.arange(20) % 5, np.arange(20) % 2, tuple("abcde"))
    cfg = ProbeConfig(
        n_folds=2, inner_cv=2, max_examples=None, heads=False, control=False, min_class_size=5, balance_genders=False
    )
    with pytest.warns(UserWarning, match="label probe skipped: fewer than two classes"):
        tables = run_probes(tiny_loaded, data, cfg, variant="toy", cache_dir=tmp_path, progress=False)
    assert set(tables["probes_layers"]["subset"]) == {"gender"}


def test_run_probes_keeps_copies_of_a_text_in_one_fold(tiny_loaded, bug_small, tmp_path, monkeypatch):
    import probes.control
    import probes.linear

    twice = np.repeat(np.arange(len(bug_small)), 2)  # every text twice (BUG itself repeats some sentences)
    data = bug_small.subset(twice)
    seen = []

    def spy(y, *, groups=None, **kwargs):
        folds = make_splits(y, groups=groups, **kwargs)
        seen.append((groups, folds))
        return folds

    make_splits = probes.linear.make_splits
    monkeypatch.setattr(probes.linear, "make_splits", spy)
    monkeypatch.setattr(probes.control, "make_splits", spy)
    cfg = ProbeConfig(n_folds=3, inner_cv=2, max_examples=None, min_class_size=6, n_boot=100, batch_size=32)
    tables = run_probes(tiny_loaded, data, cfg, variant="x", cache_dir=tmp_path, progress=False)
    assert len(seen) == 4  # gender layers, label layers, heads, control
    for groups, folds in seen:
        assert groups is not None
        for train, test in folds:
            assert not set(groups[train]) & set(groups[test])
    for frame in tables.values():
        probe_rows = frame[frame["metric"] != "selectivity"]
        assert probe_rows["ci_low"].between(0, 1).all() and probe_rows["ci_high"].between(0, 1).all()
