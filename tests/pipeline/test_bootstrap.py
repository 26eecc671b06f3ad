"""Tests for pipeline/bootstrap.py: percentile intervals over resampled examples."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.metrics import bootstrap_ci, bootstrap_indices


def test_interval_contains_value_and_is_reproducible():
    x = np.random.default_rng(3).normal(size=200)
    value, low, high = bootstrap_ci(np.mean, x, n_boot=500, seed=7)
    assert value == pytest.approx(x.mean())
    assert low < value < high
    assert bootstrap_ci(np.mean, x, n_boot=500, seed=7) == (value, low, high)
    assert bootstrap_ci(np.mean, x, n_boot=500, seed=8) != (value, low, high)


def test_interval_matches_the_percentiles_of_the_resampled_means():
    x = np.arange(10.0)
    idx = bootstrap_indices(10, 300, seed=1)
    means = x[idx].mean(axis=1)
    _, low, high = bootstrap_ci(np.mean, x, n_boot=300, seed=1, alpha=0.1)
    assert low == pytest.approx(np.percentile(means, 5))
    assert high == pytest.approx(np.percentile(means, 95))


def test_index_mode_paired_arrays_and_vector_statistics():
    a, b = np.arange(20.0), np.arange(20.0) * 2
    by_index = bootstrap_ci(lambda i: a[i].mean() - b[i].mean(), 20, n_boot=100, seed=0)
    paired = bootstrap_ci(lambda x, y: x.mean() - y.mean(), (a, b), n_boot=100, seed=0)
    assert by_index == pytest.approx(paired)
    value, low, high = bootstrap_ci(lambda x, y: np.array([x.mean(), y.mean()]), (a, b), n_boot=100, seed=0)
    assert value.shape == low.shape == high.shape == (2,)
    assert (low <= value).all() and (value <= high).all()


def test_strata_keep_group_sizes():
    strata = np.array([0, 0, 0, 1, 1])
    idx = bootstrap_indices(5, 50, seed=0, strata=strata)
    assert (strata[idx] == strata).all()


def test_undefined_resamples_are_dropped_and_zero_resamples_give_nan():
    x = np.array([0.0, 1.0, 2.0, 3.0])
    value, low, high = bootstrap_ci(lambda v: np.nan if (v == 0).all() else v.mean(), x, n_boot=200, seed=0)
    assert np.isfinite([value, low, high]).all()
    assert bootstrap_ci(np.mean, x, n_boot=0)[1:] != bootstrap_ci(np.mean, x, n_boot=0)[1:]  # NaN != NaN
    assert np.isnan(bootstrap_ci(lambda v: np.nan, x, n_boot=10)[1])


@pytest.mark.parametrize(
    "kwargs, match",
    [({"data": 0}, "at least one"), ({"data": (np.ones(3), np.ones(4))}, "different lengths"),
     ({"data": np.ones(3), "n_boot": -1}, "n_boot"), ({"data": np.ones(3), "alpha": 1.5}, "alpha")],
)  # fmt: skip
def test_bad_input_is_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        bootstrap_ci(np.mean, **kwargs)
