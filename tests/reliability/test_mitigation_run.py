"""Mitigations end to end on a small real run: CDA, bias-aware pruning with its importance twin and LEACE erasure
(on the teacher and on a distilled student) are built, measured like any variant, compared with their unmitigated
twins in the ``mitigation`` table, placed on the ``frontier`` and reported (RQ6)."""

from __future__ import annotations

import pytest
from run_fixtures import demo_config, run_pipeline, save_teacher

from pipeline.cli.full_run import run
from pipeline.erasure_hooks import installed_erasers
from pipeline.models import load_model
from pipeline.runs.config import ConfigError, config_from_dict
from pipeline.schema import read_table

MITIGATED = {
    ("teacher-ft@cda", "cda", "teacher-ft"),
    ("biasprune2h-ft_before", "biasprune", "prune2h-ft_before"),
    ("erase-ft_before", "erase", "teacher-ft"),
    ("distil_erase-ft_before", "erase", "distil-ft_before"),
    ("erase-ft_before@cda", "cda", "erase-ft_before"),
}


def _config(out, teacher) -> dict:
    config = demo_config(out, teacher, name="mitigation", analyses=["bias_metrics"])
    config["run"]["seeds"] = [0]
    config["task"]["training_sets"] = ["original", "cda"]
    config["finetune"]["epochs"] = 1  # what is tested is the plumbing, not how well the tiny teacher learns
    config["compress"] = {
        "distil": {**config["compress"]["distil"]},
        "biasprune": {"heads": [2], "protect": 0.1, "bias_examples": 24, "importance_examples": 64},
        "erase": {"orders": ["none", "before"], "layers": [-1], "fit_examples": 160, "on": ["teacher", "distil"]},
    }
    config["metrics"] = {**config["metrics"], "metrics": ["extrinsic", "counterfactual"], "n_boot": 100}
    return config


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    teacher = save_teacher(tmp_path_factory.mktemp("teacher"))
    result = run_pipeline(_config(tmp_path_factory.mktemp("runs"), teacher))
    assert result.actions == {"build": "ran", "task_metrics": "ran", "bias_metrics": "ran", "findings": "ran"}
    names = {s.variant for s in result.plan if s.exposed}
    assert {v for v, _, _ in MITIGATED} | {t for _, _, t in MITIGATED} | {"erase-ft_none"} <= names
    return result.run_dir


def test_mitigated_variants_are_built_and_reload_to_their_in_run_predictions(run_dir):
    preds, built = (
        read_table(run_dir / "tables" / "predictions.parquet"),
        read_table(run_dir / "tables" / "build_predictions.parquet"),
    )
    for variant in (
        "erase-ft_before",
        "distil_erase-ft_before",
        "biasprune2h-ft_before",
        "prune2h-ft_before",
        "teacher-ft@cda",
    ):
        mine = preds[preds["variant"] == variant].sort_values("example")["pred"].tolist()
        assert mine and mine == built[built["variant"] == variant].sort_values("example")["pred"].tolist(), variant
    folder = run_dir / "models" / "erase-ft_before" / "seed0"
    assert (folder / "erasure.safetensors").is_file()
    assert list(installed_erasers(load_model(folder, head="classifier").model)) == [4]  # -1 = after block 3


def test_bias_pruning_and_its_twin_remove_as_many_heads(run_dir):
    training = read_table(run_dir / "tables" / "training.parquet")
    for variant in ("biasprune2h-ft_before", "prune2h-ft_before"):
        rows = training[training["variant"] == variant]
        assert (rows["metric"] == "removed").sum() == 2
        assert rows.loc[rows["metric"] == "heads_kept", "value"].item() == 14
    bias_rows = training[training["variant"] == "biasprune2h-ft_before"]
    assert (bias_rows["metric"] == "dev_bias").sum() == 1 and (bias_rows["metric"] == "bias_effect").sum() == 16
    assert (bias_rows["metric"] == "protected").sum() == 2  # round(0.1 * 16)


def test_every_mitigation_is_compared_with_its_twin(run_dir):
    table = read_table(run_dir / "tables" / "mitigation.parquet")
    pairs = set(zip(table["variant"], table["mitigation"], table["twin"]))
    assert MITIGATED <= pairs
    pooled = table[table["level"] == "pooled"]
    for variant, _, twin in MITIGATED:
        metrics = set(pooled.loc[(pooled["variant"] == variant) & (pooled["twin"] == twin), "metric"])
        assert {"accuracy", "gap_rms", "cf_prob_gap"} <= metrics, variant
    assert "erase-ft_none" not in set(table["variant"])  # both heads untrained, and no intrinsic metric ran
    finite = table[table["ci_low"].notna()]
    assert table["q"].notna().any() and finite["ci_low"].le(finite["value"] + 1e-12).all()


def test_the_frontier_holds_every_variant_and_a_pareto_front(run_dir):
    frontier = read_table(run_dir / "tables" / "frontier.parquet")
    assert set(frontier["metric"]) == {"gap_rms", "cf_skew_gap"}  # the primary counterfactual target
    gap = frontier[frontier["metric"] == "gap_rms"].set_index("variant")
    assert {"teacher-ft", "erase-ft_before", "biasprune2h-ft_before", "distil_erase-ft_before"} <= set(gap.index)
    assert gap.loc[gap["fit"], "pareto"].any() if gap["fit"].any() else not gap["pareto"].any()
    assert gap.loc["distil_erase-ft_before", "compression"] == "distil"
    assert gap.loc["biasprune2h-ft_before", ["compression", "mitigation"]].tolist() == ["prune", "biasprune"]
    assert gap.loc["erase-ft_before@cda", "mitigation"] == "cda+erase"


def test_the_report_answers_rq6_with_the_frontier_figure(run_dir):
    page = (run_dir / "report" / "index.html").read_text(encoding="utf-8")
    assert "RQ6 What removes the bias" in page and "could not be computed" not in page
    assert (run_dir / "report" / "figures" / "rq6.png").stat().st_size > 1000


def test_a_mitigation_on_an_unplanned_base_stops_before_any_work(tmp_path):
    config = _config(tmp_path / "runs", tmp_path / "teacher")
    config["compress"]["erase"]["on"] = ["tiny"]
    with pytest.raises(ConfigError, match="on = 'tiny': no method of this run is called so"):
        run(config_from_dict(config))
    assert not (tmp_path / "runs").exists()
