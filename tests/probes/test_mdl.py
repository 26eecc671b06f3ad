"""Online-code MDL (Voita & Titov 2020): the planted layer has the shortest code; the bookkeeping is exact."""

from __future__ import annotations

import numpy as np
import pytest

from probes.mdl import mdl_layers, online_codelength


def test_planted_layer_has_the_shortest_code(planted):
    table = mdl_layers(planted.reps, planted.genders)
    bits = table[table["metric"] == "mdl_codelength"].set_index("layer")["value"]
    assert bits.idxmin() == planted.layer
    compression = table[table["metric"] == "mdl_compression"].set_index("layer")["value"]
    assert compression[planted.layer] > 1.5 and (compression.drop(planted.layer) < 1.1).all()
    assert np.allclose(compression * bits, len(planted.genders))  # uniform code: n * log2(2) bits


def test_uniform_first_block_and_perfect_separation():
    y = np.repeat([0, 1, 2, 3], 50)
    X = np.eye(4)[y] * 10.0  # trivially separable
    bits, uniform = online_codelength(X, y, fractions=(0.1, 0.5, 1.0), C=100.0)
    assert uniform == pytest.approx(200 * 2.0)  # 200 examples, log2(4) bits each
    assert 20 * 2.0 <= bits < 20 * 2.0 + 10  # first block (20 examples) uniform, the rest nearly free


def test_small_first_blocks_are_merged():
    y = np.repeat([0, 1, 2], 20)
    X = np.eye(3)[y] * 10.0
    # 0.02 * 60 = 1 example: skipped, so the first block is 0.2 * 60 = 12 >= 2 per class
    bits, _ = online_codelength(X, y, fractions=(0.02, 0.2, 1.0), C=100.0)
    assert 12 * np.log2(3) <= bits < 12 * np.log2(3) + 5


def test_bad_schedule_and_missing_class_are_clear_errors():
    X = np.zeros((200, 2))
    with pytest.raises(ValueError, match="ending at 1.0"):
        online_codelength(X, np.arange(200) % 2, fractions=(0.5, 0.9))
    y = np.r_[np.zeros(199, int), 1]  # one example of class 1, placed late by the order of seed 0
    with pytest.raises(ValueError, match="first block .* misses a class"):
        online_codelength(X, y, fractions=(0.05, 1.0), seed=0)
