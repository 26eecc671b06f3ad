"""Mitigations on the planted model (gender reaches the prediction only through head (1, 2)): bias-aware pruning of
one head removes that head and the counterfactual gap with it, a random head does not; a LEACE-erased variant
leaves a linear gender probe at chance and reloads from disk with identical outputs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score

from attribution.data import AttributionData
from attribution.engine import evaluate
from attribution.pruning_curve import pruning_curve
from attribution.scores import CounterfactualGap
from pipeline.anatomy import pool
from pipeline.compress.biasprune import bias_prune, importance_prune, select_removal
from pipeline.compress.config import EraseSection
from pipeline.compress.erase import erase
from pipeline.compress.prune import head_importance, remove_heads
from pipeline.data import TaskData
from pipeline.erasure_hooks import installed_erasers
from pipeline.gates import ones_gates
from pipeline.models import load_model
from pipeline.runs.build import save_model
from pipeline.runs.mitigation_build import head_bias_effects
from probes.erasure import erase_layer

_spec = importlib.util.spec_from_file_location("planted_conftest", Path(__file__).with_name("conftest.py"))
planted_conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(planted_conftest)
OCCUPATIONS, TEMPLATES, build_planted = (
    planted_conftest.OCCUPATIONS,
    planted_conftest.TEMPLATES,
    planted_conftest.build_planted,
)


def _task(n: int, seed: int) -> TaskData:
    """``n`` gendered texts of class 1 from the planted fixture's templates, every template with both genders."""
    rng = np.random.default_rng(seed)
    genders = (np.arange(n) // len(TEMPLATES)) % 2
    texts = [TEMPLATES[i % len(TEMPLATES)].format(o=OCCUPATIONS[rng.integers(len(OCCUPATIONS))],
                                                   p=("he", "she")[g], n=("john", "mary")[g])
             for i, g in enumerate(genders)]  # fmt: skip
    return TaskData("planted", tuple(texts), np.ones(n, dtype=np.int64), genders, ("m", "f"))


def _gap(loaded, task: TaskData) -> float:
    """The mean counterfactual gap P(y | female) - P(y | male) of the model on ``task``."""
    data = AttributionData.from_task(loaded, task)
    return float(evaluate(loaded, CounterfactualGap(), data, ones_gates(loaded.anatomy, batch=1)).values.mean())


def _importance(loaded, task: TaskData) -> torch.Tensor:
    batch = loaded.tokenize(list(task.texts), max_length=32)
    return head_importance(loaded.anatomy, [{**batch, "labels": torch.as_tensor(task.labels)}])


@pytest.fixture(scope="module")
def dev() -> TaskData:
    return _task(24, seed=2)


def test_bias_pruning_one_head_removes_the_planted_head_and_the_gap(tiny_tokenizer, planted_truth, dev):
    head, _ = planted_truth
    loaded = build_planted(tiny_tokenizer)
    before = _gap(loaded, dev)
    effect, intact, n = head_bias_effects(loaded, dev, None, max_length=32)
    assert n == len(dev) and intact == pytest.approx(abs(before), rel=1e-5) and before > 0.1
    assert torch.nan_to_num(effect, nan=-1.0).argmax().item() == head[0] * loaded.anatomy.n_heads + head[1]
    choice = bias_prune(loaded.anatomy, effect, _importance(loaded, dev), 1, protect=0.0)
    assert choice.removed == (head,) and loaded.model.config.kept_heads[head[0]] == [0, 1, 3]
    assert abs(_gap(loaded, dev)) <= 0.05 * abs(before)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_removing_a_random_head_leaves_the_gap(tiny_tokenizer, planted_truth, dev, seed):
    head, _ = planted_truth
    loaded = build_planted(tiny_tokenizer)
    before = _gap(loaded, dev)
    scores = torch.rand(loaded.anatomy.n_layers, loaded.anatomy.n_heads, generator=torch.Generator().manual_seed(seed))
    scores[head] = -1.0  # a random head other than the planted one
    keep, removed = select_removal(scores, 1)
    remove_heads(loaded.anatomy, keep)
    assert removed != [head] and abs(_gap(loaded, dev)) > 0.5 * abs(before)


def test_protecting_the_heads_most_important_for_accuracy_spares_the_planted_head(tiny_tokenizer, planted_truth, dev):
    """The planted classifier reads gender only, so the planted head is also the most important for the task loss:
    protecting one head (1/12 of them) keeps it, and the bias-aware choice falls on another head."""
    head, _ = planted_truth
    loaded = build_planted(tiny_tokenizer)
    effect, _, _ = head_bias_effects(loaded, dev, None, max_length=32)
    importance = _importance(loaded, dev)
    choice = bias_prune(loaded.anatomy, effect, importance, 1, protect=1 / 12)
    assert choice.protected == (head,) and head not in choice.removed and len(choice.removed) == 1


def test_importance_pruning_removes_the_least_important_heads(tiny_tokenizer, dev):
    loaded = build_planted(tiny_tokenizer)
    importance = _importance(loaded, dev)
    choice = importance_prune(loaded.anatomy, importance, 3)
    flat = [(float(importance[l, h]), l, h) for l in range(3) for h in range(4)]
    assert set(choice.removed) == {(l, h) for _, l, h in sorted(flat)[:3]}
    assert sum(map(len, choice.kept)) == 9


def test_bias_pruning_cannot_empty_a_layer_or_pass_the_protected_heads(tiny_tokenizer):
    scores = torch.arange(12.0).reshape(3, 4)
    keep, removed = select_removal(scores, 9)
    assert all(len(k) == 1 for k in keep) and len(removed) == 9
    with pytest.raises(ValueError, match="only 9 of the 10 heads"):
        select_removal(scores, 10)
    with pytest.raises(ValueError, match="protected"):
        select_removal(scores, 9, protected={(0, 0), (0, 1)})


def _probe_accuracy(loaded, task: TaskData, layer: int, how: str) -> float:
    batch = loaded.tokenize(list(task.texts), max_length=32)
    with torch.no_grad():
        states = loaded.anatomy.hidden_states(batch["input_ids"], batch["attention_mask"])[layer]
    X = pool(states, batch["attention_mask"], how).numpy()
    probe = LogisticRegression(C=1.0, max_iter=2000)
    return float(cross_val_score(probe, X, task.genders, cv=5).mean())


@pytest.mark.parametrize("layer", [1, 2])
def test_leace_variant_leaves_gender_probe_at_chance_and_reloads_identically(tiny_tokenizer, dev, tmp_path, layer):
    loaded = build_planted(tiny_tokenizer)
    train, held_out = _task(2000, seed=5), _task(600, seed=7)  # fit on train; probe as the run does, on other texts
    assert _probe_accuracy(loaded, held_out, layer, "mean") > 0.95  # gender is linearly decodable before erasure
    rows = erase(loaded, train, EraseSection(layers=(layer,)), batch_size=64, max_length=32)
    assert rows[0]["layer"] == layer and set(installed_erasers(loaded.model)) == {layer}
    for how in ("mean", "cls"):
        assert abs(_probe_accuracy(loaded, held_out, layer, how) - 0.5) <= 0.05, how
    save_model(loaded, tmp_path / "erased")
    reloaded = load_model(tmp_path / "erased", head="classifier")
    assert set(installed_erasers(reloaded.model)) == {layer}
    assert reloaded.model.config.erasure["fit_on"] == ["tokens", "cls", "mean"]
    assert [len(c) for c in installed_erasers(reloaded.model).values()] == [3]
    batch = loaded.tokenize(list(dev.texts), max_length=32)
    with torch.no_grad():
        expected, got = loaded.model(**batch).logits, reloaded.model(**batch).logits
        plain = build_planted(tiny_tokenizer).model(**batch).logits
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    assert not torch.allclose(plain, expected, atol=1e-3)  # the erasers act
    assert _gap(reloaded, dev) == pytest.approx(_gap(loaded, dev), abs=1e-6)


def test_an_erased_folder_without_its_erasers_fails_clearly(tiny_tokenizer, dev, tmp_path):
    loaded = build_planted(tiny_tokenizer)
    erase(loaded, _task(40, seed=3), EraseSection(layers=(-1,)), batch_size=64, max_length=32)
    assert set(installed_erasers(loaded.model)) == {3}
    save_model(loaded, tmp_path / "erased")
    (tmp_path / "erased" / "erasure.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="erasure.safetensors is missing"):
        load_model(tmp_path / "erased", head="classifier")


def test_erasing_at_a_layer_that_does_not_exist_is_refused(tiny_tokenizer, dev):
    loaded = build_planted(tiny_tokenizer)
    with pytest.raises(ValueError, match=r"layers = \[4\].*0\.\.3"):
        erase(loaded, dev, EraseSection(layers=(4,)), batch_size=64, max_length=32)
    with pytest.raises(ValueError, match="names a layer twice"):
        erase(loaded, dev, EraseSection(layers=(3, -1)), batch_size=64, max_length=32)


def test_pruning_curve_bias_order_drops_the_gap_first_importance_and_random_do_not(planted):
    loaded, data = planted
    curve = pruning_curve(loaded, data, n_random=4, n_boot=20, seed=0)
    bias = curve[curve["metric"] == "abs_cf_gap"].set_index(["order", "step"])["value"]
    start = bias["bias", 0]
    assert start > 0.1 and bias["importance", 0] == start == bias["random", 0]
    assert bias["bias", 1] <= 0.05 * start  # the planted head goes first
    assert bias["importance", 1] > 0.5 * start and bias["random", 1] > 0.5 * start
    assert sorted(set(curve["step"])) == list(range(13)) and set(curve["n_orders"]) == {1, 4}
    accuracy = curve[(curve["metric"] == "accuracy") & (curve["order"] == "bias")]
    assert accuracy["value"].between(0, 1).all() and (accuracy["ci_low"] <= accuracy["value"]).all()
    random_rows = curve[curve["order"] == "random"]
    assert (random_rows["order_min"] <= random_rows["value"] + 1e-9).all()
    with pytest.raises(ValueError, match="protect"):
        pruning_curve(loaded, data, protect=1.0)


def test_an_amnesic_eraser_on_an_erased_variant_acts_after_the_variants_own(tiny_tokenizer, dev):
    loaded = build_planted(tiny_tokenizer)
    erase(loaded, _task(200, seed=5), EraseSection(layers=(1,)), batch_size=64, max_length=32)
    batch = loaded.tokenize(list(dev.texts), max_length=32)
    with torch.no_grad():
        expected = loaded.anatomy.hidden_states(batch["input_ids"], batch["attention_mask"])[1]
        seen = []
        with erase_layer(loaded, 1, lambda h: seen.append(h.clone()) or torch.zeros_like(h)):
            inside = loaded.anatomy.hidden_states(batch["input_ids"], batch["attention_mask"])[1]
        again = loaded.anatomy.hidden_states(batch["input_ids"], batch["attention_mask"])[1]
    torch.testing.assert_close(seen[0], expected)  # the extra eraser sees the variant's erased state
    assert not inside.any() and torch.equal(again, expected)
    assert [len(chain) for chain in installed_erasers(loaded.model).values()] == [3]
