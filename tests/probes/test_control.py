"""Control tasks (Hewitt & Liang 2019): per-type random labels with the real proportions; selectivity."""

from __future__ import annotations

import numpy as np
import pytest

from probes.control import control_labels, control_task


def test_control_labels_per_type_keep_proportions():
    rng = np.random.default_rng(0)
    types = rng.integers(0, 40, 2000)  # 40 word types of different sizes
    y = rng.permutation(np.r_[np.zeros(1400, int), np.ones(600, int)])
    control = control_labels(y, types=types, seed=3)
    for t in np.unique(types):  # one label per type
        assert len(np.unique(control[types == t])) == 1
    assert (control == 1).sum() == 600  # the closest of the random assignments matches the shares exactly here
    assert not np.array_equal(control_labels(y, types=types, seed=3), control_labels(y, types=types, seed=4))
    assert np.array_equal(control, control_labels(y, types=types, seed=3))


def test_control_labels_keep_proportions_with_a_few_huge_types():
    types = np.r_[np.repeat(np.arange(5), 150), np.repeat(np.arange(5, 55), 5)]  # 5 types hold 75% of the rows
    y = np.r_[np.zeros(900, int), np.ones(100, int)]
    control = control_labels(y, types=types, seed=0)
    assert (control == 1).sum() == 100 and (control[:750] == 0).all()  # only small types can make up 10%


def test_control_labels_without_types_permute():
    y = np.r_[np.zeros(30, int), np.ones(70, int)]
    control = control_labels(y, seed=1)
    assert np.array_equal(np.sort(control), y) and not np.array_equal(control, y)
    with pytest.raises(ValueError, match="one type per example"):
        control_labels(y, types=np.zeros(5))


def test_control_task_is_at_chance_and_selectivity_peaks_at_the_planted_layer(planted):
    table = control_task(planted.reps, planted.genders, n_folds=4)
    wide = table.pivot_table(index="layer", columns="metric", values="value")
    assert (wide["control_accuracy"] < 0.6).all()  # chance 0.5
    assert wide["selectivity"].idxmax() == planted.layer and wide.loc[planted.layer, "selectivity"] > 0.3
    assert np.allclose(wide["selectivity"], wide["probe_accuracy"] - wide["control_accuracy"])
    sel = table[(table["metric"] == "selectivity") & (table["layer"] == planted.layer)].iloc[0]
    assert sel["ci_low"] < sel["value"] < sel["ci_high"]


def test_control_task_with_word_types_stays_at_chance(planted):
    """As run_probes uses it (types = a word type per example): types the representations do not encode give
    control labels no probe can read, at every layer, while the real probe still finds the planted layer."""
    types = np.random.default_rng(5).integers(0, 40, len(planted.genders))
    table = control_task(planted.reps, planted.genders, types=types, n_folds=4)
    wide = table.pivot_table(index="layer", columns="metric", values="value")
    assert (wide["control_accuracy"] < 0.6).all()  # chance 0.5 (the control labels keep the 50/50 shares)
    assert wide["probe_accuracy"].idxmax() == planted.layer and wide.loc[planted.layer, "probe_accuracy"] > 0.85
    assert wide["selectivity"].idxmax() == planted.layer and wide.loc[planted.layer, "selectivity"] > 0.3
