"""The anatomy adapter: sizes, modules, representations and the prefix cache, on tiny models and MiniLM."""

from __future__ import annotations

import pytest
import torch
from tiny import make_tiny, random_batch
from transformers import AutoModel

from pipeline.anatomy import Anatomy, pool


@pytest.mark.parametrize(
    "family,head", [("bert", "classifier"), ("bert", "mlm"), ("distilbert", "classifier"), ("distilbert", "mlm")]
)
def test_sizes_and_modules(family, head):
    anatomy = Anatomy(make_tiny(family, head))
    assert anatomy.family == family
    assert (anatomy.n_heads, anatomy.head_dim, anatomy.d_model, anatomy.d_ff) == (4, 8, 32, 48)
    assert anatomy.heads_per_layer == (4,) * anatomy.n_layers
    assert anatomy.head_ids == ((0, 1, 2, 3),) * anatomy.n_layers
    assert anatomy.out_proj(0).in_features == 32
    assert anatomy.ffn_act(0) is not anatomy.ffn_act(1)  # one module per layer, so hooks stay per layer
    assert anatomy.word_embeddings.num_embeddings == 120


def test_minilm_anatomy(minilm):
    a = minilm.anatomy
    assert (a.family, a.n_layers, a.n_heads, a.head_dim, a.d_model, a.d_ff) == ("bert", 6, 12, 32, 384, 1536)


def test_minilm_hidden_states_equal_plain_transformers(minilm):
    plain = AutoModel.from_pretrained(minilm.source).eval()
    enc = minilm.tokenize(["The doctor asked the nurse to help her.", "He is a teacher."])
    with torch.no_grad():
        ours = minilm.anatomy.hidden_states(enc["input_ids"], enc["attention_mask"])
        ref = plain(**enc, output_hidden_states=True).hidden_states
    assert len(ours) == 7
    for a, b in zip(ours, ref):
        assert torch.equal(a, b)


def test_representations_pool_every_layer(minilm):
    enc = minilm.tokenize(["a short one", "and a somewhat longer sentence here"])
    reps = minilm.anatomy.representations(enc["input_ids"], enc["attention_mask"], "mean")
    states = minilm.anatomy.hidden_states(enc["input_ids"], enc["attention_mask"])
    assert reps.shape == (7, 2, 384)
    n0 = int(enc["attention_mask"][0].sum())
    torch.testing.assert_close(reps[3, 0], states[3][0, :n0].mean(0))
    torch.testing.assert_close(
        minilm.anatomy.representations(enc["input_ids"], enc["attention_mask"], "cls")[6], states[6][:, 0]
    )


def test_pool_rejects_unknown_pooling():
    with pytest.raises(ValueError, match="'cls' or 'mean'"):
        pool(torch.zeros(1, 2, 3), torch.ones(1, 2), "max")


@pytest.mark.parametrize("family,head", [("bert", "classifier"), ("distilbert", "mlm")])
def test_start_at_equals_full_forward(family, head):
    model = make_tiny(family, head)
    anatomy = Anatomy(model)
    ids, mask = random_batch()
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask).logits
        states = anatomy.hidden_states(ids, mask)
        for layer in range(anatomy.n_layers):
            with anatomy.start_at(layer, states[layer]):
                assert len(anatomy.layers()) == anatomy.n_layers - layer
                assert torch.equal(model(input_ids=ids, attention_mask=mask).logits, full)
    assert len(anatomy.layers()) == anatomy.n_layers
    assert not anatomy.embeddings._forward_hooks


def test_start_at_restores_after_error_and_checks_shape():
    model = make_tiny("bert")
    anatomy = Anatomy(model)
    ids, mask = random_batch(batch=2)
    with (
        pytest.raises(ValueError, match="same batch and length"),
        anatomy.start_at(1, torch.zeros(3, ids.shape[1], 32)),
    ):
        model(input_ids=ids, attention_mask=mask)
    assert len(anatomy.layers()) == anatomy.n_layers and not anatomy.embeddings._forward_hooks


def test_out_of_range_errors_name_the_valid_range():
    anatomy = Anatomy(make_tiny("distilbert"))
    with pytest.raises(IndexError, match="layers 0..1"):
        anatomy.layer(2)
    with pytest.raises(IndexError, match="heads 0..3"):
        anatomy.check_head(0, 4)


def test_unsupported_family_is_named():
    from transformers import GPT2Config, GPT2Model

    with pytest.raises(ValueError, match="'gpt2' is not supported; supported families: bert, distilbert"):
        Anatomy(GPT2Model(GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=10)))
