"""The differentiable fairness terms: the soft TPR gap (``eo_reg``) and fair distillation, exactly on small cases
and by their effect on toy models that would otherwise learn a gap."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from pipeline.compress.fair_losses import counterfactual_gap, fair_distil_loss, soft_tpr_gap
from pipeline.compress.losses import soft_kl

torch.set_num_threads(1)


def test_the_soft_tpr_gap_by_hand():
    logits = torch.log(torch.tensor([[0.9, 0.1], [0.7, 0.3], [0.4, 0.6], [0.2, 0.8], [0.5, 0.5]]))
    labels = torch.tensor([0, 0, 1, 1, 1])
    groups = torch.tensor([0, 1, 0, 1, 1])
    # class 0: 0.9 (g0) vs 0.7 (g1) -> 0.2; class 1: 0.6 (g0) vs mean(0.8, 0.5) = 0.65 (g1) -> 0.05
    assert soft_tpr_gap(logits, labels, groups).item() == pytest.approx((0.2 + 0.05) / 2, abs=1e-6)
    one_group = soft_tpr_gap(logits, labels, torch.zeros(5, dtype=torch.long))
    assert one_group.item() == 0.0
    with pytest.raises(ValueError, match="one row per example"):
        soft_tpr_gap(logits, labels[:3], groups)


def _skewed(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Class 1 is common in group 1 and rare in group 0; the group is a feature, so a model learns to use it."""
    g = torch.Generator().manual_seed(seed)
    groups = (torch.rand(n, generator=g) < 0.5).long()
    labels = (torch.rand(n, generator=g) < torch.where(groups == 1, 0.8, 0.2)).long()
    signal = labels.float() * 2 - 1 + 1.5 * torch.randn(n, generator=g)
    return torch.stack([signal, groups.float() * 2 - 1], 1), labels, groups


def _hard_tpr_gap(model: torch.nn.Module, x, labels, groups) -> float:
    pred = model(x).argmax(1)
    rate = [[(pred[(labels == k) & (groups == g)] == k).float().mean() for g in (0, 1)] for k in (0, 1)]
    return max(abs(float(a - b)) for a, b in rate)


def _train(weight: float) -> float:
    x, labels, groups = _skewed(2000, 0)
    torch.manual_seed(0)
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(400):
        logits = model(x)
        loss = F.cross_entropy(logits, labels) + weight * soft_tpr_gap(logits, labels, groups)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return _hard_tpr_gap(model, *_skewed(4000, 1))


def test_the_penalty_lowers_the_tpr_gap_a_toy_model_learns():
    plain, penalised = _train(0.0), _train(5.0)
    assert plain > 0.3  # measured 0.66: the model uses the group feature
    assert penalised < plain / 3  # measured 0.046


def test_fair_distillation_reduces_to_plain_kl_without_a_twin_difference():
    g = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    fair = fair_distil_loss(student, student, teacher, teacher, temperature=2.0, gap_weight=3.0)
    assert fair.item() == pytest.approx(soft_kl(student, teacher, 2.0).item(), rel=1e-5)
    assert counterfactual_gap(student, student).abs().max().item() == 0.0
    swapped = counterfactual_gap(torch.log(torch.tensor([[0.7, 0.3]])), torch.log(torch.tensor([[0.4, 0.6]])))
    assert swapped.item() == pytest.approx(0.6, abs=1e-6)
    with pytest.raises(ValueError, match="gap_weight"):
        fair_distil_loss(student, student, teacher, teacher, temperature=1.0, gap_weight=-1.0)


def _distil(fair: bool) -> tuple[float, float]:
    """A linear student distilled from a teacher that leans on the gender coordinate x[0] (swap: x[0] -> -x[0]);
    returns the student's mean counterfactual gap and its agreement with the twin-averaged teacher on new data."""
    g = torch.Generator().manual_seed(0)
    teacher = torch.nn.Linear(5, 3)
    with torch.no_grad():
        teacher.weight.copy_(torch.randn(3, 5, generator=g))
        teacher.weight[:, 0] = torch.tensor([2.0, -2.0, 0.0])  # the planted gender preference

    def data(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(n, 5, generator=g)
        x[:, 0] = torch.where(torch.rand(n, generator=g) < 0.5, 1.0, -1.0)
        return x, x * torch.tensor([-1.0, 1, 1, 1, 1])

    x, twin = data(2000)
    torch.manual_seed(0)
    student = torch.nn.Linear(5, 3)
    opt = torch.optim.Adam(student.parameters(), lr=0.05)
    with torch.no_grad():
        t, t_twin = teacher(x), teacher(twin)
    for _ in range(300):
        if fair:
            loss = fair_distil_loss(student(x), student(twin), t, t_twin, temperature=2.0, gap_weight=1.0)
        else:
            loss = soft_kl(student(x), t, 2.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    x, twin = data(2000)
    with torch.no_grad():
        gap = counterfactual_gap(student(x), student(twin)).mean().item()
        fair_target = (F.softmax(teacher(x), -1) + F.softmax(teacher(twin), -1)).argmax(1)
        agree = (student(x).argmax(1) == fair_target).float().mean().item()
    return gap, agree


def test_fair_distillation_gives_a_smaller_counterfactual_gap_than_plain_distillation():
    (plain_gap, _), (fair_gap, fair_agree) = _distil(False), _distil(True)
    assert plain_gap > 0.5  # measured 1.46 (of at most 2): the student copies the teacher's preference
    assert fair_gap < plain_gap / 10  # measured 0.007
    assert fair_agree > 0.9  # the task signal is kept: measured 0.97 agreement with the twin-averaged teacher
