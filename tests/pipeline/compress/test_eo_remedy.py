"""Equal-opportunity post-processing as a remedy record (``[compress.eo]``): the rule saved with the variant and
applied on load (identical predictions after a round trip), its dev TPR gaps under the tolerance on a planted
scored dataset, the given / inferred gender options, the preflight, its twin, and a tiny run's ``mitigation`` row."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from run_fixtures import demo_config, run_pipeline, save_teacher

from pipeline.compress.config import EoSection
from pipeline.compress.eo import fit_eo
from pipeline.compress.equal_opportunity import fit_rule, tpr_gaps, tprs
from pipeline.data import GenderSwapper, TaskData, counterfactual
from pipeline.eo_hooks import (
    EoRule,
    gender_lexicon,
    given_genders,
    infer_genders,
    install_eo_rule,
    installed_rule,
    token_texts,
)
from pipeline.findings.compute import FindingsConfig, compute_findings
from pipeline.metrics.predict import classifier_logits
from pipeline.models import load_model
from pipeline.report.remedies import mitigation_section
from pipeline.runs.compress_checks import check_compression, check_eo_data
from pipeline.runs.config import ConfigError, config_from_dict
from pipeline.runs.task_data import TaskSplits
from pipeline.schema import read_table
from pipeline.variants import mitigation_twins

torch.set_num_threads(1)

_JOBS = ("nurse", "pilot", "teacher", "doctor", "writer", "singer", "painter", "driver", "chef", "judge")
_PEOPLE = (("he", "she"), ("his father", "her mother"), ("the man", "the woman"), ("john", "mary"))


def _dev(n_per_cell: int = 8) -> TaskData:
    """Gendered template sentences in three classes, every (class, gender) cell filled."""
    texts, labels, genders = [], [], []
    for i in range(n_per_cell * 3):
        for g in (0, 1):
            person = _PEOPLE[i % len(_PEOPLE)][g]
            texts.append(f"{person} works as a {_JOBS[i % len(_JOBS)]} in town {i}")
            labels.append(i % 3)
            genders.append(g)
    return TaskData("dev", tuple(texts), labels, genders, ("a", "b", "c"))


def _fitted(make_loaded, gender: str = "inferred", tol: float = 0.0):
    loaded, dev = make_loaded("bert", "classifier", seed=0), _dev()
    rows = fit_eo(loaded, dev, EoSection(gender=gender, tol=tol), 3, batch_size=16, max_length=32)
    return loaded, dev, rows


def _labels(loaded, texts, batch_size: int = 64):
    return classifier_logits(loaded, texts, batch_size=batch_size, max_length=32).argmax(-1).numpy()


def test_the_saved_rule_reloads_and_predicts_identically(make_loaded, tmp_path):
    loaded, dev, rows = _fitted(make_loaded)
    metrics = {r["metric"]: r["value"] for r in rows}
    assert metrics["eo_dev_tpr_gap_after"] <= 1e-9  # the tiny random model predicts one class: the rule keeps it
    fitted = installed_rule(loaded.model)
    mixed = np.array([[[0.5, 0.3, 0.2]] * 3, [[0.2, 0.3, 0.5]] * 3])  # a randomised rule, so the draws matter
    install_eo_rule(loaded.model, loaded.tokenizer, EoRule(mixed, "inferred", 3, fitted.male, fitted.female))
    twins = counterfactual(dev, GenderSwapper.from_winobias()).texts
    texts = [*dev.texts, *twins]
    before = classifier_logits(loaded, texts, batch_size=64, max_length=32)
    assert len(set(before.argmax(-1).tolist())) == 3
    loaded.model.save_pretrained(tmp_path)
    loaded.tokenizer.save_pretrained(tmp_path)
    again = load_model(tmp_path, head="classifier")
    assert torch.equal(classifier_logits(again, texts, batch_size=64, max_length=32), before)
    assert (_labels(again, texts, batch_size=1) == before.argmax(-1).numpy()).all()  # batching does not matter
    assert np.array_equal(installed_rule(again.model).matrix, installed_rule(loaded.model).matrix)
    assert set(before.softmax(-1).flatten().tolist()) <= {0.0, 1.0}  # one draw: its label has probability 1
    assert installed_rule(load_model(tmp_path, head="encoder").model) is None
    with pytest.raises(ValueError, match="post-processed by an eo rule already"):
        fit_eo(again, dev, EoSection(), 0, batch_size=16, max_length=32)


def test_the_gender_is_inferred_from_the_gendered_words():
    male, female = gender_lexicon()
    got = infer_genders(["he is a nurse", "Her mother sings", "the chef cooks", "he and she"], male, female)
    assert got.tolist() == [0, 1, -1, -1]


def test_a_given_gender_rule_needs_the_genders_at_prediction_time(make_loaded):
    loaded, dev, _ = _fitted(make_loaded, gender="given")
    with pytest.raises(LookupError, match="given gender"):
        _labels(loaded, dev.texts)
    fitted = installed_rule(loaded.model)
    mixed = EoRule(np.array([[[0.5, 0.3, 0.2]] * 3, [[0.2, 0.3, 0.5]] * 3]), "given", 3, fitted.male, fitted.female)
    install_eo_rule(loaded.model, loaded.tokenizer, mixed)
    with given_genders(loaded, dev.texts, dev.genders, max_length=32):
        drawn = _labels(loaded, dev.texts)
    identity = EoRule(np.stack([np.eye(3)] * 2), "given", 3, fitted.male, fitted.female)
    install_eo_rule(loaded.model, loaded.tokenizer, identity)
    with given_genders(loaded, dev.texts, dev.genders, max_length=32):
        parent = _labels(loaded, dev.texts)  # the model's own predictions
    expect = mixed.apply(parent, token_texts(loaded.tokenizer, dev.texts, 32), np.asarray(dev.genders))
    assert (drawn == expect).all() and len(set(drawn.tolist())) == 3


def _planted(n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Predictions whose group 1 is pushed towards class 0 and away from class 1, with gendered texts."""
    rng = np.random.default_rng(seed)
    labels, groups = rng.integers(0, k, n), rng.integers(0, 2, n)
    scores = 1.5 * np.eye(k)[labels] + rng.normal(size=(n, k))
    scores[:, 0] += 0.8 * groups
    scores[:, 1] -= 0.8 * groups
    texts = [f"{('he', 'she')[g]} wrote note {seed} {i}" for i, g in enumerate(groups)]
    return scores.argmax(1), labels, groups, texts


