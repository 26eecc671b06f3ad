"""Tests for pipeline/metrics/counterfactual.py: the differentiable counterfactual gap and its tidy metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.data import FEMALE, MALE, TaskData, counterfactual
from pipeline.metrics import classifier_logits, counterfactual_gap, counterfactual_metrics, true_class_prob_change
from pipeline.metrics.counterfactual import counterfactual_examples, counterfactual_summary


def test_change_equals_the_definition_on_hand_logits():
    logits = torch.log(torch.tensor([[0.5, 0.25, 0.25], [0.1, 0.6, 0.3]]))
    logits_cf = torch.log(torch.tensor([[0.2, 0.4, 0.4], [0.1, 0.2, 0.7]]))
    labels = torch.tensor([0, 2])
    change = true_class_prob_change(logits, logits_cf, labels)
    assert torch.allclose(change, torch.tensor([0.2 - 0.5, 0.7 - 0.3]))
    # Oriented: P(y | female version) - P(y | male version). Row 0 is a male original (twin = female version), row 1
    # a female original (original = female version).
    genders = torch.tensor([MALE, FEMALE])
    oriented = true_class_prob_change(logits, logits_cf, labels, genders)
    assert torch.allclose(oriented, torch.tensor([0.2 - 0.5, 0.3 - 0.7]))
    assert counterfactual_gap(logits, logits_cf, labels, genders) == pytest.approx(((0.2 - 0.5) + (0.3 - 0.7)) / 2)


def test_orientation_does_not_depend_on_which_version_is_the_original():
    a, b = torch.randn(4, 3), torch.randn(4, 3)
    labels = torch.tensor([0, 1, 2, 1])
    male_first = true_class_prob_change(a, b, labels, torch.full((4,), MALE))  # a = male texts, b = female twins
    female_first = true_class_prob_change(b, a, labels, torch.full((4,), FEMALE))  # same pairs, roles swapped
    assert torch.allclose(male_first, female_first)


def test_gradient_flows_to_both_logits():
    logits = torch.randn(5, 4, requires_grad=True)
    logits_cf = torch.randn(5, 4, requires_grad=True)
    gap = counterfactual_gap(logits, logits_cf, torch.tensor([0, 1, 2, 3, 0]), torch.tensor([0, 1, 0, 1, 1]))
    gap.backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    assert logits_cf.grad is not None and logits_cf.grad.abs().sum() > 0


def test_shape_errors_name_the_fix():
    with pytest.raises(ValueError, match="same order and shape|both be"):
        true_class_prob_change(torch.zeros(2, 3), torch.zeros(3, 3), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="labels"):
        true_class_prob_change(torch.zeros(2, 3), torch.zeros(2, 3), torch.tensor([0.0, 1.0]))


@pytest.fixture(scope="module")
def task() -> TaskData:
    texts = ("He is a nurse and his patients love him.", "She fixed the engine herself.",
             "The report was filed on time.", "Mr Smith teaches math; he is strict.",
             "Her designs won awards.", "She is a surgeon.")  # fmt: skip
    return TaskData("toy", texts, np.array([0, 1, 2, 0, 1, 2]), np.array([MALE, FEMALE, MALE, MALE, FEMALE, FEMALE]),
                    ("nurse", "mechanic", "surgeon"))  # fmt: skip


def test_metrics_match_a_direct_computation(tiny_classifier, task):
    frame = counterfactual_metrics(tiny_classifier, task, batch_size=2, n_boot=50, seed=0)
    rows = frame.set_index(["metric", "subset"])
    assert rows.loc[("cf_unchanged_texts", ""), "value"] == 1 and rows.loc[("cf_unchanged_texts", ""), "n"] == 6
    twins = counterfactual(task)
    keep = [i for i in range(6) if task.texts[i] != twins.texts[i]]
    logits = classifier_logits(tiny_classifier, [task.texts[i] for i in keep])
    logits_cf = classifier_logits(tiny_classifier, [twins.texts[i] for i in keep])
    labels, genders = torch.as_tensor(task.labels[keep]), torch.as_tensor(task.genders[keep])
    gap = true_class_prob_change(logits, logits_cf, labels, genders)
    assert rows.loc[("cf_prob_gap", "all"), "value"] == pytest.approx(gap.mean().item(), abs=1e-6)
    assert rows.loc[("cf_prob_abs_change", "all"), "value"] == pytest.approx(gap.abs().mean().item(), abs=1e-6)
    flips = (logits.argmax(-1) != logits_cf.argmax(-1)).double().mean().item()
    assert rows.loc[("cf_flip_rate", "all"), "value"] == pytest.approx(flips)
    assert rows.loc[("cf_prob_gap", "all"), "n"] == 5
    assert rows.loc[("cf_prob_gap", "female"), "n"] + rows.loc[("cf_prob_gap", "male"), "n"] == 5


def test_per_example_rows_are_what_the_metrics_average(tiny_classifier, task):
    rows = counterfactual_examples(tiny_classifier, task, batch_size=2)
    twins = counterfactual(task)
    changed = [i for i in range(6) if task.texts[i] != twins.texts[i]]
    for metric in ("cf_prob_gap", "cf_flip_rate"):
        mine = rows[(rows["metric"] == metric) & (rows["subset"] == "all")].sort_values("example")
        assert mine["example"].tolist() == changed and mine["gender"].tolist() == task.genders[changed].tolist()
    summary = counterfactual_summary(rows, n_boot=50, seed=0)
    direct = counterfactual_metrics(tiny_classifier, task, batch_size=2, n_boot=50, seed=0)
    pd.testing.assert_frame_equal(summary, direct)
    gap = rows[(rows["metric"] == "cf_prob_gap") & (rows["subset"] == "all")]["value"]
    assert direct.set_index(["metric", "subset"]).loc[("cf_prob_gap", "all"), "value"] == pytest.approx(gap.mean())


def test_needs_a_classifier(tiny_mlm, task):
    with pytest.raises(ValueError, match="head='classifier'"):
        counterfactual_metrics(tiny_mlm, task)
