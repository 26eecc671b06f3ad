"""Head and neuron gates against hand computations, per-example vs global, exactness, gradients, hook hygiene."""

from __future__ import annotations

import math

import pytest
import torch
from tiny import make_tiny, random_batch
from torch.nn import functional as F

from pipeline.anatomy import Anatomy
from pipeline.gates import HeadGates, NeuronGates, RecordHeads, RecordNeurons, ones_gates

FAMILIES = ["bert", "distilbert"]


def _manual_block(anatomy: Anatomy, layer: int, x: torch.Tensor, mask: torch.Tensor, zero_head=None, zero_neuron=None):
    """Brute-force one transformer block from its weights, optionally with one head's context or one FFN
    neuron zeroed. Written out per family on purpose: it is the reference the hooks are checked against."""
    block = anatomy.layer(layer)
    q_lin, k_lin, v_lin = anatomy.qkv(layer)
    b, s, _ = x.shape
    h, d = anatomy.heads_per_layer[layer], anatomy.head_dim

    def split(t):  # (b, s, h*d) -> (b, h, s, d)
        return t.view(b, s, h, d).transpose(1, 2)

    q, k, v = split(q_lin(x)), split(k_lin(x)), split(v_lin(x))
    scores = q @ k.transpose(-1, -2) / math.sqrt(d)  # (b, h, s, s)
    scores = scores.masked_fill(mask[:, None, None, :] == 0, torch.finfo(x.dtype).min)
    ctx = scores.softmax(-1) @ v  # (b, h, s, d)
    if zero_head is not None:
        ctx[:, zero_head] = 0
    z = ctx.transpose(1, 2).reshape(b, s, h * d)
    attn = anatomy.out_proj(layer)(z)
    if anatomy.family == "bert":
        a = block.attention.output.LayerNorm(attn + x)
        inter = block.intermediate(a)
        if zero_neuron is not None:
            inter[..., zero_neuron] = 0
        return block.output.LayerNorm(block.output.dense(inter) + a)
    a = block.sa_layer_norm(attn + x)
    inter = block.ffn.activation(block.ffn.lin1(a))
    if zero_neuron is not None:
        inter[..., zero_neuron] = 0
    return block.output_layer_norm(block.ffn.lin2(inter) + a)


