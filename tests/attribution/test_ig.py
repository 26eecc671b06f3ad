"""Integrated gradients: completeness within 1%, batched equals per-example, convergence warning, errors."""

from __future__ import annotations

import warnings

import pandas as pd
import pytest
import torch

from attribution.data import AttributionData
from attribution.ig import HeadIntegratedGradients, NeuronIntegratedGradients, TokenIntegratedGradients
from attribution.scores import CounterfactualGap, SeatEffect, TrueClassProb
from pipeline.data import load_seat


@pytest.mark.parametrize("method", [HeadIntegratedGradients, NeuronIntegratedGradients])
@pytest.mark.parametrize("baseline", ["zero", "mean"])
def test_gate_ig_completeness_and_batching(planted, method, baseline):
    loaded, data = planted
    data = data.subset(range(8))
    ig = method(loaded, CounterfactualGap())
    attr, delta, diff = ig.integrate(data, n_steps=24, baseline=baseline, batch_size=8 * 24, progress=False)
    total = attr.sum((1, 2))  # (n_ex,): the attributions of each example
    assert diff.abs().min() > 0.1  # the planted model's gap is large
    assert ((total - diff).abs() <= 0.01 * diff.abs()).all()  # completeness within 1%
    torch.testing.assert_close(total - diff, delta, atol=1e-5, rtol=0)  # captum's delta is that gap
    one, _, _ = ig.integrate(data, n_steps=24, baseline=baseline, batch_size=24, progress=False)  # per example
    torch.testing.assert_close(one, attr, atol=1e-6, rtol=1e-4)


def test_head_ig_table_carries_delta(planted):
    loaded, data = planted
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # converged: no completeness warning
        frame = HeadIntegratedGradients(loaded, CounterfactualGap()).attribute(
            data, n_steps=32, n_boot=50, progress=False
        )
    heads = frame[frame["metric"] == "ig"]
    total = frame[frame["metric"] == "ig_total"]["value"].item()
    assert heads["value"].sum() == pytest.approx(total, rel=0.01)
    assert {"delta", "delta_rel"} <= set(frame.columns) and (frame["delta_rel"] < 0.01).all()


def test_too_few_steps_warn(planted):
    loaded, data = planted
    with pytest.warns(UserWarning, match="convergence delta exceeds 1%.*raise n_steps"):
        HeadIntegratedGradients(loaded, CounterfactualGap()).attribute(
            data, n_steps=2, method="riemann_left", n_boot=0, progress=False
        )


def test_token_ig_completeness_and_rows(planted):
    loaded, data = planted
    data = data.subset([0, 1, 2])
    padding = TokenIntegratedGradients(loaded, TrueClassProb(), baseline="padding")  # the prediction's attributions
    frame = padding.attribute(data, n_steps=48, batch_size=96, progress=False)
    assert set(frame["unit"]) == {"token"} and set(frame["metric"]) == {"token_ig"}
    assert set(frame["score"]) == {"true_class_prob from padding"}
    first = frame[frame["example"] == 0]
    assert first["token"].tolist() == ["[CLS]"] + data.texts[0].split() + ["[SEP]"]
    assert first["position"].tolist() == list(range(len(first)))
    assert (frame.groupby("example")["delta_rel"].first() < 0.01).all()
    assert first.loc[first["token"] == "he", "value"].abs().item() == first["value"].abs().max()  # gender word
    per_example = padding.attribute(data, n_steps=48, batch_size=48, progress=False)
    pd.testing.assert_series_equal(per_example["value"], frame["value"], atol=1e-6, rtol=1e-4)


def test_token_ig_needs_per_example_score(minilm):
    data = AttributionData.from_seat(minilm, load_seat("weat6"))
    with pytest.raises(ValueError, match="whole-set score"):
        TokenIntegratedGradients(minilm, SeatEffect()).attribute(data)


def test_whole_set_head_ig_is_complete(minilm):
    data = AttributionData.from_seat(minilm, load_seat("weat6"))
    attr, _delta, diff = HeadIntegratedGradients(minilm, SeatEffect()).integrate(
        data, n_steps=16, batch_size=256, progress=False
    )
    assert attr.shape == (1, 6, 12)
    assert abs(float(attr.sum() - diff[0])) <= 0.01 * abs(float(diff[0]))


def test_single_layer_neuron_ig_is_complete_over_its_layer(planted):
    loaded, data = planted
    data = data.subset(range(4))
    ig = NeuronIntegratedGradients(loaded, CounterfactualGap(), layers=[1])
    attr, _, diff = ig.integrate(data, n_steps=24, batch_size=96, progress=False)
    assert (attr[:, [0, 2]] == 0).all() and attr[:, 1].abs().max() > 0  # other layers are not integrated
    assert ((attr.sum((1, 2)) - diff).abs() <= 0.01 * diff.abs()).all()  # completeness over layer 1's neurons
    frame = ig.attribute(data, n_steps=24, batch_size=96, n_boot=0, progress=False)
    assert set(frame.loc[frame["unit"] == "neuron", "layer"]) == {1}


def test_a_subset_of_examples_integrates_as_in_the_full_run(planted):
    loaded, data = planted
    data = data.subset(range(6))
    ig = HeadIntegratedGradients(loaded, CounterfactualGap())
    kw = {"n_steps": 16, "baseline": "mean", "batch_size": 32, "progress": False}
    full = ig.integrate(data, **kw)
    part = ig.integrate(data, examples=[4, 1], **kw)  # the mean baseline still comes from all six
    for whole, some in zip(full, part):
        torch.testing.assert_close(some, whole[[4, 1]], atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="examples must be a non-empty list of row ids in 0..5"):
        ig.integrate(data, examples=[6], **kw)


def test_whole_set_examples_cannot_be_split(minilm):
    data = AttributionData.from_seat(minilm, load_seat("weat6"))
    with pytest.raises(ValueError, match="cannot be split"):
        HeadIntegratedGradients(minilm, SeatEffect()).integrate(data, n_steps=2, examples=[0], progress=False)


class _Broken(TrueClassProb):
    def combine(self, feats, batch):
        raise RuntimeError("boom")


def test_parameters_requiring_grad_are_restored(planted):
    loaded, data = planted
    params = list(loaded.model.parameters())
    params[0].requires_grad_(False)  # a frozen embedding stays frozen, the rest trainable
    before = [p.requires_grad for p in params]
    try:
        NeuronIntegratedGradients(loaded, TrueClassProb()).integrate(data.subset([0]), n_steps=4, progress=False)
        with pytest.raises(RuntimeError, match="boom"):
            TokenIntegratedGradients(loaded, _Broken()).attribute(data.subset([0]), n_steps=4, progress=False)
        assert [p.requires_grad for p in params] == before
    finally:
        params[0].requires_grad_(True)
