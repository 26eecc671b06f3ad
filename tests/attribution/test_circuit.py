"""Bias circuits on a planted model: head A (layer 0) writes the gender of the text, head B (layer 2) reads it and
writes the class bias, and nothing else carries gender to the readout; the circuit found is emb -> A -> B ->
readout, it carries the whole bias, removing it removes the bias and removing random edges of the same number
does not. The size search (geometric grid, then bisection) is checked on stubbed faithfulness curves."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from tiny import make_tiny

from attribution.analysis import AttributionJob
from attribution.circuit import carried, edge_grid, find_circuit, n_stored, smallest_k
from attribution.config import AttributionConfig
from attribution.data import AttributionData, aligned_pairs, split_rows
from attribution.eap import EdgeAttributionPatching
from attribution.eap_graph import Node
from attribution.eap_method import run_circuit, run_eap
from attribution.scores import SkewedClassProb, SkewGap, TrueClassProb
from pipeline.anatomy import Anatomy
from pipeline.data import TaskData
from pipeline.models import LoadedModel

from .conftest import FEMALE_WORDS, MALE_WORDS, OCCUPATIONS, TEMPLATES

A, B = Node("head", 0, 1), Node("head", 2, 3)
CIRCUIT = [(Node("emb"), A), (A, B), (B, Node("readout"))]


@torch.no_grad()
def _planted(tokenizer) -> LoadedModel:
    """Dims 0/1 hold the gender of gendered words; A reads ``x0 - x1`` (uniform attention) and writes dims 2/3, B
    reads ``x2 - x3`` and writes dims 4/5, the pooler and classifier read ``x4 - x5`` only. No other head or FFN
    reads dims 0..5 or writes them, so the tiny model's random weights are distractors that carry no gender."""
    model = make_tiny("bert", "classifier", seed=3, num_labels=2)
    anatomy = Anatomy(model)
    words = anatomy.word_embeddings.weight
    words[:, :8] = 0.0
    for word in MALE_WORDS + FEMALE_WORDS:
        sign = 1.0 if word in MALE_WORDS else -1.0
        words[tokenizer.convert_tokens_to_ids(word), :2] = torch.tensor([sign, -sign]) * 4.0
    for emb in (anatomy.embeddings.position_embeddings, anatomy.embeddings.token_type_embeddings):
        emb.weight[:, :8] = 0.0
    d = anatomy.head_dim
    for layer in range(anatomy.n_layers):
        for lin in anatomy.qkv(layer):
            lin.weight[:, :6] = 0.0
        anatomy.out_proj(layer).weight[:6] = 0.0
        anatomy.ffn_act(layer).dense.weight[:, :6] = 0.0
        anatomy.layer(layer).output.dense.weight[:6] = 0.0
        anatomy.layer(layer).output.dense.bias[:6] = 0.0
        anatomy.out_proj(layer).bias[:6] = 0.0
    for (layer, head), read, write in ((A.layer, A.head), 0, 2), ((B.layer, B.head), 2, 4):
        rows = slice(head * d, (head + 1) * d)
        for lin in anatomy.qkv(layer):
            lin.weight[rows], lin.bias[rows] = 0.0, 0.0
        anatomy.qkv(layer)[2].weight[rows.start, read : read + 2] = torch.tensor([1.0, -1.0])
        anatomy.out_proj(layer).weight[:, rows] = 0.0
        anatomy.out_proj(layer).weight[write : write + 2, rows.start] = torch.tensor([3.0, -3.0])
    pooler = anatomy.base.pooler.dense
    pooler.weight[0], pooler.bias[0] = 0.0, 0.0
    pooler.weight[0, 4], pooler.weight[0, 5] = 0.5, -0.5
    model.classifier.weight.zero_()
    model.classifier.bias.zero_()
    model.classifier.weight[:, 0] = torch.tensor([1.5, -1.5])
    return LoadedModel(model, tokenizer, anatomy, "classifier", True, "planted-circuit")


@pytest.fixture(scope="module")
def planted_circuit(tiny_tokenizer):
    loaded = _planted(tiny_tokenizer)
    rng = np.random.default_rng(5)
    texts = [TEMPLATES[i % len(TEMPLATES)].format(o=OCCUPATIONS[rng.integers(len(OCCUPATIONS))],
                                                   p=("he", "she")[i % 2], n=("john", "mary")[i % 2])
             for i in range(16)]  # fmt: skip
    task = TaskData("planted", tuple(texts), np.ones(16, dtype=np.int64), np.arange(16) % 2, ("m", "f"))
    data = aligned_pairs(AttributionData.from_task(loaded, task), "test")[0]
    return EdgeAttributionPatching(loaded, SkewedClassProb([-1.0, 1.0])), data


