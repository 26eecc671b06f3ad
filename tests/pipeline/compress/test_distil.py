"""DistilBERT-style students: initialisation from teacher layers, the three losses, mixup."""

from __future__ import annotations

import pytest
import torch
from tiny import random_batch

from pipeline.compress.config import DistilSection
from pipeline.compress.distil import check_layer_map, default_layer_map, distil, init_student
from pipeline.compress.losses import cosine_loss, masked_mse, soft_kl
from pipeline.compress.mixup import GenderMixup, mix
from pipeline.data import GenderSwapper


@pytest.mark.parametrize("family", ["bert", "distilbert"])
def test_student_starts_as_teacher_layers_0_2_4(make_loaded, family):
    layers = {"bert": {"num_hidden_layers": 6}, "distilbert": {"n_layers": 6}}[family]
    teacher = make_loaded(family, **layers)
    student = init_student(teacher, default_layer_map(6))
    assert default_layer_map(6) == (0, 2, 4) and student.model.config.layer_map == [0, 2, 4]
    assert student.anatomy.n_layers == 3 and student.anatomy.family == family
    for i, t in enumerate((0, 2, 4)):
        s_params = dict(student.anatomy.layer(i).named_parameters())
        for name, param in teacher.anatomy.layer(t).named_parameters():
            assert torch.equal(s_params[name], param), (i, name)
    t_rest = {k: v for k, v in teacher.model.state_dict().items() if ".layer." not in k}
    s_rest = {k: v for k, v in student.model.state_dict().items() if ".layer." not in k}
    assert t_rest.keys() == s_rest.keys() and all(torch.equal(t_rest[k], s_rest[k]) for k in t_rest)
    # the same first block means the same embeddings -> block 0 output
    ids, mask = random_batch(2, 6, vocab=teacher.tokenizer.vocab_size)
    with torch.no_grad():
        torch.testing.assert_close(
            student.anatomy.hidden_states(ids, mask)[1], teacher.anatomy.hidden_states(ids, mask)[1]
        )


def test_layer_map_out_of_range_is_clear():
    with pytest.raises(ValueError, match=r"compress.distil.layer_map = \[0, 2, 7\]: \[7\] is out of range.*0\.\.5"):
        check_layer_map([0, 2, 7], 6, "compress.distil.layer_map")
    with pytest.raises(ValueError, match="strictly increasing"):
        check_layer_map([2, 0], 6)


def test_losses_on_known_values():
    s = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    assert soft_kl(s, s, 3.0).item() == pytest.approx(0.0, abs=1e-5)
    t = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    p = torch.softmax(torch.tensor([0.5, 0.0]), 0)  # student row 0 at T = 2
    kl = (0.5 * torch.log(0.5 / p)).sum() / 2 * 4  # batch mean, * T^2
    assert soft_kl(s, t, 2.0).item() == pytest.approx(kl.item(), rel=1e-5)
    h = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    assert cosine_loss(h, torch.tensor([[[1.0, 0.0], [1.0, 0.0]]]), torch.tensor([[1, 0]])).item() == pytest.approx(0)
    assert cosine_loss(h, torch.tensor([[[1.0, 0.0], [1.0, 0.0]]]), torch.tensor([[1, 1]])).item() == pytest.approx(0.5)
    a = torch.zeros(1, 1, 2, 2)
    b = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    assert masked_mse(a, b, torch.tensor([[1, 0]])).item() == pytest.approx(1.0)  # only query 0, key 0
    assert mix(torch.ones(2, 3), torch.zeros(2, 3), torch.tensor([0.25, 1.0])).tolist() == [[0.25] * 3, [1.0] * 3]


def test_mixup_pairs_are_swapped_and_aligned(tokenizer, task):
    swapper = GenderSwapper({"he": "she", "she": "he", "mary": "john", "john": "mary"})
    pairs = GenderMixup(task.texts, swapper=swapper, seed=0)
    assert pairs.swapped[0] == "he is a nurse at the hospital" and pairs.changed >= 4
    batch = pairs.collate(tokenizer, [0, 1, 2], max_length=16)
    assert batch["cf_input_ids"].shape == batch["input_ids"].shape
    assert batch["mix_lambda"].tolist() == [0.5, 0.5, 0.5]
    assert (batch["input_ids"][2] == batch["cf_input_ids"][2]).all()  # no gendered word in the swap list
    drawn = GenderMixup(task.texts, swapper=swapper, alpha=0.4, seed=0).collate(tokenizer, range(12), 16)["mix_lambda"]
    assert ((drawn > 0) & (drawn < 1)).all() and drawn.unique().numel() > 1


@pytest.mark.parametrize("teacher_trained,mixup", [(True, False), (True, True), (False, False)])
def test_distil_trains_the_student_only(make_loaded, task, teacher_trained, mixup):
    teacher = make_loaded("bert", trained=teacher_trained, num_hidden_layers=4)
    before = {k: v.clone() for k, v in teacher.model.state_dict().items()}
    cfg = DistilSection(epochs=1, batch_size=4, lr=1e-3)
    swapper = GenderSwapper({"he": "she", "she": "he"})
    student, result = distil(teacher, task, cfg, seed=0, max_length=16, mixup=mixup, swapper=swapper)
    assert result.steps == 3 and all(torch.isfinite(torch.tensor(result.epoch_losses)))
    assert student.anatomy.n_layers == 2 and student.head_trained == teacher_trained
    assert all(torch.equal(before[k], v) for k, v in teacher.model.state_dict().items())
    assert not torch.equal(
        student.anatomy.layer(0).attention.self.query.weight, teacher.anatomy.layer(0).attention.self.query.weight
    )
    again, _ = distil(
        make_loaded("bert", trained=teacher_trained, num_hidden_layers=4),
        task,
        cfg,
        seed=0,
        max_length=16,
        mixup=mixup,
        swapper=swapper,
    )
    assert all(
        torch.equal(a, b) for a, b in zip(student.model.state_dict().values(), again.model.state_dict().values())
    )


def test_general_distillation_with_an_mlm_head(make_loaded, task):
    teacher = make_loaded("bert", head="mlm", num_hidden_layers=2)
    student, result = distil(teacher, task, DistilSection(epochs=1, batch_size=6), seed=0, max_length=16)
    assert student.head == "mlm" and student.anatomy.n_layers == 1 and result.steps == 2
