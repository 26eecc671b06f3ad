"""A small run with the ``reweighed`` training set: it builds the reweighed teacher and student beside the original
ones, and the ``mitigation`` table compares each ``@reweighed`` variant with its twin on the original set."""

from __future__ import annotations

import pytest
from run_fixtures import demo_config, run_pipeline, save_teacher

from pipeline.runs.config import ConfigError, config_from_dict
from pipeline.runs.task_data import load_task_splits
from pipeline.schema import read_table


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    teacher = save_teacher(tmp_path_factory.mktemp("teacher"))
    config = demo_config(tmp_path_factory.mktemp("runs"), teacher, name="reweighed", analyses=["bias_metrics"])
    config["run"]["seeds"] = [0]
    config["finetune"]["epochs"] = 1
    config["task"]["training_sets"] = ["original", "reweighed"]
    config["compress"] = {"distil": config["compress"]["distil"]}
    config["metrics"] = {**config["metrics"], "metrics": ["extrinsic", "counterfactual"], "n_boot": 100}
    return run_pipeline(config).run_dir


def test_a_run_compares_each_reweighed_variant_with_its_original_twin(run_dir):
    table = read_table(run_dir / "tables" / "mitigation.parquet")
    pairs = set(zip(table["variant"], table["mitigation"], table["twin"]))
    assert {
        ("teacher-ft@reweighed", "reweighed", "teacher-ft"),
        ("distil-ft_before@reweighed", "reweighed", "distil-ft_before"),
    } <= pairs
    pooled = table[table["level"] == "pooled"]
    assert {"accuracy", "gap_rms"} <= set(pooled.loc[pooled["variant"] == "distil-ft_before@reweighed", "metric"])


def test_reweighed_is_refused_when_a_class_gender_cell_is_empty(tmp_path):
    rows = [("a", g) for g in ("m", "f") for _ in range(10)] + [("b", "f")] * 20  # no man in class b
    path = tmp_path / "task.csv"
    path.write_text("text,job,gender\n" + "".join(f"text {i},{job},{g}\n" for i, (job, g) in enumerate(rows)))
    task = {"dataset": "table", "path": str(path), "text_col": "text", "label_col": "job", "gender_col": "gender"}
    cfg = config_from_dict({"run": {"name": "t"}, "task": {**task, "min_per_class": 1}})
    assert set(load_task_splits(cfg.task).train) == {"original"}
    cfg = config_from_dict({"run": {"name": "t"}, "task": {**task, "min_per_class": 1, "training_sets": ["reweighed"]}})
    with pytest.raises(ConfigError, match=r"have no training example.*Fix: drop 'reweighed'"):
        load_task_splits(cfg.task)
