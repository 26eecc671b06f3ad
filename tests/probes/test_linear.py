"""Linear probes on planted synthetic representations: the probe finds the layer and head; errors are clear."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.metrics import accuracy_score, balanced_accuracy_score, roc_auc_score

from pipeline.schema import COLUMNS
from probes.extract import Representations
from probes.intervals import fold_metrics, resample_weights
from probes.linear import (
    METRICS,
    LinearProbe,
    fold_predictions,
    fold_scores,
    interval,
    make_splits,
    probe_heads,
    probe_layers,
    text_groups,
)


def test_probe_finds_the_planted_layer(planted):
    table = probe_layers(planted.reps, planted.genders, n_folds=4)
    assert list(table.columns[: len(COLUMNS)]) == list(COLUMNS)
    assert set(table["metric"]) == set(METRICS) and set(table["subset"]) == {"gender"}
    acc = table[table["metric"] == "probe_accuracy"].set_index("layer")
    assert list(acc.index) == list(range(planted.reps.n_layers + 1))
    assert acc["value"].idxmax() == planted.layer
    assert acc.loc[planted.layer, "value"] > 0.85 and acc.loc[planted.layer, "ci_low"] > 0.8
    others = acc.drop(planted.layer)
    assert (others["value"] < 0.6).all()  # chance = 0.5: balanced genders
    assert (acc["chance"] == 0.5).all() and (acc["n"] == len(planted.genders)).all()
    auc = table[table["metric"] == "probe_auc"].set_index("layer")["value"]
    assert auc[planted.layer] > 0.9 and (auc.drop(planted.layer) < 0.65).all()


def test_label_target_is_decodable_where_planted(planted):
    table = probe_layers(planted.reps, planted.labels, target="label", n_folds=4, layers=[0, planted.layer])
    acc = table[table["metric"] == "probe_accuracy"].set_index("layer")["value"]
    assert set(table["subset"]) == {"label"}
    assert acc[planted.layer] > 0.7 and acc[0] < 0.45  # 3 balanced classes: chance 1/3


def test_head_probe_finds_the_planted_head(planted):
    rng = np.random.default_rng(1)
    heads = rng.normal(size=(planted.reps.n_layers, 3, len(planted.genders), 8)).astype(np.float32)
    heads[1, 2, :, 0] += 2.0 * (2 * planted.genders - 1)
    reps = Representations(layers=planted.reps.layers, heads={"mean": heads})
    table = probe_heads(reps, planted.genders, n_folds=3)
    acc = table[table["metric"] == "probe_accuracy"]
    assert set(acc["unit"]) == {"head"} and len(acc) == planted.reps.n_layers * 3
    best = acc.loc[acc["value"].idxmax()]
    assert (best["layer"], best["head"]) == (1, 2) and best["value"] > 0.9
    assert acc[(acc["layer"] != 1) | (acc["head"] != 2)]["value"].max() < 0.62


def test_interval_is_the_t_interval():
    values = [0.7, 0.8, 0.75, 0.9, 0.85]
    mean, lo, hi = interval(values)
    half = stats.t.ppf(0.975, 4) * np.std(values, ddof=1) / np.sqrt(5)
    assert mean == pytest.approx(0.8) and lo == pytest.approx(0.8 - half) and hi == pytest.approx(0.8 + half)


def test_probe_follows_the_estimator_contract(planted):
    probe = LinearProbe(Cs=(0.1, 1.0), cv=3, seed=2)
    assert clone(probe).get_params() == {"Cs": (0.1, 1.0), "cv": 3, "max_iter": 1000, "tol": 1e-3, "seed": 2}
    with pytest.raises(NotFittedError):
        probe.predict(planted.reps.layers["mean"][planted.layer])
    X = planted.reps.layers["mean"][planted.layer]
    fitted = probe.fit(X, planted.genders)
    assert fitted is probe and probe.C_ in (0.1, 1.0) and list(probe.classes_) == [0, 1]
    assert probe.predict_proba(X).shape == (len(X), 2)
    assert probe.score(X, planted.genders) == np.mean(probe.predict(X) == planted.genders)
    with pytest.raises(TypeError):
        LinearProbe(1.0)  # keyword-only


def test_one_gender_in_a_split_is_a_clear_error(planted):
    X = planted.reps.layers["mean"][planted.layer]
    with pytest.raises(ValueError, match=r"split 'fit' has fewer than two classes.*\{0: 400\}"):
        LinearProbe().fit(X, np.zeros(len(X), int))
    # groups that put all women of the data into few groups: some grouped test fold has one gender only
    groups = np.where(planted.genders == 1, 0, 1 + np.arange(len(X)) % 9)
    with pytest.raises(ValueError, match=r"fold \d (train|test).*fewer than two classes"):
        make_splits(planted.genders, groups=groups, n_folds=5)


def test_too_few_examples_per_fold_is_a_clear_error(planted):
    y = planted.genders.copy()
    y[np.flatnonzero(y == 1)[3:]] = 0  # only 3 women
    with pytest.raises(ValueError, match=r"too few examples per class for 5 folds: \{1: 3\}.*n_folds <= 3"):
        make_splits(y, n_folds=5)
    with pytest.raises(ValueError, match=r"too few examples per class for 3 folds: \{1: 2\}.*LinearProbe\(cv="):
        LinearProbe(cv=3).fit(planted.reps.layers["mean"][0][:100], np.r_[np.ones(2, int), np.zeros(98, int)])
    with pytest.raises(ValueError, match="n_folds=1"):
        make_splits(planted.genders, n_folds=1)


def test_layer_out_of_range_is_a_clear_error(planted):
    with pytest.raises(IndexError, match=r"layer 7 is out of range.*0\.\.4 \(0 = embeddings\)"):
        probe_layers(planted.reps, planted.genders, layers=[7])
    with pytest.raises(ValueError, match=r"pooling\(s\) \['cls'\] were not extracted"):
        probe_layers(planted.reps, planted.genders, poolings=["cls"])
    with pytest.raises(ValueError, match=r"y has shape \(3,\)"):
        probe_layers(planted.reps, np.array([0, 1, 0]))


@pytest.mark.parametrize("n_classes", [2, 4])
def test_fold_scores_equal_sklearn_metrics(n_classes):
    rng = np.random.default_rng(n_classes)
    y = np.arange(120) % n_classes
    X = np.round(rng.normal(size=(120, 5)) + 0.7 * np.eye(n_classes, 5)[y], 1)  # rounding makes ties
    order = rng.permutation(120)
    train, test = order[:60], order[60:]
    scores = fold_scores(LinearProbe(cv=2), X, y, train, test)
    probe = LinearProbe(cv=2).fit(X[train], y[train])
    pred, proba = probe.predict(X[test]), probe.predict_proba(X[test])
    assert scores["probe_accuracy"] == pytest.approx(accuracy_score(y[test], pred))
    assert scores["probe_balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y[test], pred))
    expected_auc = (
        roc_auc_score(y[test], proba[:, 1])
        if n_classes == 2
        else roc_auc_score(y[test], proba, multi_class="ovr", average="macro")
    )
    assert scores["probe_auc"] == pytest.approx(expected_auc)


def test_near_constant_features_are_not_blown_up_into_a_signal():
    """A feature constant up to float noise (here 1e-12, perfectly aligned with y, as LEACE leaves in near-dead
    MiniLM features) must not decode y: StandardScaler alone would rescale it to unit variance."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    X = rng.normal(size=(400, 8))
    X[:, 0] = 0.5 + 1e-12 * (2 * y - 1)
    probe = LinearProbe(cv=3).fit(X[:300], y[:300])
    assert not probe.informative_[0] and probe.informative_[1:].all()
    assert abs(probe.score(X[300:], y[300:]) - 0.5) < 0.15
    X[:, 0] = 0.5 + 1e-3 * (2 * y - 1)  # small but real: kept, and it decodes y
    assert LinearProbe(cv=3).fit(X[:300], y[:300]).score(X[300:], y[300:]) == 1.0
    same = LinearProbe(cv=3).fit(np.ones((40, 8)), y[:40])  # one vector for every text: the prior only
    assert (same.predict(np.ones((5, 8))) == np.bincount(y[:40]).argmax()).all()


