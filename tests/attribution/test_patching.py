"""Activation patching: gate engine against brute force, TransformerLens engine equal to 1e-5, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attribution.data import AttributionData
from attribution.patching import ActivationPatching
from attribution.scores import CounterfactualGap, PronounGap, SeatEffect, TrueClassProb
from pipeline.data import load_winobias
from pipeline.gates import HeadGates, NeuronGates, RecordHeads, RecordNeurons, ones_gates


def _effects(frame, unit="head"):
    rows = frame[(frame["metric"] == "indirect_effect") & (frame["unit"] == unit)].sort_values(["layer", "head"])
    return rows["value"].to_numpy()


@pytest.mark.parametrize("family", ["bert", "distilbert"])
def test_gate_patching_equals_brute_force(tiny_loaded, tiny_task, family):
    loaded = tiny_loaded(family)
    data, _ = AttributionData.from_task(loaded, tiny_task).aligned()
    frame = ActivationPatching(loaded, TrueClassProb()).attribute(data, neurons=[(1, 7)], n_boot=0, progress=False)
    batch, anatomy, score = data.batch(torch.arange(len(data))), loaded.anatomy, TrueClassProb()
    sign = torch.where(batch.genders == 1, -1.0, 1.0)
    with torch.no_grad():
        original, swapped = score(loaded, batch), score(loaded, batch.swapped())
        with RecordHeads(anatomy) as heads, RecordNeurons(anatomy) as neurons:
            anatomy.base(input_ids=batch.cf_input_ids, attention_mask=batch.cf_attention_mask)
        gates = ones_gates(anatomy)
        gates[1, 2] = 0.0  # patch head (1, 2) only, everywhere in the batch
        with HeadGates(anatomy, gates, baseline=[heads.z[l] for l in range(anatomy.n_layers)]):
            head_effect = float((sign * (score(loaded, batch) - original)).mean())
        gates = ones_gates(anatomy, neurons=True)
        gates[1, 7] = 0.0
        with NeuronGates(anatomy, gates, baseline=[neurons.act[l] for l in range(anatomy.n_layers)]):
            neuron_effect = float((sign * (score(loaded, batch) - original)).mean())
    assert _effects(frame)[1 * anatomy.n_heads + 2] == pytest.approx(head_effect, abs=1e-6)
    assert _effects(frame, "neuron")[0] == pytest.approx(neuron_effect, abs=1e-6)
    total = frame[frame["metric"] == "total_effect"]["value"].item()
    assert total == pytest.approx(float((sign * (swapped - original)).mean()), abs=1e-6)


@pytest.mark.parametrize("family", ["bert", "distilbert"])
def test_transformer_lens_patching_equals_gate_patching(tiny_loaded, tiny_task, family):
    loaded = tiny_loaded(family)
    data = AttributionData.from_task(loaded, tiny_task)
    gates = ActivationPatching(loaded, TrueClassProb()).attribute(data, batch_size=16, n_boot=0, progress=False)
    lens = ActivationPatching(loaded, TrueClassProb(), engine="lens").attribute(
        data, batch_size=16, n_boot=0, progress=False
    )
    assert len(_effects(lens)) == loaded.anatomy.n_layers * loaded.anatomy.n_heads
    assert np.abs(_effects(gates)).max() > 1e-3  # a real test, not zeros against zeros
    np.testing.assert_allclose(_effects(lens), _effects(gates), atol=1e-5, rtol=0)
    assert set(lens["engine"]) == {"lens"}


def test_transformer_lens_patching_on_a_masked_lm(tiny_loaded, minilm):
    loaded = tiny_loaded("distilbert", "mlm", vocab_size=minilm.tokenizer.vocab_size)
    loaded.tokenizer = minilm.tokenizer
    data = AttributionData.from_pronouns(loaded, load_winobias(1, "pro", "dev"))
    data = data.subset(np.flatnonzero([a != b for a, b in zip(data.texts, data.cf_texts)])[:6])  # "cut his hair"
    kw = {"batch_size": 16, "n_boot": 0, "progress": False}
    gates = ActivationPatching(loaded, PronounGap()).attribute(data, **kw)
    lens = ActivationPatching(loaded, PronounGap(), engine="lens").attribute(data, **kw)
    assert len(data) == 6 and np.abs(_effects(gates)).max() > 0
    np.testing.assert_allclose(_effects(lens), _effects(gates), atol=1e-5, rtol=0)


def test_dropped_pairs_are_counted(tiny_loaded):
    loaded = tiny_loaded("bert")
    data = AttributionData.from_texts(loaded, ["he was late", "he came", "she is busy"],
                                      cf_texts=["she was late", "she came home", "he is busy"], labels=[0, 1, 2],
                                      genders=[0, 0, 1])  # fmt: skip
    frame = ActivationPatching(loaded, TrueClassProb()).attribute(data, n_boot=0, progress=False)
    row = frame[frame["metric"] == "pairs_dropped"].iloc[0]
    assert row["value"] == 1 and row["n"] == 3
    assert (frame.loc[frame["metric"] == "indirect_effect", "n"] == 2).all()


def test_scores_that_contrast_twins_are_refused(tiny_loaded):
    with pytest.raises(ValueError, match="TrueClassProb"):
        ActivationPatching(tiny_loaded(), CounterfactualGap())
    with pytest.raises(ValueError, match="whole set"):
        ActivationPatching(tiny_loaded(), SeatEffect())
    with pytest.raises(ValueError, match="engine='hooks'"):
        ActivationPatching(tiny_loaded(), TrueClassProb(), engine="hooks")


def test_effects_of_a_subset_are_those_rows_of_all_effects(tiny_loaded, tiny_task):
    loaded = tiny_loaded("bert")
    patching = ActivationPatching(loaded, TrueClassProb())
    pairs, _ = patching.pairs(AttributionData.from_task(loaded, tiny_task))
    full = patching.effects(pairs, neurons=[(0, 3)], batch_size=16, progress=False)
    part = patching.effects(pairs, neurons=[(0, 3)], batch_size=16, examples=[5, 0, 2], progress=False)
    assert full.indirect.shape == (len(pairs), loaded.anatomy.n_layers * loaded.anatomy.n_heads + 1)
    for name in ("original", "total", "indirect"):
        torch.testing.assert_close(getattr(part, name), getattr(full, name)[[5, 0, 2]], atol=1e-6, rtol=0)


def test_effects_need_aligned_pairs(tiny_loaded):
    loaded = tiny_loaded("bert")
    data = AttributionData.from_texts(loaded, ["he was late", "mr john was late"], cf_texts=["she was late",
                                      "mrs mary was late ."], labels=[0, 1], genders=[0, 0])  # fmt: skip
    with pytest.raises(ValueError, match=r"pass the data from pairs\(data\)\[0\]"):
        ActivationPatching(loaded, TrueClassProb()).effects(data, progress=False)
