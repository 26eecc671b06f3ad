"""Tests for pipeline/metrics/seat.py: effect size and permutation p-value by hand, and the 12 tests on MiniLM."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch

from pipeline.data import SeatTest, load_gender_seat_tests, load_seat
from pipeline.metrics import association, effect_size, encode, n_partitions, permutation_p, seat_metrics

# 2-D hand case. A = {(1, 0)}, B = {(0, 1)}; with a = 1/sqrt(5):
#   s((1,0)) = 1, s((2,1)) = 2a - a = a, s((0,1)) = -1, s((1,2)) = a - 2a = -a.
#   d = (mean_X - mean_Y) / std([1, a, -1, -a], ddof=1) = (1 + a) / sqrt((2 + 2a^2) / 3) = (1 + sqrt 5) / 2.
X = np.array([[1.0, 0.0], [2.0, 1.0]])
Y = np.array([[0.0, 1.0], [1.0, 2.0]])
A = np.array([[1.0, 0.0]])
B = np.array([[0.0, 1.0]])


def test_effect_size_on_2d_vectors_by_hand():
    a = 1 / math.sqrt(5)
    assert association(X, A, B).numpy() == pytest.approx([1, a])
    assert effect_size(X, Y, A, B) == pytest.approx((1 + math.sqrt(5)) / 2)
    assert effect_size(3 * X, Y, 0.5 * A, B) == pytest.approx((1 + math.sqrt(5)) / 2)  # cosine: scale-free
    assert effect_size(Y, X, A, B) == pytest.approx(-(1 + math.sqrt(5)) / 2)


def test_p_value_by_hand():
    # X sums over the 6 partitions of {1, a, -1, -a}: 1+a (observed), 1-1, 1-a, a-1, a-a, -1-a: one >= observed.
    assert n_partitions(2, 2) == 6
    assert permutation_p(X, Y, A, B) == pytest.approx(1 / 6)
    assert permutation_p(Y, X, A, B) == pytest.approx(1.0)  # every partition is >= the smallest


def test_exact_p_equals_brute_force_and_sampling_approaches_it():
    rng = np.random.default_rng(0)
    x, y, a, b = (rng.normal(size=(k, 5)) for k in (5, 5, 4, 3))
    s = np.concatenate([association(x, a, b).numpy(), association(y, a, b).numpy()])
    observed = s[:5].sum() - s[5:].sum()
    stats = [s[list(c)].sum() - np.delete(s, list(c)).sum() for c in itertools.combinations(range(10), 5)]
    brute = np.mean(np.array(stats) >= observed - 1e-12)
    assert permutation_p(x, y, a, b) == pytest.approx(brute)
    sampled = permutation_p(x, y, a, b, exact_limit=10, n_samples=20_000, seed=1)
    assert sampled == pytest.approx(brute, abs=0.015)
    assert sampled == permutation_p(x, y, a, b, exact_limit=10, n_samples=20_000, seed=1)


def test_torch_inputs_are_differentiable_and_match_numpy():
    xt = torch.tensor(X, requires_grad=True)
    d = effect_size(xt, torch.tensor(Y), torch.tensor(A), torch.tensor(B))
    d.backward()
    assert d.item() == pytest.approx(float(effect_size(X, Y, A, B))) and xt.grad.abs().sum() > 0


def test_empty_set_is_refused_with_the_fix(tmp_path):
    with pytest.raises(ValueError, match="non-empty"):
        effect_size(X, np.zeros((0, 2)), A, B)
    empty = SeatTest("bad", "X", ("John",), "Y", ("Amy",), "A", ("career",), "B", ())
    with pytest.raises(ValueError, match="'bad': set attr2 .* is empty"):
        seat_metrics(None, [empty])
    (tmp_path / "seat").mkdir()
    sets = {k: {"category": k, "examples": ["word"]} for k in ("targ1", "targ2", "attr1")}
    sets["attr2"] = {"category": "Family", "examples": []}
    (tmp_path / "seat" / "broken.jsonl").write_text(json.dumps(sets))
    with pytest.raises(ValueError, match="attr2.*empty"):
        load_seat("broken", tmp_path)


def test_all_twelve_gender_tests_on_minilm_with_both_poolings(minilm):
    tests = load_gender_seat_tests("both")
    frame = seat_metrics(minilm, tests, ("cls", "mean"), n_samples=2000, n_boot=50, seed=0)
    assert len(frame) == 12 * 2 * 2
    assert set(frame.pooling) == {"cls", "mean"} and set(frame.subset) == {t.name for t in tests}
    d = frame[frame.metric == "seat_effect_size"]
    assert np.isfinite(d.value).all() and (d.value.abs() < 2).all()
    assert ((d.ci_low <= d.value) & (d.value <= d.ci_high)).all()
    p = frame[frame.metric == "seat_p_value"].value
    assert ((p > 0) & (p <= 1)).all()
    test = tests[0]  # weat6: recompute directly
    X_, Y_, A_, B_ = (encode(minilm, getattr(test, k), "mean") for k in ("targ1", "targ2", "attr1", "attr2"))
    row = d[(d.subset == test.name) & (d.pooling == "mean")].iloc[0]
    assert row.value == pytest.approx(float(effect_size(X_, Y_, A_, B_)), abs=1e-6)
    assert row.n == len(test.targ1) + len(test.targ2)


def test_first_pooling_is_sent_bias_first_word_piece_without_special_tokens(minilm):
    texts = ["This is John.", "Amy", "Engineering is hard work."]
    got = encode(minilm, texts, "first", batch_size=2)
    for row, text in zip(got, texts):
        ids = minilm.tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
        assert ids[0, 0] != minilm.tokenizer.cls_token_id
        with torch.no_grad():
            want = minilm.anatomy.hidden_states(ids, torch.ones_like(ids))[-1][0, 0].double()
        assert torch.allclose(row, want, atol=1e-5)
    assert not torch.allclose(got, encode(minilm, texts, "cls"), atol=1e-3)
    with pytest.raises(ValueError, match="'first' \\(sent-bias\\)"):
        encode(minilm, texts, "max")  # type: ignore[arg-type]
