"""The training remedy ``eoreg`` as a record: its plan (beside the twin ``refit``), its preflight check, its loss
(weighted on a weighted training set) on a tiny model, and a small run whose ``mitigation`` table compares it (and
fair distillation) with its twin. Reweighing is a training set (``tests/pipeline/compress/test_reweighed*.py``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from run_fixtures import demo_config, run_pipeline, save_teacher
from torch.nn import functional as F

from pipeline.compress.config import EoRegSection
from pipeline.compress.fair_losses import soft_tpr_gap
from pipeline.compress.refit import refit, refit_loss
from pipeline.compress.reweigh import reweighing_weights
from pipeline.data import TaskData, WeightedTaskData
from pipeline.runs.compress_checks import check_compression, check_refit_data
from pipeline.runs.config import ConfigError, config_from_dict
from pipeline.runs.plan import plan_variants
from pipeline.runs.task_data import TaskSplits
from pipeline.schema import read_table
from pipeline.variants import Variant

torch.set_num_threads(1)


def _cfg(**compress):
    return config_from_dict({"run": {"name": "t", "seeds": [0]}, "compress": {"distil": {}, **compress}})


def test_the_remedy_and_its_twin_are_planned_on_the_teacher_and_a_student():
    cfg = _cfg(eoreg={"on": ["teacher", "distil"], "weight": 2.0})
    plan = {s.variant: s for s in plan_variants(cfg)}
    for name, op, parent, loss in [
        ("refit-ft_before", "eoreg", "teacher-ft/seed0", "plain"),
        ("eoreg-ft_before", "eoreg", "teacher-ft/seed0", "eoreg"),
        ("distil_refit-ft_before", "eoreg", "distil-ft_before/seed0", "plain"),
        ("distil_eoreg-ft_before", "eoreg", "distil-ft_before/seed0", "eoreg"),
    ]:
        step = plan[name]
        assert (step.op, step.parent, step.params, step.exposed) == (op, parent, {"loss": loss}, True), name
        assert Variant.parse(name).name == name


def test_the_remedy_continues_a_fine_tuned_classifier():
    check_compression(_cfg(eoreg={"weight": 3.0}), None)
    with pytest.raises(ValueError, match="continues fine-tuning"):
        EoRegSection(orders=("none",))


def _data(labels, genders) -> TaskData:
    return TaskData("toy", tuple(f"text {i}" for i in range(len(labels))), labels, genders, ("a", "b", "c"))


def test_a_training_set_of_one_gender_stops_eoreg_before_any_work():
    full = _data([0, 1, 2, 0, 1, 2], [0, 0, 0, 1, 1, 1])
    holed = _data([0, 1, 2, 0, 1, 1], [0, 0, 0, 1, 1, 1])  # no class 2 with gender 1: the penalty still applies
    men = _data([0, 1, 2, 0, 1, 2], [0] * 6)
    check_refit_data(_cfg(eoreg={}), TaskSplits({"original": full, "cda": holed}, full, full))
    with pytest.raises(ConfigError, match=r"eoreg on training set 'cda'.*both genders"):
        check_refit_data(_cfg(eoreg={}), TaskSplits({"original": full, "cda": men}, full, full))
    check_refit_data(_cfg(), TaskSplits({"original": full, "cda": men}, full, full))


def test_the_eoreg_loss_weighs_its_cross_entropy_on_a_reweighed_training_set():
    plain = _data([0, 0, 0, 1, 1, 2, 2], [0, 0, 1, 1, 0, 0, 1])
    train = WeightedTaskData.of(plain, reweighing_weights(plain.labels, plain.genders))
    section = EoRegSection(weight=2.0)
    logits, rows = torch.randn(4, 3, generator=torch.Generator().manual_seed(0)), torch.tensor([5, 0, 3, 2])
    labels, groups = torch.tensor(train.labels)[rows], torch.tensor(train.genders)[rows]
    w = torch.tensor(train.weights, dtype=torch.float32)[rows]
    ce = F.cross_entropy(logits, labels, reduction="none")
    gap = 2.0 * soft_tpr_gap(logits, labels, groups)
    assert refit_loss("eoreg", train, section)(logits, labels, rows).item() == pytest.approx(
        ((w * ce).mean() + gap).item(), abs=1e-6
    )
    assert refit_loss("eoreg", plain, section)(logits, labels, rows).item() == pytest.approx(
        (ce.mean() + gap).item(), abs=1e-6
    )
    assert refit_loss("plain", train, section) is None  # finetune_classifier weighs the plain loss itself
    with pytest.raises(ValueError, match="unknown refit loss"):
        refit_loss("mixup", train, section)


def test_refit_trains_with_each_loss_and_the_losses_differ(make_loaded, task):
    section = EoRegSection(epochs=2, lr=1e-3, batch_size=4, warmup_ratio=0.0, weight=5.0)
    results = {}
    for kind in ("plain", "eoreg"):
        loaded = make_loaded("bert", "classifier", seed=0)
        result = refit(loaded, task, None, section, kind, 0, max_length=16, eval_batch_size=8)
        assert result.steps == 6 and loaded.head_trained and np.isfinite(result.final_loss)
        results[kind] = result.epoch_losses
    assert len(set(results.values())) == 2


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    teacher = save_teacher(tmp_path_factory.mktemp("teacher"))
    config = demo_config(tmp_path_factory.mktemp("runs"), teacher, name="remedies", analyses=["bias_metrics"])
    config["run"]["seeds"] = [0]
    config["finetune"]["epochs"] = 1
    refit_settings = {"epochs": 1, "lr": 1e-3, "batch_size": 16, "warmup_ratio": 0.0}
    config["compress"] = {
        "eoreg": {**refit_settings, "weight": 2.0},
        "fairdistil": {"epochs": 1, "lr": 2e-3, "batch_size": 16, "warmup_ratio": 0.0, "gap_weight": 2.0},
    }
    config["metrics"] = {**config["metrics"], "metrics": ["extrinsic", "counterfactual"], "n_boot": 100}
    return run_pipeline(config).run_dir


def test_a_run_compares_each_training_remedy_with_its_twin(run_dir):
    table = read_table(run_dir / "tables" / "mitigation.parquet")
    pairs = set(zip(table["variant"], table["mitigation"], table["twin"]))
    assert {
        ("eoreg-ft_before", "eoreg", "refit-ft_before"),
        ("fairdistil-ft_before", "fairdistil", "distil-ft_before"),
    } <= pairs
    pooled = table[table["level"] == "pooled"]
    for variant in ("eoreg-ft_before", "fairdistil-ft_before"):
        metrics = set(pooled.loc[pooled["variant"] == variant, "metric"])
        assert {"accuracy", "gap_rms", "cf_prob_gap"} <= metrics, variant
    training = read_table(run_dir / "tables" / "training.parquet")
    steps = training[training["metric"] == "train_steps"].set_index("variant")["value"]
    assert steps["eoreg-ft_before"] == steps["refit-ft_before"] == 20  # 320 / 16


def test_the_frontier_marks_each_training_remedy(run_dir):
    frontier = read_table(run_dir / "tables" / "frontier.parquet")
    gap = frontier[frontier["metric"] == "gap_rms"].set_index("variant")
    remedies = ["eoreg-ft_before", "fairdistil-ft_before"]
    assert gap.loc[remedies, "mitigation"].tolist() == ["eoreg", "fairdistil"]
    assert {"refit-ft_before", "distil-ft_before"} <= set(gap.index)
