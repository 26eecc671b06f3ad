"""TinyBERT-style students: shapes, truncated initialisation, attention maps, both distillation stages."""

from __future__ import annotations

import pytest
import torch
from tiny import make_tiny, random_batch

from pipeline.anatomy import Anatomy
from pipeline.compress.config import TinySection
from pipeline.compress.tiny import RecordAttention, default_tiny_map, init_tiny, tiny


@pytest.mark.parametrize("family", ["bert", "distilbert"])
def test_recorded_attention_equals_eager_attention(family):
    model = make_tiny(family, attn_implementation="eager")
    anatomy = Anatomy(model)
    ids, mask = random_batch(3, 8, seed=3)
    with torch.no_grad(), RecordAttention(anatomy, range(anatomy.n_layers)) as rec:
        out = model(input_ids=ids, attention_mask=mask, output_attentions=True)
    for layer, expected in enumerate(out.attentions):
        torch.testing.assert_close(rec.probs(layer, mask), expected, atol=1e-6, rtol=1e-5)
    for layer in range(anatomy.n_layers):  # our hooks are gone
        assert all(not lin._forward_hooks for lin in anatomy.qkv(layer)[:2])


def test_default_map_is_uniform():
    assert default_tiny_map(6, 3) == (1, 3, 5) and default_tiny_map(12, 4) == (2, 5, 8, 11)


def test_truncated_init_copies_leading_blocks(make_loaded):
    teacher = make_loaded("bert", num_hidden_layers=4)
    cfg = TinySection(n_layers=2, hidden_size=16, n_heads=2, d_ff=24)
    student = init_tiny(teacher, cfg)
    a = student.anatomy
    assert (a.n_layers, a.d_model, a.n_heads, a.d_ff, a.head_dim) == (2, 16, 2, 24, 8)
    assert student.model.config.layer_map == [1, 3] and not student.head_trained
    t_q = teacher.anatomy.qkv(3)[0].weight
    assert torch.equal(a.qkv(1)[0].weight, t_q[:16, :16])
    with pytest.raises(ValueError, match="layer_map"):
        init_tiny(teacher, TinySection(n_layers=2, layer_map=(1, 4)))


def test_tiny_runs_both_stages_for_a_trained_teacher(make_loaded, task):
    teacher = make_loaded("bert", num_hidden_layers=4)
    cfg = TinySection(n_layers=2, hidden_size=16, n_heads=4, epochs=1, pred_epochs=1, batch_size=6)
    student, results = tiny(teacher, task, cfg, seed=0, max_length=16)
    assert len(results) == 2 and student.head_trained
    untrained = make_loaded("bert", trained=False, num_hidden_layers=4)
    student, results = tiny(untrained, task, cfg.model_copy(update={"n_heads": 2}), seed=0, max_length=16)
    assert len(results) == 1 and not student.head_trained  # no prediction-layer stage without a task teacher
