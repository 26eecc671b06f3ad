"""LEACE erasure: gender goes to chance while the planted label survives; the in-model hook is exact and scoped."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny import make_tiny

from pipeline.anatomy import Anatomy
from pipeline.models import LoadedModel
from probes.erasure import ConceptEraser, amnesic_effect, erase_layer, fit_eraser
from probes.extract import Representations, extract
from probes.linear import probe_layers


def test_erasure_removes_gender_and_keeps_the_label(planted):
    X = planted.reps.layers["mean"][planted.layer]
    eraser = ConceptEraser().fit(X, planted.genders)
    erased = eraser.transform(X)
    assert erased.shape == X.shape and erased.dtype == X.dtype
    # LEACE's guarantee: equal class-conditional means (zero cross-covariance with gender), mean kept
    means = [erased[planted.genders == g].mean(0) for g in (0, 1)]
    np.testing.assert_allclose(means[0], means[1], atol=1e-4)
    np.testing.assert_allclose(erased.mean(0), X.mean(0), atol=1e-4)
    np.testing.assert_allclose(eraser.transform(erased), erased, atol=1e-4)  # idempotent
    reps = Representations(layers={"mean": erased[None]})
    gender = probe_layers(reps, planted.genders, n_folds=4)
    label = probe_layers(reps, planted.labels, target="label", n_folds=4)
    before = probe_layers(planted.reps, planted.genders, n_folds=4, layers=[planted.layer])
    acc = lambda t: t[t["metric"] == "probe_accuracy"]["value"].iloc[0]
    assert acc(before) > 0.85
    assert acc(gender) <= 0.55  # chance is 0.5 (in-sample erasure can even push held-out folds below it)
    assert acc(label) > 0.75  # the label directions are orthogonal to gender's and survive


def test_concept_eraser_contract():
    with pytest.raises(ValueError, match="one class only"):
        ConceptEraser().fit(np.zeros((10, 3)), np.zeros(10))
    with pytest.raises(ValueError, match="method"):
        ConceptEraser(method="inlp").fit(np.zeros((10, 3)), np.arange(10) % 2)


@pytest.mark.parametrize("family", ["bert", "distilbert"])
@pytest.mark.parametrize("layer", [0, 2])
def test_erase_layer_applies_the_eraser_to_that_hidden_state_only(family, layer, tiny_loaded):
    model = make_tiny(family, "classifier", vocab_size=tiny_loaded.tokenizer.vocab_size, max_position_embeddings=128)
    loaded = LoadedModel(model, tiny_loaded.tokenizer, Anatomy(model), "classifier", True, family)
    batch = loaded.tokenize(["she is a nurse .", "he was the [MASK] of the town ."])
    rng = np.random.default_rng(0)
    eraser = ConceptEraser().fit(rng.normal(size=(50, 32)), np.arange(50) % 2).eraser_
    with torch.no_grad():
        clean = loaded.anatomy.hidden_states(batch["input_ids"], batch["attention_mask"])
        with erase_layer(loaded, layer, eraser):
            erased = loaded.anatomy.hidden_states(batch["input_ids"], batch["attention_mask"])
        again = loaded.anatomy.hidden_states(batch["input_ids"], batch["attention_mask"])
    for k in range(layer):
        torch.testing.assert_close(erased[k], clean[k])
    expected = eraser(clean[layer].double()).float()
    torch.testing.assert_close(erased[layer], expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(erased[-1], clean[-1])  # the blocks above see the erased state
    for a, b in zip(again, clean):  # the hook is gone
        torch.testing.assert_close(a, b)


def test_erase_layer_removes_its_hook_after_an_error(tiny_loaded):
    module = tiny_loaded.anatomy.layer(0)
    n_hooks = len(module._forward_hooks)
    with pytest.raises(RuntimeError, match="boom"), erase_layer(tiny_loaded, 1, lambda h: h):
        assert len(module._forward_hooks) == n_hooks + 1
        raise RuntimeError("boom")
    assert len(module._forward_hooks) == n_hooks
    with pytest.raises(IndexError, match=r"layer 4 is out of range.*0\.\.3"), erase_layer(tiny_loaded, 4, lambda h: h):
        pass


def test_eraser_fitted_on_mean_states_guards_the_mean_pooled_layer(tiny_loaded, bug_small):
    layer = 2
    eraser = fit_eraser(tiny_loaded, bug_small.texts, bug_small.genders, layer, fit_on="mean", batch_size=16)
    with erase_layer(tiny_loaded, layer, eraser):
        reps = extract(tiny_loaded, bug_small.texts, poolings=("mean",), heads=False, cache=False, progress=False)
    X = reps.layers["mean"][layer]  # (n, d): mean over tokens of erased states = eraser(mean state), affine
    g = bug_small.genders
    np.testing.assert_allclose(X[g == 0].mean(0), X[g == 1].mean(0), atol=2e-4)
    with pytest.raises(ValueError, match="fit_on='words'"):
        fit_eraser(tiny_loaded, bug_small.texts, bug_small.genders, layer, fit_on="words")
    with pytest.raises(ValueError, match="one class only"):
        fit_eraser(tiny_loaded, bug_small.texts, np.zeros(len(bug_small), int), layer)


def test_amnesic_effect_rows(tiny_loaded, bug_small, tmp_path):
    table = amnesic_effect(
        tiny_loaded, bug_small, 2, fit_on="mean", n_folds=3, cache_dir=tmp_path, batch_size=16, n_boot=50
    )
    assert set(table["condition"]) == {"before", "after"} and set(table["erased_layer"]) == {2}
    probes = table[(table["unit"] == "layer") & (table["metric"] == "probe_accuracy")]
    assert set(probes["layer"]) == {2, 3} and set(probes["subset"]) == {"gender", "label"}
    model_rows = table[table["unit"] == "model"]
    for metric in ("accuracy", "gap_rms", "cf_prob_gap", "cf_flip_rate"):
        assert set(model_rows[model_rows["metric"] == metric]["condition"]) == {"before", "after"}
    after = probes[(probes["condition"] == "after") & (probes["layer"] == 2) & (probes["subset"] == "gender")]
    assert after["value"].iloc[0] <= 0.6  # 60 balanced examples: chance 0.5
