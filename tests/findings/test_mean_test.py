"""The mean-zero test of attribution effects: its null is "the mean is 0" and its error rate is measured on skewed
nulls at the attribution's sample size (n = 48), beside the sign-flip and t-tests it replaces."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from pipeline.mean_test import hall_statistic, mean_zero_test
from pipeline.stats import sign_flip_test

N, DRAWS = 48, 4000


def _null(kind: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "exponential":
        return rng.exponential(1.0, (DRAWS, N)) - 1.0  # skewness 2
    return rng.lognormal(0.0, 1.0, (DRAWS, N)) - np.exp(0.5)  # skewness 6.2


@pytest.fixture(scope="module", params=["exponential", "lognormal"])
def null_pvalues(request):
    x = _null(request.param, seed=11)
    return request.param, mean_zero_test(x, max_boot=1999, seed=1), x


def test_rejection_rates_under_skewed_mean_zero_nulls(null_pvalues):
    kind, p, x = null_pvalues
    at_05, at_005 = np.mean(p < 0.05), np.mean(p < 0.005)
    if kind == "exponential":
        assert 0.03 <= at_05 <= 0.07 and at_005 <= 2 * 0.005
    else:  # skewness 6.2 at n = 48: near the bar at 0.05, 2-3x nominal at 0.005 (docs/FINDINGS.md, Calibration)
        assert 0.03 <= at_05 <= 0.075 and at_005 <= 3 * 0.005
    flips = sign_flip_test(x[:1000], n_perm=999, seed=0)  # the test it replaces, on the same samples
    t = stats.ttest_1samp(x, 0.0, axis=1).pvalue
    assert at_05 < np.mean(flips < 0.05) and at_005 < np.mean(t < 0.005)


def test_symmetric_null_and_power():
    rng = np.random.default_rng(3)
    normal = mean_zero_test(rng.normal(0, 1, (2000, N)), max_boot=1999, seed=2)
    assert 0.035 <= np.mean(normal < 0.05) <= 0.065
    shifted = mean_zero_test(rng.exponential(1.0, (500, N)) - 1.0 + 0.5, max_boot=1999, seed=2)
    assert np.mean(shifted < 0.05) > 0.9  # half a standard deviation at n = 48


def test_hall_statistic_is_the_t_statistic_without_skew():
    x = np.array([-2.0, -1.0, 0.0, 1.0, 2.0, 0.5])
    x = np.concatenate([x, -x])  # symmetric: skewness 0, so T = t and the skew term a / 6 vanishes
    t = stats.ttest_1samp(x, 0.25).statistic
    assert hall_statistic(x.mean(), (x**2).mean(), (x**3).mean(), len(x), 0.25) == pytest.approx(t)


def test_refined_pvalues_resolve_below_the_first_pass_floor_and_edge_cases():
    rng = np.random.default_rng(0)
    strong = rng.normal(1.0, 1.0, N)  # mean 1 sd: far beyond the first pass's 1 / 2000
    assert mean_zero_test(strong, seed=0) < 1e-4
    assert mean_zero_test(np.zeros(N)) == 1.0
    assert np.isnan(mean_zero_test(np.array([1.0, 2.0])))
    p = mean_zero_test(np.array([[1.0, np.nan, 2.0, 3.0, -1.0], [np.nan] * 5]))
    assert p[0] == pytest.approx(mean_zero_test(np.array([1.0, 2.0, 3.0, -1.0]))) and np.isnan(p[1])
    one = mean_zero_test(strong - 1.0, seed=4, alternative="greater")
    assert 0 < one <= 1
    with pytest.raises(ValueError, match="alternative"):
        mean_zero_test(strong, alternative="bigger")
