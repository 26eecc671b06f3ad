"""Training loop: seeding, BERT masking, reproducible fine-tuning, masked-LM fine-tuning."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from tiny import make_tiny
from transformers import AutoTokenizer

from pipeline.anatomy import Anatomy
from pipeline.data import TaskData
from pipeline.metrics.predict import classifier_logits
from pipeline.models import LoadedModel, resolve_source
from pipeline.train import (
    FinetuneSection,
    OptimSettings,
    TrainingDivergedError,
    batch_loader,
    finetune_classifier,
    finetune_mlm,
    fit,
    make_accelerator,
    mask_tokens,
    seeded,
)

TEXTS = tuple(
    f"{who} is a {job} in the {place}"
    for who in ("she", "he")
    for job in ("nurse", "pilot", "cook")
    for place in ("city", "village")
)


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(resolve_source("minilm"))


@pytest.fixture
def data() -> TaskData:
    jobs = [t.split()[3] for t in TEXTS]
    names = ("cook", "nurse", "pilot")
    return TaskData(
        "toy", TEXTS, [names.index(j) for j in jobs], [1 if t.startswith("she") else 0 for t in TEXTS], names
    )


def _loaded(tokenizer, head="classifier", seed=0):
    model = make_tiny("bert", head, seed=seed, vocab_size=tokenizer.vocab_size)
    return LoadedModel(model, tokenizer, Anatomy(model), head, False, "tiny")


def test_seeded_is_reproducible_and_restores_state():
    torch.manual_seed(123)
    outside = torch.rand(1)
    torch.manual_seed(123)
    with seeded(7):
        a = (random.random(), np.random.rand(), torch.rand(1).item())
    assert torch.rand(1).item() == outside.item()  # the caller's stream continues untouched
    with seeded(7):
        assert (random.random(), np.random.rand(), torch.rand(1).item()) == a


def test_mask_tokens_follows_bert(tokenizer):
    enc = tokenizer(list(TEXTS) * 20, padding=True, return_tensors="pt")
    ids, mask = enc["input_ids"], enc["attention_mask"]
    masked, labels = mask_tokens(ids, mask, tokenizer, probability=0.15, generator=torch.Generator().manual_seed(0))
    chosen = labels != -100
    special = torch.isin(ids, torch.tensor(tokenizer.all_special_ids))
    assert not (chosen & (special | (mask == 0))).any()
    assert chosen.any(1).all()  # every text asks for at least one prediction
    assert (labels[chosen] == ids[chosen]).all() and (masked[~chosen] == ids[~chosen]).all()
    share = chosen.sum() / (mask.bool() & ~special).sum()
    assert 0.12 < share < 0.22
    as_mask = (masked[chosen] == tokenizer.mask_token_id).float().mean()
    assert 0.7 < as_mask < 0.9


def test_finetune_learns_and_is_reproducible(tokenizer, data):
    cfg = FinetuneSection(epochs=3, lr=5e-3, batch_size=6, warmup_ratio=0.0)
    a = _loaded(tokenizer)
    result = finetune_classifier(a, data, data, cfg, seed=3, max_length=16, accelerator=make_accelerator("cpu"))
    assert result.steps == 6 and a.head_trained and not a.model.training
    assert result.epoch_losses[-1] < result.epoch_losses[0]
    pred = classifier_logits(a, data.texts, max_length=16).argmax(1).numpy()
    assert result.dev_accuracy == pytest.approx(float((pred == data.labels).mean()))
    b = _loaded(tokenizer)
    finetune_classifier(b, data, None, cfg, seed=3, max_length=16)
    assert all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))
    c = _loaded(tokenizer)
    finetune_classifier(c, data, None, cfg, seed=4, max_length=16)
    assert not all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), c.model.state_dict().values()))


def test_finetune_rejects_wrong_heads_and_sizes(tokenizer, data):
    cfg = FinetuneSection(epochs=1)
    with pytest.raises(ValueError, match="3 outputs but the task has 4 classes; load it with num_labels=4"):
        four = TaskData("x", TEXTS, [0, 1, 2, 3] * 3, [0] * 12, ("a", "b", "c", "d"))
        finetune_classifier(_loaded(tokenizer), four, None, cfg, 0, max_length=16)
    one_class = TaskData("x", TEXTS, [0] * 12, [0] * 12, ("a", "b", "c"))
    with pytest.raises(ValueError, match="single class"):
        finetune_classifier(_loaded(tokenizer), one_class, None, cfg, 0, max_length=16)
    with pytest.raises(ValueError, match="head='mlm'"):
        finetune_mlm(_loaded(tokenizer), TEXTS, cfg, 0, max_length=16)


def test_finetune_mlm_trains_the_masked_lm(tokenizer):
    loaded = _loaded(tokenizer, head="mlm")
    result = finetune_mlm(loaded, TEXTS, FinetuneSection(mlm_epochs=1, batch_size=12, lr=1e-3), seed=0, max_length=16)
    assert result.steps == 1 and loaded.head_trained and np.isfinite(result.final_loss)


def test_optim_settings_from_a_section():
    opt = OptimSettings.of(FinetuneSection(epochs=2, lr=1e-3), epochs=5)
    assert (opt.epochs, opt.lr, opt.batch_size) == (5, 1e-3, 32)


def test_accelerator_errors_are_clear():
    with pytest.raises(ValueError, match="'auto', 'cpu' or 'cuda'"):
        make_accelerator("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="fp16"):
            make_accelerator("cpu", "fp16")


class _Quadratic(torch.nn.Module):
    """loss = sum((w - 1)^2) for one weight vector; the batch is ignored."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(4, 4))

    def forward(self, batch) -> torch.Tensor:
        return ((self.w - 1) ** 2).sum()


