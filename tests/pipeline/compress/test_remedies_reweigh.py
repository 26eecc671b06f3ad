"""Reweighing weights (Kamiran & Calders 2012): class and group independent under the weights, empty cells refused."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from pipeline.compress.reweigh import EmptyCellError, cell_weights, reweighing_weights


def _skewed(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, 500)
    groups = (rng.random(500) < np.array([0.9, 0.2, 0.5, 0.7])[labels]).astype(int)  # gender tied to class
    return labels, groups


def test_every_cell_weighted_share_is_the_product_of_the_marginals():
    labels, groups = _skewed()
    w = reweighing_weights(labels, groups)
    n = len(labels)
    assert w.sum() == pytest.approx(n, rel=1e-12)
    for c in range(4):
        for g in range(2):
            cell = (labels == c) & (groups == g)
            share = w[cell].sum() / w.sum()
            assert share == pytest.approx((labels == c).mean() * (groups == g).mean(), rel=1e-12, abs=0)


def test_the_cell_weights_are_the_exact_ratio_of_counts():
    labels = np.array([0, 0, 0, 1, 1, 0])
    groups = np.array([0, 0, 1, 1, 1, 1])
    # n = 6; n(c=0) = 4, n(c=1) = 2; n(g=0) = 2, n(g=1) = 4; cells: (0,0) 2, (0,1) 2, (1,0) 0 -> refused
    with pytest.raises(EmptyCellError, match=r"\(1, 0\)"):
        cell_weights(labels, groups)
    labels = np.array([0, 0, 0, 1, 1, 0, 1])
    groups = np.array([0, 0, 1, 1, 1, 1, 0])
    # n = 7; n(0) = 4, n(1) = 3; n(g0) = 3, n(g1) = 4; cells (0,0) 2, (0,1) 2, (1,0) 1, (1,1) 2
    expect = {(0, 0): Fraction(4 * 3, 7 * 2), (0, 1): Fraction(4 * 4, 7 * 2), (1, 0): Fraction(3 * 3, 7 * 1)}
    expect[1, 1] = Fraction(3 * 4, 7 * 2)
    got = cell_weights(labels, groups)
    assert got.keys() == expect.keys()
    assert all(got[k] == pytest.approx(float(v), rel=1e-15) for k, v in expect.items())


def test_independent_data_gets_unit_weights():
    labels = np.repeat([0, 1, 2], 4)
    groups = np.tile([0, 1], 6)
    assert reweighing_weights(labels, groups).tolist() == [1.0] * 12


@pytest.mark.parametrize(
    ("labels", "groups", "match"),
    [([0, 1], [0, 0], "at least two groups"), ([0, 1, 2], [0, 1], "same length"), ([], [], "non-empty")],
)
def test_bad_input_is_refused(labels, groups, match):
    with pytest.raises(ValueError, match=match):
        reweighing_weights(np.array(labels, dtype=int), np.array(groups, dtype=int))
