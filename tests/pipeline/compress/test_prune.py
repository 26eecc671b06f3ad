"""Head pruning (Michel et al. 2019) and magnitude pruning against brute force."""

from __future__ import annotations

import pytest
import torch
from tiny import random_batch

from pipeline.anatomy import shrink_heads
from pipeline.compress.prune import head_importance, keep_sparsity, magnitude_prune, prune_heads, select_heads, sparsity
from pipeline.gates import HeadGates
from pipeline.models import load_model
from pipeline.runs.build import save_model

FAMILIES = ["bert", "distilbert"]


def _batch(vocab: int, labels=(0, 1, 2, 1)):
    ids, mask = random_batch(4, 9, vocab=vocab, seed=1)
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor(labels)}


@pytest.mark.parametrize("family", FAMILIES)
def test_physical_pruning_equals_gated_model_and_reloads(family, make_loaded, tmp_path):
    loaded = make_loaded(family)
    batch = _batch(loaded.tokenizer.vocab_size)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    importance = torch.rand(loaded.anatomy.n_layers, loaded.anatomy.n_heads, generator=torch.Generator().manual_seed(0))
    keep = select_heads(importance, 0.5)
    gates = torch.zeros(loaded.anatomy.n_layers, loaded.anatomy.n_heads)
    for layer, heads in enumerate(keep):
        gates[layer, heads] = 1.0
    with torch.no_grad(), HeadGates(loaded.anatomy, gates):
        gated = loaded.model(**inputs).logits

    kept = prune_heads(loaded.anatomy, importance, 0.5)
    assert kept == keep  # fresh model: positions are the original ids
    assert sum(loaded.anatomy.heads_per_layer) < loaded.anatomy.n_layers * 4
    assert loaded.model.config.kept_heads == kept and loaded.anatomy.head_ids == tuple(map(tuple, kept))
    with torch.no_grad():
        pruned = loaded.model(**inputs).logits
    torch.testing.assert_close(pruned, gated, atol=1e-5, rtol=0)

    save_model(loaded, tmp_path)
    reloaded = load_model(tmp_path, head="classifier")
    assert reloaded.head_trained
    assert reloaded.anatomy.heads_per_layer == loaded.anatomy.heads_per_layer
    assert reloaded.anatomy.head_ids == tuple(map(tuple, kept))
    with torch.no_grad():
        torch.testing.assert_close(reloaded.model(**inputs).logits, pruned, atol=0, rtol=0)


def test_importance_is_mean_absolute_per_example_gradient(make_loaded):
    loaded = make_loaded("bert")
    batch = _batch(loaded.tokenizer.vocab_size)
    got = head_importance(loaded.anatomy, [batch], normalise=False)
    expected = torch.zeros_like(got)
    for row in range(4):  # brute force: one backward pass per example
        gates = torch.ones(loaded.anatomy.n_layers, loaded.anatomy.n_heads, requires_grad=True)
        with HeadGates(loaded.anatomy, gates):
            logits = loaded.model(
                input_ids=batch["input_ids"][row : row + 1], attention_mask=batch["attention_mask"][row : row + 1]
            ).logits
        loss = torch.nn.functional.cross_entropy(logits, batch["labels"][row : row + 1])
        expected += torch.autograd.grad(loss, gates)[0].abs() / 4
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)
    normed = head_importance(loaded.anatomy, [batch])
    torch.testing.assert_close(normed.norm(dim=1), torch.ones(loaded.anatomy.n_layers))


def test_select_heads_is_global_and_keeps_one_per_layer():
    importance = torch.tensor([[0.1, 0.2, 0.3], [5.0, 6.0, 7.0]])
    assert select_heads(importance, 0.34) == [[2], [0, 1, 2]]  # round(0.34 * 6) = 2 lowest: (0,0), (0,1)
    assert select_heads(importance, 0.99) == [[2], [2]]  # a layer never loses its last head
    assert select_heads(importance, 0.0) == [[0, 1, 2], [0, 1, 2]]
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        select_heads(importance, 1.0)


def test_shrink_rejects_an_empty_layer(make_loaded):
    loaded = make_loaded("bert")
    with pytest.raises(ValueError, match="at least one per layer"):
        shrink_heads(loaded.anatomy, [[0], [], [1]])


@pytest.mark.parametrize("amount", [0.0, 0.3, 0.75])
def test_magnitude_pruning_reaches_the_sparsity_on_the_smallest_weights(make_loaded, amount):
    loaded = make_loaded("bert")
    linears = [m for m in loaded.anatomy.layers().modules() if isinstance(m, torch.nn.Linear)]
    weights = torch.cat([m.weight.detach().flatten().abs() for m in linears])
    threshold = weights.sort().values[round(amount * len(weights)) - 1] if amount else -1.0
    reached = magnitude_prune(loaded.anatomy, amount)
    assert reached == pytest.approx(round(amount * len(weights)) / len(weights), abs=0)
    assert sparsity(loaded.anatomy) == reached
    for m in linears:  # no hidden reparametrisation left, and exactly the small weights are gone
        assert not hasattr(m, "weight_orig")
        assert (m.weight.detach().abs()[m.weight != 0] > threshold).all()
    with pytest.raises(ValueError, match="sparsity"):
        magnitude_prune(loaded.anatomy, 1.0)


def test_keep_sparsity_holds_zeros_under_training(make_loaded):
    loaded = make_loaded("bert")
    magnitude_prune(loaded.anatomy, 0.5)
    zeros = [(m.weight == 0).clone() for m in loaded.anatomy.layers().modules() if isinstance(m, torch.nn.Linear)]
    batch = _batch(loaded.tokenizer.vocab_size)
    with keep_sparsity(loaded.anatomy):
        opt = torch.optim.SGD([p for p in loaded.model.parameters() if p.requires_grad], lr=1.0)
        loaded.model(**batch).loss.backward()
        opt.step()
    after = [m.weight == 0 for m in loaded.anatomy.layers().modules() if isinstance(m, torch.nn.Linear)]
    assert all((a >= z).all() for a, z in zip(after, zeros))
    assert sparsity(loaded.anatomy) == pytest.approx(0.5, abs=1e-3)