def _fit_quadratic(lr: float, n_batches: int, epochs: int = 1) -> _Quadratic:
    objective = _Quadratic()
    loader = batch_loader(n_batches, lambda rows: {}, batch_size=1, shuffle=False, seed=0)
    fit(
        objective,
        loader,
        OptimSettings(epochs=epochs, lr=lr, batch_size=1, warmup_ratio=0.0),
        accelerator=make_accelerator("cpu"),
        desc="toy",
    )
    return objective


def test_diverged_training_stops_with_a_clear_error():
    assert torch.isfinite(_fit_quadratic(0.1, n_batches=3).w).all()  # a sane rate trains quietly
    with pytest.raises(
        TrainingDivergedError,
        match=r"toy: training diverged at epoch 1/1, step 2/3 \(loss (inf|nan)\)"
        r".*Fix: lower the learning rate \(lr = 1e\+30.*grad_clip = 1",
    ):
        _fit_quadratic(1e30, n_batches=3)  # the first step sends the weights to 1e30: the next loss overflows
    with pytest.raises(TrainingDivergedError, match=r"step 1/3: the update overflows float \(loss 16.0\)"):
        _fit_quadratic(1e39, n_batches=3)  # beyond float32: torch refuses the update
    with pytest.raises(TrainingDivergedError, match=r"by the end of epoch 1 \(1 weight tensors hold inf/NaN, e.g. w\)"):
        _fit_quadratic(float("inf"), n_batches=1)  # one step: the loss was finite, the weights are not
    assert issubclass(TrainingDivergedError, RuntimeError)


def test_finetune_with_a_huge_learning_rate_is_refused(tokenizer, data):
    cfg = FinetuneSection(epochs=2, lr=1e30, batch_size=6, warmup_ratio=0.0)
    loaded = _loaded(tokenizer)
    with pytest.raises(TrainingDivergedError, match="fine-tune: training diverged"):
        finetune_classifier(loaded, data, data, cfg, seed=0, max_length=16, accelerator=make_accelerator("cpu"))
    assert not loaded.model.training  # left in eval mode even after the error


@pytest.mark.parametrize("lr", [float("inf"), float("nan")])
def test_finetune_section_refuses_non_finite_rates(lr):
    with pytest.raises(ValueError, match="finite number"):
        FinetuneSection(lr=lr)