def test_intervals_stay_inside_the_unit_interval_with_few_folds(planted):
    """Two folds gave a t interval such as 0.875 [-0.713, 2.463]; the bootstrap interval stays in [0, 1]."""
    rows = np.r_[np.flatnonzero(planted.genders == 0)[:20], np.flatnonzero(planted.genders == 1)[:20]]
    reps = Representations(layers={"mean": planted.reps.layers["mean"][:, rows]})
    table = probe_layers(reps, planted.genders[rows], n_folds=2, probe=LinearProbe(cv=2), n_boot=300)
    assert table["ci_low"].between(0, 1).all() and table["ci_high"].between(0, 1).all()
    assert (table["ci_low"] <= table["value"] + 1e-12).all() and (table["value"] <= table["ci_high"] + 1e-12).all()
    acc = table[table["metric"] == "probe_accuracy"].set_index("layer")
    assert acc.loc[planted.layer, "ci_high"] - acc.loc[planted.layer, "ci_low"] < 0.5


def test_bootstrap_interval_has_the_binomial_width(planted):
    """At chance with n = 400 test predictions the 95% interval of accuracy is about 2 * 1.96 * sqrt(.25 / 400)."""
    acc = probe_layers(planted.reps, planted.genders, layers=[0], n_folds=4)
    width = float((acc["ci_high"] - acc["ci_low"])[acc["metric"] == "probe_accuracy"].iloc[0])
    assert 0.06 < width < 0.14
    no_boot = probe_layers(planted.reps, planted.genders, layers=[0], n_folds=4, n_boot=0)
    assert no_boot["ci_low"].isna().all() and np.allclose(no_boot["value"], acc["value"])


