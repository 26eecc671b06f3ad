"""TransformerLens converter: the bridge over the converted model computes what the original model computes."""

from __future__ import annotations

import pytest
import torch
from tiny import random_batch

from attribution.data import View
from attribution.lens import to_bert_mlm, to_lens
from pipeline.gates import HeadGates, RecordHeads, ones_gates
from pipeline.int8 import quantise_dynamic
from pipeline.models import LoadedModel


@pytest.mark.parametrize("family", ["bert", "distilbert"])
@pytest.mark.parametrize("head", ["classifier", "mlm"])
def test_bridge_reproduces_the_model(tiny_loaded, family, head):
    loaded = tiny_loaded(family, head)
    lens = to_lens(loaded)
    ids, mask = random_batch(4, 9)
    view = View(ids, mask, torch.zeros(4, dtype=torch.long), torch.zeros(4, 2, dtype=torch.long))
    with torch.no_grad():
        hidden = loaded.anatomy.base(input_ids=ids, attention_mask=mask).last_hidden_state
        torch.testing.assert_close(lens.final_hidden(view), hidden, atol=1e-5, rtol=0)
        z = lens.head_z(view)
        with RecordHeads(loaded.anatomy) as rec:
            loaded.anatomy.base(input_ids=ids, attention_mask=mask)
        for layer in range(loaded.anatomy.n_layers):
            torch.testing.assert_close(z[layer], rec.z[layer], atol=1e-5, rtol=0)
        if head == "mlm":  # the converted masked-LM head too
            full = loaded.model(input_ids=ids, attention_mask=mask).logits
            torch.testing.assert_close(lens.bridge(ids, attention_mask=mask), full, atol=1e-4, rtol=0)


def test_hook_z_patch_equals_gate_patch(tiny_loaded):
    loaded = tiny_loaded("distilbert")
    lens = to_lens(loaded)
    ids, mask = random_batch(3, 7)
    other = torch.roll(ids, 1, dims=0)
    view = View(ids, mask, torch.zeros(3, dtype=torch.long), torch.zeros(3, 2, dtype=torch.long))
    with torch.no_grad():
        with RecordHeads(loaded.anatomy) as rec:
            loaded.anatomy.base(input_ids=other, attention_mask=mask)
        source = rec.z[1]

        def patch(z, hook):
            z = z.clone()
            z[:, :, 3] = source[:, :, 3]
            return z

        got = lens.final_hidden(view, [("blocks.1.attn.hook_z", patch)])
        gates = ones_gates(loaded.anatomy)
        gates[1, 3] = 0.0
        with HeadGates(loaded.anatomy, gates, baseline=[rec.z[l] for l in range(loaded.anatomy.n_layers)]):
            expected = loaded.anatomy.base(input_ids=ids, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_minilm_converts(minilm):
    shell = to_bert_mlm(minilm)
    assert shell.config.num_hidden_layers == 6 and not shell.training


def test_int8_model_is_refused(tiny_loaded):
    loaded = tiny_loaded("bert")
    q = quantise_dynamic(loaded.model)
    quantised = LoadedModel(q, loaded.tokenizer, type(loaded.anatomy)(q), "classifier", True, "int8")
    with pytest.raises(ValueError, match="quantised.*gate engine"):
        to_bert_mlm(quantised)
