"""Extraction: equal to per-example passes, one forward pass per batch, and a disk cache keyed by model and data."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from tiny import make_tiny

from pipeline.anatomy import Anatomy, pool
from pipeline.compress.prune import prune_heads
from pipeline.gates import RecordHeads
from pipeline.int8 import quantise_dynamic
from pipeline.models import LoadedModel
from probes.extract import Representations, extract, model_fingerprint
from probes.linear import LinearProbe, probe_heads

TEXTS = [
    "she is a nurse .",
    "he said that the [MASK] was late for his shift again today .",
    "the [MASK] told her patient to rest .",
    "ok",
    "his [MASK] , who works at the hospital in the city centre , was praised by the board of the clinic .",
    "they met the [MASK] .",
    "her [MASK] arrived .",
    "the [MASK] gave him a lift home after the long meeting .",
    "he is a [MASK] .",
    "she thanked the [MASK] for his advice on the case .",
]


class _CountForwards:
    """Count forward passes of the encoder with a pre-hook (removed on exit)."""

    def __init__(self, loaded: LoadedModel) -> None:
        self.loaded, self.calls = loaded, 0

    def __enter__(self):
        self.handle = self.loaded.anatomy.base.register_forward_pre_hook(self._count)
        return self

    def _count(self, module, args):
        self.calls += 1

    def __exit__(self, *exc):
        self.handle.remove()


def _loaded(tokenizer, family="bert", **overrides) -> LoadedModel:
    model = make_tiny(family, "classifier", vocab_size=tokenizer.vocab_size, max_position_embeddings=128, **overrides)
    return LoadedModel(model, tokenizer, Anatomy(model), "classifier", True, family)


@pytest.mark.parametrize("family", ["bert", "distilbert"])
def test_extraction_equals_single_example_passes(family, tiny_loaded, tmp_path):
    loaded = _loaded(tiny_loaded.tokenizer, family)
    reps = extract(loaded, TEXTS, batch_size=4, cache_dir=tmp_path, progress=False)
    n_layers, n_heads, d_head = loaded.anatomy.n_layers, loaded.anatomy.n_heads, loaded.anatomy.head_dim
    assert reps.layers["cls"].shape == (n_layers + 1, len(TEXTS), 32)
    assert reps.heads["mean"].shape == (n_layers, n_heads, len(TEXTS), d_head)
    for i, text in enumerate(TEXTS):
        batch = loaded.tokenize([text])
        mask = batch["attention_mask"]
        with torch.no_grad(), RecordHeads(loaded.anatomy) as rec:
            states = loaded.anatomy.hidden_states(batch["input_ids"], mask)
        for how in ("cls", "mean"):
            expected = torch.stack([pool(h, mask, how)[0] for h in states]).numpy()  # (n_layers + 1, d_model)
            np.testing.assert_allclose(reps.layers[how][:, i], expected, atol=1e-5)
            for layer in range(n_layers):
                z = rec.z[layer][0]  # (seq, head, d_head)
                heads = z[0] if how == "cls" else z.mean(0)
                np.testing.assert_allclose(reps.heads[how][layer, :, i], heads.numpy(), atol=1e-5)


def test_one_forward_pass_per_batch_and_a_cache_hit_costs_none(tiny_loaded, tmp_path):
    with _CountForwards(tiny_loaded) as count:
        first = extract(tiny_loaded, TEXTS, batch_size=4, cache_dir=tmp_path, progress=False)
    assert count.calls == 3  # ceil(10 / 4) batches for all layers, heads and both poolings
    with _CountForwards(tiny_loaded) as count:
        second = extract(tiny_loaded, TEXTS, batch_size=4, cache_dir=tmp_path, progress=False)
    assert count.calls == 0
    for p in ("cls", "mean"):
        np.testing.assert_array_equal(first.layers[p], second.layers[p])
        np.testing.assert_array_equal(first.heads[p], second.heads[p])
    assert not list(tmp_path.rglob("*.tmp"))  # atomic writes leave no temp files
    assert len(list(tmp_path.rglob("*.npz"))) == 2  # one file per pooling
    with _CountForwards(tiny_loaded) as count:  # a subset of the cached poolings, without heads: still a hit
        extract(tiny_loaded, TEXTS, poolings=("mean",), heads=False, batch_size=4, cache_dir=tmp_path, progress=False)
    assert count.calls == 0


def test_cache_misses_when_model_data_or_settings_change(tiny_loaded, tmp_path):
    extract(tiny_loaded, TEXTS, heads=False, batch_size=5, cache_dir=tmp_path, progress=False)
    changed = copy.deepcopy(tiny_loaded)
    with torch.no_grad():
        changed.anatomy.word_embeddings.weight[5] += 1.0
    assert model_fingerprint(changed) != model_fingerprint(tiny_loaded)
    for loaded, texts, kwargs in [
        (changed, TEXTS, {}),  # weights changed in memory
        (tiny_loaded, TEXTS[::-1], {}),  # other data
        (tiny_loaded, TEXTS, {"max_length": 8}),  # other truncation
        (tiny_loaded, TEXTS, {"heads": True}),  # heads were not cached
    ]:
        with _CountForwards(loaded) as count:
            extract(
                loaded, texts, **{"heads": False, "batch_size": 5, "cache_dir": tmp_path, "progress": False, **kwargs}
            )
        assert count.calls == 2
    with _CountForwards(tiny_loaded) as count:
        extract(tiny_loaded, TEXTS, heads=False, batch_size=5, cache=False, cache_dir=tmp_path / "off", progress=False)
    assert count.calls == 2 and not (tmp_path / "off").exists()


def test_int8_model_can_be_extracted(tiny_loaded, tmp_path):
    model = quantise_dynamic(tiny_loaded.model)
    loaded = LoadedModel(model, tiny_loaded.tokenizer, Anatomy(model), "classifier", True, "int8")
    reps = extract(loaded, TEXTS, batch_size=4, cache_dir=tmp_path, progress=False)
    assert np.isfinite(reps.layers["mean"]).all() and np.isfinite(reps.heads["cls"]).all()
    assert reps.model_fingerprint != model_fingerprint(tiny_loaded)


def test_pruned_model_heads_keep_their_original_ids(tiny_loaded, tmp_path):
    loaded = _loaded(tiny_loaded.tokenizer)
    importance = torch.arange(12, dtype=torch.float32).reshape(3, 4)  # layer 0 holds the least important heads
    kept = prune_heads(loaded.anatomy, importance, 0.25)
    reps = extract(loaded, TEXTS, batch_size=4, cache_dir=tmp_path, progress=False)
    assert reps.head_ids == tuple(tuple(k) for k in kept) and sum(map(len, kept)) == 9
    for layer, ids in enumerate(kept):
        assert np.isfinite(reps.heads["mean"][layer, : len(ids)]).all()
        assert np.isnan(reps.heads["mean"][layer, len(ids) :]).all()  # no such head any more
    genders = np.arange(len(TEXTS)) % 2
    table = probe_heads(reps, genders, n_folds=2, probe=LinearProbe(cv=2), poolings=["mean"])
    acc = table[table["metric"] == "probe_accuracy"]
    assert sorted(zip(acc["layer"], acc["head"])) == sorted((l, h) for l, ids in enumerate(kept) for h in ids)


def test_bad_input_is_a_clear_error(tiny_loaded, tmp_path):
    with pytest.raises(ValueError, match="non-empty sequence of str"):
        extract(tiny_loaded, [], cache_dir=tmp_path)
    with pytest.raises(ValueError, match="non-empty sequence of str"):
        extract(tiny_loaded, "one text", cache_dir=tmp_path)
    with pytest.raises(ValueError, match=r"poolings=\('max',\): allowed values are \('cls', 'mean'\)"):
        extract(tiny_loaded, TEXTS, poolings=("max",), cache_dir=tmp_path)
    with pytest.raises(ValueError, match="batch_size=0"):
        extract(tiny_loaded, TEXTS, batch_size=0, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="same n"):
        Representations(layers={"cls": np.zeros((3, 5, 4)), "mean": np.zeros((3, 6, 4))})


def test_minilm_extracts_bug_sentences(minilm, tmp_path):
    from pipeline.data import load_bug

    texts = load_bug().texts[:36]
    reps = extract(minilm, texts, batch_size=16, cache_dir=tmp_path, progress=False)
    assert reps.layers["mean"].shape == (7, 36, 384) and reps.heads["cls"].shape == (6, 12, 36, 32)
    assert np.isfinite(reps.layers["cls"]).all() and np.isfinite(reps.heads["mean"]).all()
    # the [CLS] embedding (token, position 0, segment 0) is the same for every sentence; later layers mix context
    assert reps.layers["cls"][0].std(0).max() < 1e-5 and reps.layers["cls"][6].std(0).max() > 1e-2
    assert reps.head_ids == tuple(tuple(range(12)) for _ in range(6))
    with _CountForwards(minilm) as count:
        extract(minilm, texts, batch_size=16, cache_dir=tmp_path, progress=False)
    assert count.calls == 0