def _last_hidden(model, ids, mask):
    return model.base_model(input_ids=ids, attention_mask=mask).last_hidden_state


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_zero_head_equals_hand_computation(family, attn):
    model = make_tiny(family, attn_implementation=attn)
    anatomy = Anatomy(model)
    ids, mask = random_batch()
    layer, head = anatomy.n_layers - 1, 2
    with torch.no_grad():
        entering = anatomy.hidden_states(ids, mask)[layer]
        expected = _manual_block(anatomy, layer, entering, mask, zero_head=head)
        gates = ones_gates(anatomy)
        gates[layer, head] = 0
        with HeadGates(anatomy, gates):
            got = _last_hidden(model, ids, mask)
    valid = mask.bool()
    torch.testing.assert_close(got[valid], expected[valid], atol=1e-6, rtol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_zero_neuron_equals_hand_computation(family):
    model = make_tiny(family)
    anatomy = Anatomy(model)
    ids, mask = random_batch()
    layer, neuron = anatomy.n_layers - 1, 7
    with torch.no_grad():
        entering = anatomy.hidden_states(ids, mask)[layer]
        expected = _manual_block(anatomy, layer, entering, mask, zero_neuron=neuron)
        gates = ones_gates(anatomy, neurons=True)
        gates[layer, neuron] = 0
        with NeuronGates(anatomy, gates):
            got = _last_hidden(model, ids, mask)
    valid = mask.bool()
    torch.testing.assert_close(got[valid], expected[valid], atol=1e-6, rtol=0)


def test_zero_head_on_minilm_equals_hand_computation(minilm):
    anatomy = minilm.anatomy
    enc = minilm.tokenize(["The nurse said she would be late.", "The engineer fixed his bike."])
    ids, mask = enc["input_ids"], enc["attention_mask"]
    layer, head = 3, 5
    with torch.no_grad():
        entering = anatomy.hidden_states(ids, mask)[layer]
        expected = _manual_block(anatomy, layer, entering, mask, zero_head=head)
        gates = ones_gates(anatomy)
        gates[layer, head] = 0
        with HeadGates(anatomy, gates, layers=[layer]):
            got = anatomy.hidden_states(ids, mask)[layer + 1]
    torch.testing.assert_close(got[mask.bool()], expected[mask.bool()], atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("kind", ["head", "neuron"])
def test_per_example_gates_equal_loop_of_global_gates(family, kind):
    model = make_tiny(family)
    anatomy = Anatomy(model)
    ids, mask = random_batch(batch=4)
    cls = HeadGates if kind == "head" else NeuronGates
    torch.manual_seed(1)
    per_row = torch.rand(4, anatomy.n_layers, anatomy.n_heads if kind == "head" else anatomy.d_ff)
    with torch.no_grad():
        with cls(anatomy, per_row):
            batched = model(input_ids=ids, attention_mask=mask).logits
        for row in range(4):
            with cls(anatomy, per_row[row]):
                single = model(input_ids=ids[row : row + 1], attention_mask=mask[row : row + 1]).logits
            torch.testing.assert_close(batched[row : row + 1], single, atol=1e-6, rtol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_all_ones_gates_change_nothing_exactly(family):
    model = make_tiny(family)
    anatomy = Anatomy(model)
    ids, mask = random_batch()
    with torch.no_grad():
        plain = model(input_ids=ids, attention_mask=mask).logits
        with HeadGates(anatomy, ones_gates(anatomy)), NeuronGates(anatomy, ones_gates(anatomy, neurons=True)):
            gated = model(input_ids=ids, attention_mask=mask).logits
        with HeadGates(anatomy, ones_gates(anatomy, batch=ids.shape[0])):
            gated_rows = model(input_ids=ids, attention_mask=mask).logits
    assert torch.equal(plain, gated)
    assert torch.equal(plain, gated_rows)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("kind", ["head", "neuron"])
def test_gate_gradients_equal_finite_differences(family, kind):
    model = make_tiny(family, dtype=torch.float64)
    anatomy = Anatomy(model)
    ids, mask = random_batch()
    cls = HeadGates if kind == "head" else NeuronGates
    gates = ones_gates(anatomy, neurons=kind == "neuron").double().requires_grad_(True)

    def score(g):
        with cls(anatomy, g):
            return model(input_ids=ids, attention_mask=mask).logits.softmax(-1)[:, 0].sum()

    score(gates).backward()
    eps = 1e-6
    for layer, unit in [(0, 1), (anatomy.n_layers - 1, 3)]:
        bump = torch.zeros_like(gates)
        bump[layer, unit] = eps
        with torch.no_grad():
            fd = (score(gates + bump) - score(gates - bump)) / (2 * eps)
        assert gates.grad[layer, unit].item() == pytest.approx(fd.item(), rel=1e-5, abs=1e-9)


def test_baseline_substitution_patches_a_head():
    """A closed gate with a recorded baseline reproduces the run the baseline came from, for that head."""
    model = make_tiny("bert")
    anatomy = Anatomy(model)
    ids, mask = random_batch(seed=0)
    ids_cf = ids.clone()
    ids_cf[:, 1] = 7
    with torch.no_grad(), RecordHeads(anatomy) as rec_cf:
        model(input_ids=ids_cf, attention_mask=mask)
    gates = ones_gates(anatomy)
    gates[0, :] = 0  # every head of layer 0 patched from the counterfactual run
    baseline = [rec_cf.z[l] for l in range(anatomy.n_layers)]
    with torch.no_grad(), HeadGates(anatomy, gates, baseline=baseline, layers=[0]), RecordHeads(anatomy) as rec:
        model(input_ids=ids, attention_mask=mask)
    # layer-0 heads now carry the counterfactual contexts; the output projection input is exactly that
    torch.testing.assert_close(rec.z[0], rec_cf.z[0], atol=0, rtol=0)


def test_mean_baseline_broadcasts():
    model = make_tiny("distilbert")
    anatomy = Anatomy(model)
    ids, mask = random_batch()
    mean = torch.randn(anatomy.n_layers, anatomy.n_heads, anatomy.head_dim)
    gates = ones_gates(anatomy)
    gates[1, 3] = 0
    with torch.no_grad(), HeadGates(anatomy, gates, baseline=mean), RecordHeads(anatomy, detach=True) as rec:
        model(input_ids=ids, attention_mask=mask)
    # RecordHeads was entered after HeadGates, so it sees the already-substituted input
    assert torch.allclose(rec.z[1][:, :, 3], mean[1, 3].expand_as(rec.z[1][:, :, 3]))


def test_record_neurons_shapes():
    model = make_tiny("bert")
    anatomy = Anatomy(model)
    ids, mask = random_batch(batch=2, seq=5)
    with torch.no_grad(), RecordNeurons(anatomy, layers=[0, 2]) as rec:
        model(input_ids=ids, attention_mask=mask)
    assert sorted(rec.act) == [0, 2]
    assert rec.act[2].shape == (2, 5, anatomy.d_ff)


def _n_hooks(anatomy: Anatomy) -> int:
    return sum(
        len(anatomy.out_proj(l)._forward_pre_hooks) + len(anatomy.ffn_act(l)._forward_hooks)
        for l in range(anatomy.n_layers)
    )


def test_hooks_removed_even_on_exception_and_nesting_works():
    model = make_tiny("bert")
    anatomy = Anatomy(model)
    ids, mask = random_batch()
    neurons = ones_gates(anatomy, neurons=True)
    with (
        pytest.raises(RuntimeError, match="boom"),
        HeadGates(anatomy, ones_gates(anatomy)),
        NeuronGates(anatomy, neurons),
    ):
        assert _n_hooks(anatomy) == 2 * anatomy.n_layers
        raise RuntimeError("boom")
    assert _n_hooks(anatomy) == 0
    outer = ones_gates(anatomy)
    outer[0, 0] = 0
    inner = ones_gates(anatomy)
    inner[1, 1] = 0
    both = outer * inner
    with torch.no_grad():
        with HeadGates(anatomy, outer):
            with HeadGates(anatomy, inner):
                nested = model(input_ids=ids, attention_mask=mask).logits
            assert _n_hooks(anatomy) == anatomy.n_layers
        with HeadGates(anatomy, both):
            joint = model(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(nested, joint, atol=1e-6, rtol=0)
    assert _n_hooks(anatomy) == 0


def test_bad_gate_shapes_and_batch_mismatch():
    model = make_tiny("bert")
    anatomy = Anatomy(model)
    ids, mask = random_batch(batch=4)
    with pytest.raises(ValueError, match=r"expected \(3, 4\)"):
        HeadGates(anatomy, torch.ones(2, 4))
    with pytest.raises(TypeError, match="torch.Tensor"):
        HeadGates(anatomy, [[1.0] * 4] * 3)
    with pytest.raises(IndexError, match="layers 0..2"):
        HeadGates(anatomy, ones_gates(anatomy), layers=[5])
    with (
        pytest.raises(ValueError, match="batch 3 but the forward batch is 4"),
        HeadGates(anatomy, ones_gates(anatomy, batch=3)),
    ):
        model(input_ids=ids, attention_mask=mask)
    assert _n_hooks(anatomy) == 0


def test_gates_keep_graph_for_ig_path():
    """Scaling all gates by alpha gives a smooth path: F(alpha=0) is the all-heads-off output."""
    model = make_tiny("bert")
    anatomy = Anatomy(model)
    ids, mask = random_batch()
    alpha = torch.tensor(0.0, requires_grad=True)
    with HeadGates(anatomy, alpha * ones_gates(anatomy)):
        out = F.log_softmax(model(input_ids=ids, attention_mask=mask).logits, -1)[:, 0].sum()
    out.backward()
    assert alpha.grad is not None and torch.isfinite(alpha.grad)
