"""Dynamic int8: the saved float weights re-quantise on load to exactly the in-run model."""

from __future__ import annotations

import torch
from tiny import random_batch

from pipeline.anatomy import Anatomy
from pipeline.gates import HeadGates
from pipeline.int8 import QUANTIZATION, QuantisedLinear, is_quantised, quantise_dynamic, supports_gradients
from pipeline.models import LoadedModel, load_model
from pipeline.runs.build import save_model


def test_int8_round_trip_and_capabilities(make_loaded, tmp_path):
    loaded = make_loaded("bert")
    loaded.model.config.quantization = QUANTIZATION
    quantised = quantise_dynamic(loaded.model)
    assert is_quantised(quantised) and not is_quantised(loaded.model)  # the source is untouched
    assert not any(type(m) is torch.nn.Linear for m in quantised.modules())  # every linear layer is int8
    assert any(isinstance(m, QuantisedLinear) for m in quantised.modules())
    q_loaded = LoadedModel(quantised, loaded.tokenizer, Anatomy(quantised), "classifier", True, "q")
    assert not supports_gradients(q_loaded) and supports_gradients(loaded)

    save_model(loaded, tmp_path)
    reloaded = load_model(tmp_path, head="classifier")
    assert is_quantised(reloaded.model) and reloaded.device.type == "cpu"
    ids, mask = random_batch(3, 7, vocab=loaded.tokenizer.vocab_size, seed=2)
    with torch.no_grad():
        expected = quantised(input_ids=ids, attention_mask=mask).logits
        torch.testing.assert_close(reloaded.model(input_ids=ids, attention_mask=mask).logits, expected, atol=0, rtol=0)
        # forward hooks (head gates) still work on quantised output projections
        gates = torch.ones(reloaded.anatomy.n_layers, reloaded.anatomy.n_heads)
        gates[0, 1] = 0
        with HeadGates(reloaded.anatomy, gates):
            ablated = reloaded.model(input_ids=ids, attention_mask=mask).logits
    assert not torch.equal(ablated, expected)