def test_on_a_planted_scored_dataset_the_drawn_dev_gaps_fall_under_tol():
    k, tol = 3, 0.02
    pred, labels, groups, texts = _planted(20000, k, 0)
    assert (infer_genders(texts, *gender_lexicon()) == groups).all()
    before = np.nanmax(tpr_gaps(tprs(pred, labels, groups, k)))
    rule = EoRule(fit_rule(pred, labels, groups, k, tol=tol), "inferred", 0, *gender_lexicon())
    drawn = rule.apply(pred, texts, groups)
    expected = np.stack([rule.expected(pred, groups)[(groups == g) & (labels == c), c].mean(0) for g in (0, 1)
                         for c in range(k)]).reshape(2, k)  # fmt: skip
    assert before > 0.3 and np.nanmax(tpr_gaps(expected)) <= tol + 1e-9
    assert np.nanmax(tpr_gaps(tprs(drawn, labels, groups, k))) <= tol + 0.02  # draws: about 3,300 rows a cell
    assert (rule.apply(pred, texts, groups) == drawn).all()  # seeded by the texts
    test_pred, test_labels, test_groups, test_texts = _planted(20000, k, 1)
    after = tprs(rule.apply(test_pred, test_texts, test_groups), test_labels, test_groups, k)
    assert np.nanmax(tpr_gaps(after)) < 0.05
    assert np.nanmax(tpr_gaps(tprs(test_pred, test_labels, test_groups, k))) > 0.3
    # measured: dev 0.373 -> 0.020 expected, 0.022 drawn; test 0.367 -> 0.028


def test_a_text_and_its_twin_share_their_draw():
    rule = EoRule(np.full((2, 3, 3), 1 / 3), "inferred", 7, *gender_lexicon())
    u = rule.uniforms(["he is a nurse", "she is a nurse", "she is a pilot"])
    assert u[0] == u[1] != u[2]


def _cfg(**eo):
    return config_from_dict({"run": {"name": "t", "seeds": [0]}, "compress": {"eo": eo}})


def test_the_preflight_refuses_eo_without_usable_dev_data():
    dev = _dev(2)
    check_eo_data(_cfg(), TaskSplits({"original": dev}, dev, dev))
    empty = dev.subset(np.array([], dtype=int))
    with pytest.raises(ConfigError, match="dev split, which is empty"):
        check_eo_data(_cfg(), TaskSplits({"original": dev}, empty, dev))
    holed = dev.subset(np.flatnonzero((np.asarray(dev.labels) != 2) | (np.asarray(dev.genders) != 1)))
    with pytest.raises(ConfigError, match=r"no row for \['c/female'\].*larger dev split"):
        check_eo_data(_cfg(gender="given"), TaskSplits({"original": dev}, holed, dev))
    check_compression(_cfg(gender="given"), None)  # a run passes each text's gender (test_eo_given_gender.py)
    with pytest.raises(ConfigError, match="fine-tuned classifier"):
        _cfg(orders=["none"])