def test_the_planted_circuit_is_found_and_carries_the_whole_bias(planted_circuit):
    eap, data = planted_circuit
    circuit = find_circuit(eap, data, share=0.9, max_edges=6, n_random=8, seed=0)
    assert set(circuit.edges) == set(CIRCUIT) and len(circuit.edges) == 3
    assert set(zip(circuit.ranking["source"][:3], circuit.ranking["target"][:3])) == {
        (u.name, v.name) for u, v in CIRCUIT
    }
    assert circuit.recovered == pytest.approx(1.0, abs=1e-6)
    assert circuit.left == pytest.approx(0.0, abs=1e-6)  # removing the circuit removes the bias
    assert circuit.random_left > 0.6  # random sets of 3 edges rarely touch it
    top = circuit.curve[circuit.curve["kept"] == "top"]
    random = circuit.curve[circuit.curve["kept"] == "random"]["recovered"].to_numpy()
    # the scan of the grid 1, 2, 3, 5, 6 stops at 3, the first size that carries 0.9; nothing to bisect below it
    assert list(top["k"]) == [1, 2, 3] and top["recovered"].tolist() == pytest.approx([0.0, 0.0, 1.0], abs=1e-6)
    assert (random < 0.5).all() and len(random) == 3
    assert circuit.example_scores.shape == (len(circuit.examples), n_stored(3, len(eap.graph)))


def test_the_grid_grows_geometrically_to_the_budget():
    assert edge_grid(12000)[:11] == [1, 2, 3, 5, 8, 13, 21, 34, 54, 86, 138] and edge_grid(12000)[-1] == 12000
    assert len(edge_grid(12000)) == 21 and edge_grid(100, 20) == [1, 2, 3, 5, 8, 13, 20] and edge_grid(1) == [1]
    with pytest.raises(ValueError, match="budget"):
        edge_grid(0)


@pytest.mark.parametrize("need", [1, 2, 4, 20, 21, 47, 80, 139, 999, 1000])
def test_the_search_finds_the_exact_smallest_size_of_a_monotone_curve(need):
    calls = []
    curve = lambda k: 0.8 * min(k / need, 1.0) + 0.2 * max(k - need, 0) / 1000  # reaches 0.8 exactly at k = need
    grid = edge_grid(1000)
    size, seen = smallest_k(lambda k: calls.append(k) or curve(k), grid, 0.8)
    assert size == need and seen == {k: curve(k) for k in calls} and len(calls) == len(set(calls))
    crossing = next(i for i, k in enumerate(grid) if k >= need)
    gap = grid[crossing] - (grid[crossing - 1] if crossing else 0)
    assert len(calls) <= crossing + 1 + int(np.ceil(np.log2(gap)))  # grid points to the crossing, then bisection


def test_the_search_stops_at_the_cap_and_finds_a_crossing_of_a_bumpy_curve():
    size, seen = smallest_k(lambda k: k / 100, edge_grid(1000, 20), 0.8)
    assert size == 20 and sorted(seen) == edge_grid(1000, 20)  # the cap: no crossing, the whole budget
    # not monotone: 4 carries the share, but the grid point 5 does not, so the scan goes on to 8 and the bisection
    # of (5, 8] finds the crossing at 8, not the smallest one
    assert smallest_k(lambda k: 0.9 if k == 4 or k >= 8 else 0.0, edge_grid(10), 0.8)[0] == 8
    assert smallest_k(lambda k: 0.9 if k == 5 or k >= 8 else 0.0, edge_grid(10), 0.8)[0] == 5


def test_the_planted_bias_is_real_and_edge_sets_carry_it_exactly(planted_circuit):
    eap, data = planted_circuit
    (whole, single, empty), total = carried(eap, data, [CIRCUIT, CIRCUIT[1:], []])
    batch = data.batch(torch.arange(len(data)))
    with torch.no_grad():
        gap = (eap.metric(batch, "cf") - eap.metric(batch)) * eap.sign(batch)
    assert float(gap.mean()) > 0.05  # the planted bias, the skew-oriented gap of the model
    torch.testing.assert_close(total, gap, rtol=0, atol=1e-6)  # M_0 is the text's metric here
    torch.testing.assert_close(whole, total, rtol=0, atol=1e-6)
    assert single.abs().max() < 1e-6 and empty.abs().max() < 1e-6  # without emb -> A the swap never reaches B
    left, _ = carried(eap, data, [CIRCUIT[:1]], keep=False)
    assert left.abs().max() < 1e-6


