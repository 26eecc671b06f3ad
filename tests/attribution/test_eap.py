"""Edge attribution patching: the contributions add up to every reader's input, the EAP score is the derivative of
the metric with respect to an edge gate (finite differences, float64), EAP-IG is the mean of that derivative along
the path, and exact edge patching equals a hand-written BERT forward pass with that edge's input replaced."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from attribution.data import AttributionData, aligned_pairs, split_rows
from attribution.eap import EdgeAttributionPatching
from attribution.eap_graph import Graph, Node
from attribution.scores import CounterfactualGap, SkewedClassProb
from pipeline.anatomy import shrink_heads

ORIENTATION = [1.0, -1.0, 0.5]
EDGES = [(Node("emb"), Node("head", 0, 1)), (Node("head", 0, 2), Node("head", 2, 0)), (Node("ffn", 1), Node("readout")),
         (Node("head", 1, 3), Node("ffn", 1)), (Node("ffn", 0), Node("head", 1, 2))]  # fmt: skip


@pytest.fixture
def setup(tiny_loaded, tiny_task):
    loaded = tiny_loaded("bert", "classifier", num_labels=3)
    loaded.model.double()
    data = aligned_pairs(AttributionData.from_task(loaded, tiny_task), "test")[0].subset(np.arange(8))
    return EdgeAttributionPatching(loaded, SkewedClassProb(ORIENTATION)), data


def _gate(graph: Graph, edge: tuple[Node, Node], value: float) -> torch.Tensor:
    gates = torch.zeros(graph.mask.shape, dtype=torch.float64)
    gates[graph.row[edge[0]], graph.col[edge[1]]] = value
    return gates


def test_graph_of_a_three_layer_model(setup):
    graph = setup[0].graph
    assert len(graph.writers) == len(graph.readers) == 1 + 3 * 5
    # heads of layer l read 1 + 5 l writers, the FFN of layer l 5 + 5 l, the readout all 16
    assert len(graph) == sum(4 * (1 + 5 * l) + 5 + 5 * l for l in range(3)) + 16
    assert graph.mask[graph.row[Node("head", 0, 3)], graph.col[Node("ffn", 0)]]
    assert not graph.mask[graph.row[Node("head", 1, 0)], graph.col[Node("head", 1, 1)]]
    assert [n.name for n in graph.writers[:2]] == ["emb", "L0.H0"] and graph.readers[-1].name == "readout"


def test_contributions_add_up_to_every_readers_input(setup):
    eap, data = setup
    batch = data.batch(torch.arange(len(data)))
    view = batch.view("orig")
    seen = {}
    anatomy = eap.loaded.anatomy
    handles = [anatomy.layer(l).intermediate.register_forward_pre_hook(lambda m, a, l=l: seen.__setitem__(l, a[0]))
               for l in range(3)]  # fmt: skip
    at = eap.contributions(batch, "orig")
    for handle in handles:
        handle.remove()
    states = anatomy.hidden_states(view.input_ids, view.attention_mask)
    for layer in range(3):
        torch.testing.assert_close(at[("attn", layer)].sum(0), states[layer], rtol=0, atol=1e-12)
        torch.testing.assert_close(at[("ffn", layer)].sum(0), seen[layer], rtol=0, atol=1e-12)
    torch.testing.assert_close(at[("readout", -1)].sum(0), states[3], rtol=0, atol=1e-12)


def _metric_at(eap, batch, edge, value, corrupt):
    return eap.patched(batch, _gate(eap.graph, edge, value), reference=corrupt) * eap.sign(batch)


@pytest.mark.parametrize("edge", EDGES, ids=lambda e: f"{e[0].name}->{e[1].name}")
def test_eap_score_is_the_derivative_of_the_metric_in_the_edge_gate(setup, edge):
    eap, data = setup
    batch = data.batch(torch.arange(len(data)))
    corrupt = eap.contributions(batch, "cf")
    eps = 1e-5
    fd = (_metric_at(eap, batch, edge, eps, corrupt) - _metric_at(eap, batch, edge, -eps, corrupt)) / (2 * eps)
    scores = eap.estimates(data, batch_size=3)[:, eap.graph.row[edge[0]], eap.graph.col[edge[1]]]
    assert fd.abs().max() > 1e-5  # the edge matters on this model
    torch.testing.assert_close(scores, fd, rtol=1e-4, atol=1e-9)


def test_eap_ig_is_the_mean_derivative_at_the_path_midpoints(setup):
    eap, data = setup
    batch = data.batch(torch.arange(len(data)))
    clean, corrupt = eap.contributions(batch, "orig"), eap.contributions(batch, "cf")
    shift = corrupt[("attn", 0)][0] - clean[("attn", 0)][0]
    edge, eps, fds = EDGES[2], 1e-5, []
    for alpha in (0.25, 0.75):
        handle = eap.loaded.anatomy.embeddings.register_forward_hook(lambda m, a, out, alpha=alpha: out + alpha * shift)
        try:  # the edge still carries twin - text, from the shifted pass
            here = eap.contributions(batch, "orig")
            moved = {key: here[key] + corrupt[key] - clean[key] for key in here}
            up, down = _metric_at(eap, batch, edge, eps, moved), _metric_at(eap, batch, edge, -eps, moved)
        finally:
            handle.remove()
        fds.append((up - down) / (2 * eps))
    scores = eap.estimates(data, steps=2)[:, eap.graph.row[edge[0]], eap.graph.col[edge[1]]]
    torch.testing.assert_close(scores, (fds[0] + fds[1]) / 2, rtol=1e-4, atol=1e-9)
    assert not torch.allclose(scores, eap.estimates(data)[:, eap.graph.row[edge[0]], eap.graph.col[edge[1]]])


def _brute(model, ids, mask, patch=None):
    """A BERT classifier written out by hand: every writer's contribution at every reader (post-LayerNorm,
    carried with the pass's own LayerNorm scales) and the logits; ``patch = (reader, delta)`` adds ``delta`` to
    that reader's input only (a head's q/k/v input, an FFN's input without its skip, the pooler's input)."""
    bert, n_heads = model.bert, model.config.num_attention_heads
    d_head = model.config.hidden_size // n_heads
    pad = (1 - mask[:, None, :].to(model.dtype)) * torch.finfo(model.dtype).min  # (batch, 1, key)

    def add(reader, x):
        return x + patch[1] if patch is not None and patch[0] == reader else x

    def norm(ln, rows, s):  # rows: list of contributions summing to s; the constants are the last one
        sigma = (s.var(-1, unbiased=False, keepdim=True) + ln.eps).sqrt()
        out = [ln.weight * (r - r.mean(-1, keepdim=True)) / sigma for r in rows]
        out[-1] = out[-1] + ln.bias
        return out

    x = bert.embeddings(input_ids=ids)
    rows, seen = [x, torch.zeros_like(x)], {}  # the writers so far, then the constants
    for layer, block in enumerate(bert.encoder.layer):
        att, seen[("attn", layer)] = block.attention, torch.stack(rows)
        heads = []
        for h in range(n_heads):
            part = slice(h * d_head, (h + 1) * d_head)
            xin = add(Node("head", layer, h), x)
            q, k, v = (
                F.linear(xin, lin.weight[part], lin.bias[part])
                for lin in (att.self.query, att.self.key, att.self.value)
            )
            probs = (q @ k.transpose(1, 2) / math.sqrt(d_head) + pad).softmax(-1)
            heads.append((probs @ v) @ att.output.dense.weight[:, part].T)
        rows = rows[:-1] + heads + [rows[-1] + att.output.dense.bias]
        h1 = block.attention.output.LayerNorm(x + sum(heads) + att.output.dense.bias)
        rows = norm(block.attention.output.LayerNorm, rows, x + sum(heads) + att.output.dense.bias)
        seen[("ffn", layer)] = torch.stack(rows)
        f = block.output.dense(F.gelu(block.intermediate.dense(add(Node("ffn", layer), h1))))
        rows = norm(block.output.LayerNorm, rows[:-1] + [f, rows[-1]], h1 + f)
        x = block.output.LayerNorm(h1 + f)
    seen[("readout", -1)] = torch.stack(rows)
    pooled = torch.tanh(bert.pooler.dense(add(Node("readout"), x)[:, 0]))
    return seen, model.classifier(pooled)


@pytest.mark.parametrize("edge", EDGES, ids=lambda e: f"{e[0].name}->{e[1].name}")
def test_exact_edge_patching_equals_a_hand_written_forward_with_that_input_replaced(setup, edge):
    eap, data = setup
    model, batch = eap.loaded.model, data.batch(torch.arange(len(data)))
    orig, cf = batch.view("orig"), batch.view("cf")
    clean_rows, clean_logits = _brute(model, orig.input_ids, orig.attention_mask)
    corrupt_rows, _ = _brute(model, cf.input_ids, cf.attention_mask)
    u, v = edge
    group = ("attn", v.layer) if v.kind == "head" else ("ffn", v.layer) if v.kind == "ffn" else ("readout", -1)
    row = eap.graph.row[u]
    delta = corrupt_rows[group][row] - clean_rows[group][row]
    _, logits = _brute(model, orig.input_ids, orig.attention_mask, (v, delta))
    orient, y = torch.tensor(ORIENTATION, dtype=torch.float64)[batch.labels], batch.labels[:, None]
    expected = (
        orient * (logits.softmax(-1).gather(1, y) - clean_logits.softmax(-1).gather(1, y))[:, 0] * eap.sign(batch)
    )
    assert expected.abs().max() > 1e-5
    torch.testing.assert_close(eap.exact(data, [edge], batch_size=5)[0], expected, rtol=1e-7, atol=1e-12)
    patched = eap.patched(batch, _gate(eap.graph, edge, 1.0), reference=eap.contributions(batch, "cf"))
    torch.testing.assert_close((patched - eap.metric(batch)) * eap.sign(batch), expected, rtol=1e-7, atol=1e-12)


def test_attribute_scores_every_edge_and_confirms_the_top_ones_on_the_other_half(setup):
    eap, data = setup
    frame = eap.attribute(data, confirm_top=3, n_boot=50)
    assert len(frame) == len(eap.graph) and frame["q"].notna().all() and set(frame["metric"]) == {"eap"}
    screen, confirm = split_rows(len(data), 0)
    assert set(frame["n"]) == {len(screen)} and frame["pairs_dropped"].eq(0).all()
    scores = eap.estimates(data.subset(screen))
    first = frame.iloc[0]
    assert first["value"] == pytest.approx(float(scores[:, eap.graph.row[Node("emb")], 0].mean()), abs=1e-12)
    top = frame[frame["exact_n"] > 0]
    assert len(top) == 3 and set(top["exact_n"]) == {len(confirm)}
    assert top.index.tolist() == sorted(frame["value"].abs().sort_values(ascending=False).index[:3].tolist())
    edges = [(_node(s), _node(t)) for s, t in zip(top["source"], top["target"])]
    exact = eap.exact(data.subset(confirm), edges)
    assert top["exact"].tolist() == pytest.approx(exact.mean(1).tolist(), abs=1e-12)


def test_batched_equals_per_example(setup):
    eap, data = setup
    torch.testing.assert_close(
        eap.estimates(data, batch_size=1), eap.estimates(data, batch_size=8), rtol=1e-9, atol=1e-12
    )
    torch.testing.assert_close(
        eap.exact(data, EDGES, batch_size=1), eap.exact(data, EDGES, batch_size=8), rtol=1e-9, atol=1e-12
    )


def _node(name: str) -> Node:
    if name in ("emb", "readout"):
        return Node(name)
    layer, rest = name[1:].split(".")
    return Node("ffn", int(layer)) if rest == "FFN" else Node("head", int(layer), int(rest[1:]))


def test_a_pruned_model_keeps_its_head_ids_and_the_derivative(tiny_loaded, tiny_task):
    loaded = tiny_loaded("bert", "classifier", num_labels=3)
    shrink_heads(loaded.anatomy, [[0, 1, 3], [2], [0, 1, 2, 3]])
    loaded.anatomy.head_ids = ((0, 1, 3), (2,), (0, 1, 2, 3))
    loaded.model.double()
    data = aligned_pairs(AttributionData.from_task(loaded, tiny_task), "test")[0].subset(np.arange(6))
    eap = EdgeAttributionPatching(loaded, SkewedClassProb(ORIENTATION))
    assert len(eap.graph.writers) == 1 + 4 + 2 + 5
    edge = (Node("head", 0, 2), Node("head", 1, 0))  # heads 3 of layer 0 and 2 of layer 1
    batch = data.batch(torch.arange(len(data)))
    corrupt = eap.contributions(batch, "cf")
    fd = (_metric_at(eap, batch, edge, 1e-5, corrupt) - _metric_at(eap, batch, edge, -1e-5, corrupt)) / 2e-5
    torch.testing.assert_close(
        eap.estimates(data)[:, eap.graph.row[edge[0]], eap.graph.col[edge[1]]], fd, rtol=1e-4, atol=1e-9
    )
    frame = eap.attribute(data, confirm_top=0, n_boot=20)
    assert ("L0.H3", "L1.H2") in set(zip(frame["source"], frame["target"]))
    assert set(frame.loc[frame["target_layer"] == 1, "target_head"]) <= {-1, 2}


def test_bad_requests_are_refused(tiny_loaded, setup):
    with pytest.raises(ValueError, match="text alone"):
        EdgeAttributionPatching(setup[0].loaded, CounterfactualGap())
    with pytest.raises(ValueError, match="BERT-shaped"):
        Graph(tiny_loaded("distilbert", "classifier").anatomy)
