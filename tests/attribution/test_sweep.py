"""Fast (prefix-cached) single-head sweep equals the naive loop of full forward passes to 1e-5."""

from __future__ import annotations

import pytest
import torch

from attribution.baselines import CounterfactualBaseline, StaticBaseline, ZeroBaseline, mean_activations
from attribution.data import AttributionData
from attribution.scores import CounterfactualGap, PronounGap, SeatEffect, TaskLoss, TrueClassProb
from attribution.sweep import fast_sweep, naive_sweep, single_head_gates
from pipeline.data import load_seat, load_winobias


def _both(loaded, score, data, **kw):
    fast, heads = fast_sweep(loaded, score, data, progress=False, **kw)
    naive, heads_naive = naive_sweep(loaded, score, data, progress=False, **kw)
    assert heads == heads_naive
    return fast, naive


@pytest.mark.parametrize("family", ["bert", "distilbert"])
@pytest.mark.parametrize("how", ["zero", "mean", "counterfactual"])
def test_fast_equals_naive_classifier(tiny_loaded, tiny_task, family, how):
    loaded = tiny_loaded(family)
    data, _ = AttributionData.from_task(loaded, tiny_task).aligned()
    baseline = {"zero": ZeroBaseline(), "mean": StaticBaseline(mean_activations(loaded, data)),
                "counterfactual": CounterfactualBaseline()}[how]  # fmt: skip
    score = TrueClassProb() if how == "counterfactual" else CounterfactualGap()
    fast, naive = _both(loaded, score, data, baseline=baseline, batch_size=8)
    assert fast.values.shape == (loaded.anatomy.n_layers * loaded.anatomy.n_heads, len(data))
    assert (fast.values - fast.values.mean(0)).abs().max() > 1e-3  # heads differ: not zeros against zeros
    torch.testing.assert_close(fast.values, naive.values, atol=1e-5, rtol=0)
    torch.testing.assert_close(fast.correct, naive.correct)


def test_fast_equals_naive_masked_lm(tiny_loaded, minilm):
    loaded = tiny_loaded("distilbert", "mlm", vocab_size=minilm.tokenizer.vocab_size)
    loaded.tokenizer = minilm.tokenizer
    data = AttributionData.from_pronouns(loaded, load_winobias(2, "pro", "dev")[:10])
    fast, naive = _both(loaded, PronounGap(), data, batch_size=16)
    torch.testing.assert_close(fast.values, naive.values, atol=1e-5, rtol=0)


def test_fast_equals_naive_on_minilm_seat(minilm):
    data = AttributionData.from_seat(minilm, load_seat("weat6"))
    fast, naive = _both(minilm, SeatEffect(), data, batch_size=96, layers=[0, 5])
    assert fast.values.shape == (2 * 12,)
    torch.testing.assert_close(fast.values, naive.values, atol=1e-5, rtol=0)


def test_batch_size_does_not_change_the_sweep(tiny_loaded, tiny_task):
    loaded = tiny_loaded("bert")
    data = AttributionData.from_task(loaded, tiny_task, counterfactual_twins=False)
    one, _ = fast_sweep(loaded, TaskLoss(), data, batch_size=1, progress=False)
    many, _ = fast_sweep(loaded, TaskLoss(), data, batch_size=64, progress=False)
    torch.testing.assert_close(one.values, many.values, atol=1e-5, rtol=0)


def test_head_out_of_range(tiny_loaded):
    loaded = tiny_loaded("bert")
    with pytest.raises(IndexError, match="head 4 is out of range for layer 0"):
        single_head_gates(loaded, [(0, 4)])
    with pytest.raises(IndexError, match="layer 7 is out of range"):
        fast_sweep(loaded, TaskLoss(), AttributionData.from_texts(loaded, ["a"], labels=[0]), layers=[7])


class _Broken(TrueClassProb):
    def features(self, head, hidden, view):
        raise RuntimeError("boom")


def _hooks(model):
    return sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in model.modules())


def test_no_hook_or_truncated_layer_list_is_left_behind(tiny_loaded, tiny_task):
    loaded = tiny_loaded("distilbert")
    data = AttributionData.from_task(loaded, tiny_task)
    fast_sweep(loaded, TrueClassProb(), data, baseline=CounterfactualBaseline(), progress=False)
    # counted after a first pass: transformers 5 installs its own output-capturing hooks lazily on first forward
    before = _hooks(loaded.model)
    with pytest.raises(RuntimeError, match="boom"):
        fast_sweep(loaded, _Broken(), data, progress=False)
    assert _hooks(loaded.model) == before
    assert len(loaded.anatomy.layers()) == loaded.anatomy.n_layers


@pytest.mark.parametrize("sweep", [fast_sweep, naive_sweep])
def test_a_subset_of_heads_gives_those_rows_of_the_full_sweep(tiny_loaded, tiny_task, sweep):
    loaded = tiny_loaded("bert")
    data, _ = AttributionData.from_task(loaded, tiny_task).aligned()
    full, heads = sweep(loaded, TrueClassProb(), data, baseline=CounterfactualBaseline(), batch_size=8, progress=False)
    some = [(2, 1), (0, 3), (2, 0)]  # any order, layers interleaved
    part, chosen = sweep(loaded, TrueClassProb(), data, baseline=CounterfactualBaseline(), batch_size=8, heads=some,
                         progress=False)  # fmt: skip
    assert chosen == some
    torch.testing.assert_close(part.values, full.values[[heads.index(h) for h in some]], atol=1e-6, rtol=0)


def test_bad_head_subsets_are_refused(tiny_loaded):
    loaded = tiny_loaded("bert")
    data = AttributionData.from_texts(loaded, ["a"], labels=[0])
    with pytest.raises(ValueError, match="not both"):
        fast_sweep(loaded, TaskLoss(), data, layers=[0], heads=[(0, 1)])
    with pytest.raises(ValueError, match="distinct"):
        fast_sweep(loaded, TaskLoss(), data, heads=[(0, 1), (0, 1)])
    with pytest.raises(IndexError, match="head 4 is out of range for layer 2"):
        fast_sweep(loaded, TaskLoss(), data, heads=[(2, 4)])