def test_bad_requests_are_refused(planted_circuit):
    with pytest.raises(ValueError, match="share"):
        find_circuit(*planted_circuit, share=1.5)
    with pytest.raises(ValueError, match="max_edges"):
        find_circuit(*planted_circuit, max_edges=0)


def _job(planted_circuit) -> AttributionJob:
    eap, data = planted_circuit
    return AttributionJob(eap.loaded, SkewGap([-1.0, 1.0]), data, AttributionConfig(n_boot=100, batch_size=8))


def test_the_circuit_record_writes_the_planted_circuit_as_tidy_edge_rows(planted_circuit):
    table = run_circuit(_job(planted_circuit))
    edges = table[table["unit"] == "edge"]
    assert list(edges["subset"]) == list(edges["source"] + "->" + edges["target"])
    assert set(edges["metric"]) == {"circuit_edge", "edge_example_eap"}
    edges = edges[edges["metric"] == "circuit_edge"]
    assert set(edges["subset"]) == {"emb->L0.H1", "L0.H1->L2.H3", "L2.H3->readout"} and sorted(edges["rank"]) == [
        1,
        2,
        3,
    ]
    reader = edges.set_index("target")[["layer", "head"]]
    assert reader.loc["L0.H1"].tolist() == [0, 1] and reader.loc["readout"].tolist() == [-1, -1]
    shares = table[table["unit"] == "model"].set_index("metric")["value"]
    assert shares["circuit_recovered"] == pytest.approx(1.0, abs=1e-6)
    assert shares["circuit_left"] == pytest.approx(0.0, abs=1e-6) and shares["circuit_size"] == 3
    curve = table[table["metric"] == "faithfulness"]
    assert sorted(set(curve["subset"])) == ["random", "top"] and curve["k"].tolist() == [1, 2, 3] * 2
    n_confirm = len(split_rows(len(planted_circuit[1]), 0)[1])
    assert set(table[table["metric"] != "edge_example_eap"]["n"]) == {n_confirm}


def test_the_circuit_record_stores_the_top_edges_per_example(planted_circuit):
    eap, data = planted_circuit
    table = run_circuit(_job(planted_circuit))
    rows = table[table["metric"] == "edge_example_eap"]
    select = split_rows(len(data), 0)[0]  # the planted data are aligned pairs: rows are the data's own ids
    assert rows["subset"].nunique() == n_stored(3, len(eap.graph)) and set(rows["example"]) == set(select)
    assert len(rows) == rows["subset"].nunique() * len(select) and set(rows["n"]) == {1}
    means = rows.groupby("subset")["value"].mean()
    circuit = table[table["metric"] == "circuit_edge"].set_index("subset")["value"]
    np.testing.assert_allclose(means[circuit.index], circuit, atol=1e-9)  # the circuit is their top 3
    assert set(means.abs().sort_values(ascending=False).index[:3]) == set(circuit.index)


def test_the_eap_record_scores_every_edge_and_ranks_the_planted_ones_first(planted_circuit):
    eap, _ = planted_circuit
    table = run_eap(_job(planted_circuit))
    assert len(table) == len(eap.graph) and set(table["unit"]) == {"edge"} and set(table["metric"]) == {"eap"}
    top = table.reindex(table["value"].abs().sort_values(ascending=False).index)[:3]
    assert set(top["subset"]) == {"emb->L0.H1", "L0.H1->L2.H3", "L2.H3->readout"}
    assert (top["ci_low"] <= top["value"]).all() and (top["exact_n"] > 0).all()


def test_the_records_skip_a_score_without_twins(planted_circuit):
    eap, data = planted_circuit
    job = AttributionJob(
        eap.loaded,
        TrueClassProb(),
        replace(data, cf_input_ids=None, cf_attention_mask=None, cf_target_pos=None),
        AttributionConfig(),
    )
    for run, metric in ((run_eap, "eap"), (run_circuit, "circuit")):
        row = run(job).iloc[0]
        assert row["metric"] == metric and np.isnan(row["value"]) and "no gender-swapped twins" in row["skipped"]
