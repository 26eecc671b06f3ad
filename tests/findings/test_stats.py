"""pipeline.stats: the sign-flip test is exact where it enumerates and calibrated where it samples, q-values are
Benjamini-Hochberg's, and the paired bootstrap is exactly the brute-force one."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats as sstats

from pipeline.stats import bh_qvalues, bootstrap_pvalue, paired_bootstrap, seeds_ttest, sign_flip_test, spearman_test


def test_sign_flip_enumerates_every_pattern_for_small_n():
    x = np.array([0.3, -0.1, 0.7, 0.2, 0.05, 0.4, -0.2, 0.9])
    sums = np.array([np.dot(s, x) for s in itertools.product((1, -1), repeat=len(x))])
    brute = np.mean(np.abs(sums) >= abs(x.sum()) - 1e-12)
    assert sign_flip_test(x) == pytest.approx(brute)
    assert sign_flip_test(x, alternative="greater") == pytest.approx(np.mean(sums >= x.sum() - 1e-12))


def test_sign_flip_is_calibrated_under_a_symmetric_null():
    rng = np.random.default_rng(0)
    values = rng.standard_t(3, size=(400, 30))  # heavy tails, symmetric about 0
    p = sign_flip_test(values, n_perm=999, seed=1)
    assert 0.02 <= np.mean(p < 0.05) <= 0.08
    assert 0.07 <= np.mean(p < 0.1) <= 0.14


def test_sign_flip_resolves_below_the_monte_carlo_floor_for_strong_effects():
    """A clear effect among thousands of units gets a p-value below 1/(n_perm + 1) (Hoeffding's bound), so it
    can pass Benjamini-Hochberg over all of them."""
    rng = np.random.default_rng(0)
    values = rng.normal(size=(5000, 64))
    values[0] += 2.0
    p = sign_flip_test(values, n_perm=999, seed=0)
    assert p[0] < 1e-6 < 1 / 1000
    assert bh_qvalues(p)[0] < 0.05


def test_sign_flip_edge_cases():
    assert sign_flip_test(np.zeros(50)) == 1.0  # no effect at all
    p = sign_flip_test(np.array([[1.0, np.nan, 2.0, 3.0], [np.nan] * 4]))
    assert p[0] == pytest.approx(sign_flip_test(np.array([1.0, 0.0, 2.0, 3.0]))) and np.isnan(p[1])
    with pytest.raises(ValueError, match="alternative"):
        sign_flip_test(np.ones(3), alternative="bigger")


def test_bh_qvalues_are_scipys_and_keep_nan():
    p = np.array([0.01, np.nan, 0.04, 0.03, 0.5])
    q = bh_qvalues(p)
    assert np.isnan(q[1])
    np.testing.assert_allclose(q[[0, 2, 3, 4]], sstats.false_discovery_control([0.01, 0.04, 0.03, 0.5]))


def _gap(labels, genders, preds):
    """Accuracy of women minus accuracy of men."""
    correct = labels == preds
    return correct[genders == 1].mean() - correct[genders == 0].mean()


def test_paired_bootstrap_equals_a_brute_force_paired_bootstrap():
    rng = np.random.default_rng(3)
    n, n_boot, seed = 40, 300, 7
    labels, genders = rng.integers(0, 3, n), np.tile([0, 1], n // 2)
    preds_v, preds_r = rng.integers(0, 3, n), rng.integers(0, 3, n)
    result = paired_bootstrap(_gap, (labels, genders, preds_v), (labels, genders, preds_r), n_boot=n_boot, seed=seed)
    draws = []
    for idx in np.random.default_rng(seed).integers(0, n, size=(n_boot, n)):  # what bootstrap_indices draws
        draws.append(_gap(labels[idx], genders[idx], preds_v[idx]) - _gap(labels[idx], genders[idx], preds_r[idx]))
    draws = np.array(draws)
    assert result.delta[0] == pytest.approx(_gap(labels, genders, preds_v) - _gap(labels, genders, preds_r))
    np.testing.assert_allclose(result.draws[:, 0], draws)
    finite = draws[np.isfinite(draws)]
    assert result.ci_low[0] == pytest.approx(np.percentile(finite, 2.5))
    assert result.ci_high[0] == pytest.approx(np.percentile(finite, 97.5))
    below, above = (finite <= 0).sum(), (finite >= 0).sum()
    assert result.p[0] == pytest.approx(min(1.0, 2 * (1 + min(below, above)) / (len(finite) + 1)))


def test_identical_models_differ_by_zero_with_p_one():
    rng = np.random.default_rng(0)
    arrays = (rng.integers(0, 3, 30), np.tile([0, 1], 15), rng.integers(0, 3, 30))
    result = paired_bootstrap(_gap, arrays, arrays, n_boot=200)
    assert result.delta[0] == 0 and result.ci_low[0] == 0 and result.ci_high[0] == 0 and result.p[0] == 1.0


def test_bootstrap_pvalue_and_seed_test():
    assert bootstrap_pvalue(np.zeros(100)) == 1.0
    assert bootstrap_pvalue(np.full(99, 2.0)) == pytest.approx(0.02)
    assert np.isnan(seeds_ttest([0.1, 0.2])) and seeds_ttest([0.1, 0.2, 0.15]) < 0.05
    assert seeds_ttest([0.0, 0.0, 0.0]) == 1.0


def test_spearman_test():
    x = np.arange(20.0)
    rho, p = spearman_test(x, x**3, n_perm=999)
    assert rho == pytest.approx(1.0) and p == pytest.approx(1 / 1000)
    rho, p = spearman_test(x, np.random.default_rng(1).permutation(x), n_perm=999)
    assert abs(rho) < 0.5 and p > 0.05
    assert np.isnan(spearman_test(x[:2], x[:2])[0])


def test_minimum_detectable_effect_is_z_alpha_plus_z_power_standard_errors():
    """A 95% interval of half-width 1.96 is one standard error: MDE = z_0.975 + z_0.8 = 2.8016 (Cohen 1988); a
    stricter alpha asks for more; no interval, no MDE."""
    from scipy.stats import norm

    from pipeline.stats import minimum_detectable

    z = norm.ppf(0.975)
    assert minimum_detectable(-z, z) == pytest.approx(z + norm.ppf(0.8), rel=1e-12)
    assert minimum_detectable(0.5 - 2 * z, 0.5 + 2 * z) == pytest.approx(2 * (z + norm.ppf(0.8)), rel=1e-12)
    assert minimum_detectable(-z, z, alpha=0.005) == pytest.approx(norm.ppf(1 - 0.0025) + norm.ppf(0.8), rel=1e-12)
    assert np.isnan(minimum_detectable(np.nan, 1.0))


def test_power_clause_is_the_median_mde_of_the_tests_behind_an_answer():
    """Two tests with 95% half-widths 1.96 and 3.92 (se 1 and 2): MDEs 2.80 and 5.60, median 4.2; no interval, no
    clause."""
    import pandas as pd
    from scipy.stats import norm

    from pipeline.findings.compute import FindingsConfig
    from pipeline.report.claims import power_clause

    z = norm.ppf(0.975)
    rows = pd.DataFrame({"ci_low": [-z, -2 * z, np.nan], "ci_high": [z, 2 * z, np.nan]})
    clause = power_clause(rows, FindingsConfig(), "a change")
    assert clause == (
        " Power: a change of about 4.2 would be detected (the median minimum detectable effect of 2 test(s), power "
        "0.8 at p < 0.05 before any multiple-testing correction)."
    )
    assert power_clause(rows.iloc[2:], FindingsConfig(), "a change") == ""