@pytest.mark.parametrize("n_classes", [2, 4])
def test_fold_metrics_equal_sklearn_on_resampled_rows(n_classes):
    rng = np.random.default_rng(n_classes)
    y = np.arange(120) % n_classes
    X = np.round(rng.normal(size=(120, 5)) + 0.7 * np.eye(n_classes, 5)[y], 1)  # rounding makes ties
    train, test = np.arange(60), np.arange(60, 120)
    proba, classes = fold_predictions(LinearProbe(cv=2), X, y, train, test)
    weights = resample_weights([(train, test)], n_boot=3, seed=1)[0]  # (60, 4): the data as is, then 3 resamples
    got = fold_metrics(y[test], proba, classes, weights)
    for b, w in enumerate(weights.T.astype(int)):
        rows = np.repeat(np.arange(60), w)  # a weight of k = the row drawn k times
        yt, pt, pred = y[test][rows], proba[rows], classes[proba[rows].argmax(1)]
        assert got["probe_accuracy"][b] == pytest.approx(accuracy_score(yt, pred))
        assert got["probe_balanced_accuracy"][b] == pytest.approx(balanced_accuracy_score(yt, pred))
        auc = roc_auc_score(yt, pt[:, 1]) if n_classes == 2 else roc_auc_score(yt, pt, multi_class="ovr")
        assert got["probe_auc"][b] == pytest.approx(auc)
    assert {k: v[0] for k, v in got.items()} == pytest.approx(fold_scores(LinearProbe(cv=2), X, y, train, test))


def test_copies_of_a_text_never_straddle_train_and_test(planted):
    texts = [f"text {i // 2}" for i in range(len(planted.genders))]  # every text twice
    y = planted.genders[np.arange(len(texts)) // 2 * 2]  # copies share the label
    groups = text_groups(texts)
    assert text_groups([f"t{i}" for i in range(5)]) is None and groups[0] == groups[1] != groups[2]
    for train, test in make_splits(y, groups=groups, n_folds=5):
        assert not set(groups[train]) & set(groups[test])
