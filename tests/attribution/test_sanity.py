"""Model-randomisation sanity check (Adebayo et al. 2018)."""

from __future__ import annotations

import pytest
import torch

from attribution.importance import GradientHeadImportance
from attribution.sanity import randomised_copy, sanity_check
from attribution.scores import CounterfactualGap


def test_randomised_copy_touches_only_what_it_should(tiny_loaded):
    loaded = tiny_loaded("distilbert", "mlm")
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    head_only = randomised_copy(loaded, from_layer=loaded.anatomy.n_layers, seed=3)
    for key, value in loaded.model.state_dict().items():  # the original is untouched
        assert torch.equal(value, before[key]), key
    new = head_only.model.state_dict()
    assert not torch.equal(new["vocab_transform.weight"], before["vocab_transform.weight"])
    assert torch.equal(
        new["distilbert.transformer.layer.1.ffn.lin1.weight"], before["distilbert.transformer.layer.1.ffn.lin1.weight"]
    )
    # the tied projector is untied, not randomised together with the word embeddings
    assert torch.equal(
        new["distilbert.embeddings.word_embeddings.weight"], before["distilbert.embeddings.word_embeddings.weight"]
    )
    full = randomised_copy(loaded, from_layer=None, seed=3).model.state_dict()
    assert not torch.equal(
        full["distilbert.embeddings.word_embeddings.weight"], before["distilbert.embeddings.word_embeddings.weight"]
    )
    again = randomised_copy(loaded, from_layer=None, seed=3).model.state_dict()
    assert all(torch.equal(full[k], again[k]) for k in full)  # seeded
    with pytest.raises(ValueError, match="from_layer=9"):
        randomised_copy(loaded, from_layer=9)


def test_planted_attribution_does_not_survive_randomisation(planted):
    loaded, data = planted
    out = sanity_check(
        lambda m: GradientHeadImportance(m, CounterfactualGap()), loaded, data, cascade=True, n_boot=0, progress=False
    )
    full = out[(out["randomised_from"] == -1) & (out["subset"] == "grad_importance")]["value"].item()
    assert abs(full) < 0.5  # the planted ranking is gone on a random model
    assert set(out["randomised_from"]) == set(range(-1, loaded.anatomy.n_layers + 1))
    assert set(out["metric"]) == {"sanity_spearman"}