def test_its_twin_is_its_input():
    assert mitigation_twins("eo-ft_before") == [("eo", ["teacher-ft"])]
    assert mitigation_twins("distil_eo-ft_before") == [("eo", ["distil-ft_before"])]
    assert mitigation_twins("eoreg-ft_before") == [("eoreg", ["refit-ft_before"])]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    teacher = save_teacher(tmp_path_factory.mktemp("teacher"))
    analyses = ["bias_metrics", "attribution"]
    config = demo_config(tmp_path_factory.mktemp("runs"), teacher, name="eo", analyses=analyses)
    config["run"]["seeds"] = [0]
    config["attribution"] |= {"variants": ["eo-ft_before"]}
    config["task"]["max_eval"] = 120
    config["compress"] = {"eo": {"gender": "inferred", "tol": 0.02}}
    config["metrics"] = {**config["metrics"], "metrics": ["extrinsic", "counterfactual"], "n_boot": 100}
    return run_pipeline(config).run_dir


def test_a_run_builds_measures_and_compares_eo_with_its_twin(run_dir):
    table = read_table(run_dir / "tables" / "mitigation.parquet")
    assert ("eo-ft_before", "eo", "teacher-ft") in set(zip(table["variant"], table["mitigation"], table["twin"]))
    pooled = table[(table["level"] == "pooled") & (table["variant"] == "eo-ft_before")]
    assert {"accuracy", "gap_rms", "cf_flip_rate"} <= set(pooled["metric"])
    assert not {"cf_prob_gap", "cf_skew_gap", "cf_prob_abs_change"} & set(pooled["metric"])  # decisions only
    training = read_table(run_dir / "tables" / "training.parquet")
    gaps = training[training["variant"] == "eo-ft_before"].set_index("metric")["value"]
    assert gaps["eo_dev_tpr_gap_after"] <= 0.02 + 1e-9 < gaps["eo_dev_tpr_gap_before"]  # measured: 0.52 -> 0.02
    gap_rms = pooled.set_index("metric").loc["gap_rms"]
    assert gap_rms["value_variant"] < gap_rms["value_reference"]  # test GAP_RMS measured: 0.28 -> 0.06
    built, measured = (read_table(run_dir / "tables" / f"{t}.parquet") for t in ("build_predictions", "predictions"))
    eo = [t.loc[t["variant"] == "eo-ft_before", "pred"].to_numpy() for t in (built, measured)]
    twin = measured.loc[measured["variant"] == "teacher-ft", "pred"].to_numpy()
    assert (eo[0] == eo[1]).all() and (eo[1] != twin).any()  # reloaded = as built; post-processed
    unknown = gaps["eo_dev_unknown_gender_share"]
    notes = mitigation_section(compute_findings(run_dir, FindingsConfig(n_boot=100))).notes
    said = [n for n in notes if n.startswith("eo-ft_before is equal opportunity by post-processing")]
    assert len(said) == 1 and "the gendered words of each text" in said[0]
    assert f"{100 * unknown:.2g}% of its dev texts had no inferred gender" in said[0]


def test_attribution_of_an_eo_variant_is_a_skipped_row_that_names_its_parent(run_dir):
    rows = read_table(run_dir / "tables" / "head_ablation.parquet")
    assert set(rows["variant"]) == {"eo-ft_before"} and rows["value"].isna().all()
    assert rows["skipped"].str.contains("equal-opportunity rule").all() and rows["skipped"].str.contains("parent").all()


def test_an_eo_variant_has_no_probability_gap_and_says_why(run_dir):
    metrics = read_table(run_dir / "tables" / "bias_metrics.parquet")
    eo = metrics[(metrics["variant"] == "eo-ft_before") & metrics["metric"].isin(["cf_prob_gap", "cf_skew_gap"])]
    assert len(eo) and eo["value"].isna().all() and eo["skipped"].str.contains("drawn decisions").all()
    flips = metrics[(metrics["variant"] == "eo-ft_before") & (metrics["metric"] == "cf_flip_rate")]
    assert flips["value"].notna().all()
    twin = metrics[(metrics["variant"] == "teacher-ft") & (metrics["metric"] == "cf_prob_gap")]
    assert twin["value"].notna().all()  # a model that outputs probabilities keeps its gaps
    examples = read_table(run_dir / "tables" / "counterfactual_examples.parquet")
    mine = set(examples.loc[examples["variant"] == "eo-ft_before", "metric"])
    assert "cf_flip_rate" in mine and not {"cf_prob_gap", "cf_skew_gap"} & mine
