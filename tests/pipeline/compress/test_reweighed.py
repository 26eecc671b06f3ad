"""The ``reweighed`` training set: Kamiran & Calders (2012) instance weights carried by the training data and used
by every training loss (fine-tuning, DistilBERT- and TinyBERT-style distillation), checked against hand-computed
weighted means; weights all 1 train exactly as no weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from pipeline.compress.config import DistilSection, TinySection
from pipeline.compress.distil import _DistilObjective, distil
from pipeline.compress.losses import masked_mse, soft_kl
from pipeline.compress.reweigh import reweighing_weights
from pipeline.compress.tiny import tiny
from pipeline.data import TaskData, WeightedTaskData
from pipeline.train import FinetuneSection, encode, finetune_classifier, finetune_mlm, make_accelerator
from pipeline.weighting import BATCH_WEIGHTS, example_weights, weighted_cross_entropy

torch.set_num_threads(1)


def _no_dropout(model: torch.nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0


def _weighted(task: TaskData) -> WeightedTaskData:
    return WeightedTaskData.of(task, reweighing_weights(task.labels, task.genders))


def test_the_weights_travel_with_the_training_set_only(task):
    data = WeightedTaskData.of(task, np.linspace(0.5, 1.5, len(task)))
    assert data.weights.mean() == pytest.approx(1.0) and not data.weights.flags.writeable
    assert type(data.subset([0, 1])) is TaskData  # derived data is plain
    assert example_weights(task) is None
    assert example_weights(WeightedTaskData.of(task, np.ones(len(task)))) is None  # all 1: the unweighted path
    with pytest.raises(ValueError, match="positive finite"):
        WeightedTaskData.of(task, np.zeros(len(task)))
    with pytest.raises(ValueError, match="one per"):
        WeightedTaskData.of(task, np.ones(3))


def test_a_weighted_fine_tuning_step_is_the_weighted_mean_cross_entropy(make_loaded):
    # 5 texts: the (class, gender) cells have 2, 1, 1 and 1 examples, so the weights differ
    texts = ("she is a nurse", "he is a nurse", "he cooks at home", "she flies planes", "he flies planes")
    task = TaskData("toy", texts, [0, 0, 0, 1, 1], [1, 0, 0, 1, 0], ("a", "b"))
    data = _weighted(task)
    assert len(set(data.weights.tolist())) > 1
    loaded = make_loaded("bert", "classifier", seed=0, num_labels=2)
    _no_dropout(loaded.model)
    with torch.no_grad():
        logits = loaded.model(**encode(loaded.tokenizer, texts, 16)).logits.float()
    ce = -F.log_softmax(logits, -1)[torch.arange(5), torch.tensor(task.labels)]
    expect = float((torch.tensor(data.weights, dtype=torch.float32) * ce).mean())
    cfg = FinetuneSection(epochs=1, lr=1e-3, batch_size=5, warmup_ratio=0.0)
    result = finetune_classifier(loaded, data, None, cfg, 0, max_length=16, accelerator=make_accelerator("cpu"))
    assert result.steps == 1 and result.epoch_losses[0] == pytest.approx(expect, abs=1e-6)
    assert result.epoch_losses[0] != pytest.approx(float(ce.mean()), abs=1e-6)  # the weights matter on this batch


def test_weights_all_one_train_bit_identically_to_no_weights(make_loaded, task):
    cfg = FinetuneSection(epochs=2, lr=1e-3, batch_size=4, warmup_ratio=0.0)
    models = []
    for data in (task, WeightedTaskData.of(task, np.ones(len(task)))):
        loaded = make_loaded("bert", "classifier", seed=0)
        finetune_classifier(loaded, data, None, cfg, 0, max_length=16, accelerator=make_accelerator("cpu"))
        models.append(loaded.model.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(models[0].values(), models[1].values()))


def test_the_weighted_distillation_loss_is_the_hand_computed_weighted_mean(make_loaded, task):
    teacher, student = make_loaded("bert", "classifier", seed=0), make_loaded("bert", "classifier", seed=1)
    for model in (teacher.model, student.model):
        _no_dropout(model)
    cfg = DistilSection(alpha_kl=0.5, alpha_ce=0.3, alpha_cos=0.2, temperature=2.0)
    objective = _DistilObjective(student, teacher, cfg, "task", mixup=False).eval()
    rows = [0, 3, 4, 7]
    w = torch.tensor([0.5, 2.0, 1.0, 0.5])
    batch = {**encode(teacher.tokenizer, [task.texts[i] for i in rows], 16), "labels": torch.tensor(task.labels[rows])}
    with torch.no_grad():
        loss = objective({**batch, BATCH_WEIGHTS: w}).item()
        plain = objective(batch).item()
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        t_out = teacher.model(**inputs, output_hidden_states=True)
        s_out = student.model(**inputs, output_hidden_states=True)
    keep = batch["attention_mask"].bool()
    cos = F.cosine_similarity(s_out.hidden_states[-1], t_out.hidden_states[-1], dim=-1)  # (batch, seq)
    w_tok = w[:, None].expand_as(cos)
    cos_term = float((w_tok[keep] * (1 - cos[keep])).mean())
    t = cfg.temperature
    p_t = F.softmax(t_out.logits / t, -1)
    kl = (p_t * (p_t.log() - F.log_softmax(s_out.logits / t, -1))).sum(-1)  # per text
    ce = -F.log_softmax(s_out.logits, -1)[torch.arange(4), batch["labels"]]
    expect = (
        cfg.alpha_cos * cos_term + cfg.alpha_kl * float((w * kl).mean()) * t * t + cfg.alpha_ce * float((w * ce).mean())
    )
    assert loss == pytest.approx(expect, abs=1e-6)
    unweighted = cfg.alpha_cos * float((1 - cos[keep]).mean()) + cfg.alpha_kl * float(kl.mean()) * t * t
    assert plain == pytest.approx(unweighted + cfg.alpha_ce * float(ce.mean()), abs=1e-6)


def test_the_tinybert_losses_weigh_each_text():
    gen = torch.Generator().manual_seed(0)
    s, t = torch.randn(3, 5, 4, generator=gen), torch.randn(3, 5, 4, generator=gen)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 0, 0, 0]])
    w = torch.tensor([2.0, 0.5, 1.0])
    sq = ((s - t) ** 2).sum(-1)  # (batch, seq)
    expect = float((w[:, None] * sq * mask).sum() / (mask.sum() * 4))
    assert masked_mse(s, t, mask, w).item() == pytest.approx(expect, abs=1e-6)
    assert masked_mse(s, t, mask).item() == pytest.approx(float((sq * mask).sum() / (mask.sum() * 4)), abs=1e-6)
    a, b = torch.randn(3, 4, generator=gen), torch.randn(3, 4, generator=gen)
    p_b = F.softmax(b / 2, -1)
    kl = (p_b * (p_b.log() - F.log_softmax(a / 2, -1))).sum(-1)
    assert soft_kl(a, b, 2.0, w).item() == pytest.approx(float((w * kl).mean()) * 4, abs=1e-6)
    assert soft_kl(a, b, 2.0).item() == pytest.approx(float(kl.mean()) * 4, abs=1e-6)


def test_the_masked_lm_loss_weighs_each_asked_token_by_its_text(make_loaded, task):
    gen = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(2, 4, 7, generator=gen), torch.tensor([[3, -100, 1, -100], [-100, 5, -100, -100]])
    weights, rows = torch.tensor([0.5, 1.0, 3.0]), torch.tensor([2, 0])
    ce = [-F.log_softmax(logits[b, s], -1)[labels[b, s]] for b, s in ((0, 0), (0, 2), (1, 1))]
    expect = float((3.0 * ce[0] + 3.0 * ce[1] + 0.5 * ce[2]) / 3)
    assert weighted_cross_entropy(weights)(logits, labels, rows).item() == pytest.approx(expect, abs=1e-6)
    cfg = FinetuneSection(mlm_epochs=1, lr=1e-3, batch_size=4, warmup_ratio=0.0)
    losses = []
    for w in (None, torch.linspace(0.2, 1.8, len(task))):
        loaded = make_loaded("bert", "mlm", seed=0)
        result = finetune_mlm(loaded, task.texts, cfg, 0, max_length=16, accelerator=make_accelerator("cpu"), weights=w)
        losses.append(result.epoch_losses)
    assert losses[0] != losses[1] and all(np.isfinite(losses[1]))


def test_every_distillation_trains_on_the_weights(make_loaded, task):
    weighted = WeightedTaskData.of(task, np.linspace(0.2, 1.8, len(task)))
    runs = {
        "distil[task, mixup]": lambda data: distil(
            make_loaded("bert", "classifier"), data, DistilSection(epochs=1, batch_size=4), 0, max_length=16, mixup=True
        )[1],
        "distil[mlm]": lambda data: distil(
            make_loaded("bert", "mlm"), data, DistilSection(epochs=1, batch_size=4), 0, max_length=16
        )[1],
        "tiny": lambda data: tiny(
            make_loaded("bert", "classifier"),
            data,
            TinySection(n_layers=2, hidden_size=16, n_heads=2, epochs=1, pred_epochs=1, batch_size=6),
            0,
            max_length=16,
        )[1][-1],
    }
    for name, run in runs.items():
        plain, reweighed = run(task).epoch_losses, run(weighted).epoch_losses
        assert plain != reweighed and all(np.isfinite(reweighed)), name
