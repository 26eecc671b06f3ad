"""An equal-opportunity variant with ``gender = "given"`` inside a run (issue 29): every prediction reads the data's
gender of each text and the flipped one of its gender-swapped twin (:func:`pipeline.eo_hooks.data_genders`, applied
by ``classifier_logits``); inputs given both genders keep the model's prediction; plain models are untouched; a tiny
run builds, measures and compares the variant, and its report says where the gender came from."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from run_fixtures import demo_config, run_pipeline, save_teacher

from pipeline.data import FEMALE, MALE, GenderSwapper, TaskData, counterfactual
from pipeline.data.neutral_edits import NeutralEditor
from pipeline.eo_hooks import UNKNOWN, EoRule, gender_lexicon, given_genders, install_eo_rule
from pipeline.findings.compute import FindingsConfig, compute_findings
from pipeline.metrics.counterfactual import counterfactual_examples, counterfactual_rows
from pipeline.metrics.predict import classifier_logits
from pipeline.report.remedies import mitigation_section
from pipeline.schema import read_table

torch.set_num_threads(1)

_PEOPLE = (("he", "she"), ("his father", "her mother"), ("the man", "the woman"), ("john", "mary"))
_JOBS = ("nurse", "pilot", "teacher", "doctor", "writer", "singer")
CONTROL = NeutralEditor({"works": "labours"})


def _data() -> TaskData:
    """Gendered template sentences, both genders of each, in three classes."""
    texts, genders = [], []
    for i in range(12):
        for g in (MALE, FEMALE):
            texts.append(f"{_PEOPLE[i % 4][g]} works as a {_JOBS[i % 6]} in town {i}")
            genders.append(g)
    return TaskData("toy", tuple(texts), np.arange(24) % 3, np.array(genders), ("a", "b", "c"))


def _labels(loaded, texts, genders=None) -> np.ndarray:
    return classifier_logits(loaded, texts, batch_size=8, max_length=32, genders=genders).argmax(-1).numpy()


def _female_shift(c: int, k: int = 3) -> EoRule:
    """A rule that keeps every prediction of men and maps class ``c`` to ``c + 1`` for women (no randomness)."""
    matrix = np.stack([np.eye(k), np.eye(k)])
    matrix[FEMALE, c] = np.eye(k)[(c + 1) % k]
    return EoRule(matrix, "given", 0, *gender_lexicon())


def _expected(parent: np.ndarray, genders: np.ndarray, c: int) -> np.ndarray:
    return np.where((genders == FEMALE) & (parent == c), (c + 1) % 3, parent)


def test_the_given_gender_path_reads_the_data_genders_and_flips_them_for_twins(make_loaded):
    loaded, data = make_loaded("bert", "classifier", seed=0), _data()
    twins = counterfactual(data, GenderSwapper.from_winobias()).texts
    edits = [CONTROL.edit(t) for t in data.texts]
    parent, parent_twin, parent_edit = (_labels(loaded, t) for t in (data.texts, twins, edits))
    c = int(np.bincount(parent).argmax())
    install_eo_rule(loaded.model, loaded.tokenizer, _female_shift(c))
    got = _labels(loaded, data.texts, data.genders)
    changed = got != parent
    assert changed.any() and (changed == ((data.genders == FEMALE) & (parent == c))).all()  # exactly those rows
    assert (got == _expected(parent, data.genders, c)).all()
    rows = counterfactual_examples(loaded, data, batch_size=8, max_length=32, swapper=GenderSwapper.from_winobias(),
                                   control=CONTROL)  # fmt: skip
    rows = rows[rows["subset"] == "all"]
    flipped = np.where(data.genders == MALE, FEMALE, MALE)
    base, twin = _expected(parent, data.genders, c), _expected(parent_twin, flipped, c)
    edit = _expected(parent_edit, data.genders, c)  # a neutral edit keeps its text's gender
    for metric, expect in (("cf_flip_rate", base != twin), ("cf_control_flip", base != edit)):
        mine = rows[rows["metric"] == metric]
        assert len(mine) == 24 and (mine["value"].to_numpy() == expect[mine["example"]].astype(float)).all()
    assert rows.loc[rows["metric"] == "cf_flip_rate", "value"].sum() > 0


def test_counterfactual_rows_pass_own_genders_to_texts_and_edits_and_flipped_ones_to_twins():
    data, calls = _data(), []
    swapper = GenderSwapper({"he": "she", "she": "he", "john": "mary", "mary": "john"}, heldout={"john", "mary"},
                            possessives=False)  # fmt: skip

    def predict(texts: list[str], genders: np.ndarray) -> torch.Tensor:
        calls.append((texts, np.asarray(genders)))
        return torch.zeros(len(texts), 3)

    counterfactual_rows(predict, data, swapper=swapper, control=CONTROL)
    by_text = dict(zip(data.texts, data.genders))
    base, twins, held, edits = calls
    assert [by_text[t] for t in base[0]] == base[1].tolist()
    assert [by_text[swapper.swap(t)] for t in twins[0]] == (1 - twins[1]).tolist()
    assert held[1].tolist() == [1 - by_text[swapper.swap(t)] for t in held[0]] and len(held[0]) > 0
    assert [by_text[t.replace("labours", "works")] for t in edits[0]] == edits[1].tolist()


def test_inputs_without_one_known_gender_keep_the_model_prediction(make_loaded):
    loaded = make_loaded("bert", "classifier", seed=0)
    text = "he works as a nurse in town 1"
    c = int(_labels(loaded, [text])[0])
    install_eo_rule(loaded.model, loaded.tokenizer, _female_shift(c))
    assert _labels(loaded, [text], [FEMALE]).tolist() == [(c + 1) % 3]
    assert _labels(loaded, [text, text], [MALE, FEMALE]).tolist() == [c, c]  # one input, two genders: unknown
    assert _labels(loaded, [text], [UNKNOWN]).tolist() == [c]
    with given_genders(loaded, [text], [UNKNOWN], max_length=32):
        assert _labels(loaded, [text]).tolist() == [c]
    with pytest.raises(ValueError, match="given genders must be"):
        _labels(loaded, [text], [2])
    with pytest.raises(ValueError, match="genders must be 0"):  # the data never holds an unknown gender
        TaskData("toy", (text,), np.array([0]), np.array([UNKNOWN]), ("a", "b"))


def test_models_without_a_given_gender_rule_are_untouched(make_loaded):
    data = _data()
    plain = make_loaded("bert", "classifier", seed=1)
    assert torch.equal(classifier_logits(plain, data.texts, max_length=32),
                       classifier_logits(plain, data.texts, max_length=32, genders=data.genders))  # fmt: skip
    inferred = make_loaded("bert", "classifier", seed=1)
    rule = EoRule(np.array([[[0.5, 0.3, 0.2]] * 3, [[0.2, 0.3, 0.5]] * 3]), "inferred", 3, *gender_lexicon())
    install_eo_rule(inferred.model, inferred.tokenizer, rule)
    flipped = np.where(data.genders == MALE, FEMALE, MALE)
    assert torch.equal(classifier_logits(inferred, data.texts, max_length=32),
                       classifier_logits(inferred, data.texts, max_length=32, genders=flipped))  # fmt: skip


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    teacher = save_teacher(tmp_path_factory.mktemp("teacher"))
    config = demo_config(tmp_path_factory.mktemp("runs"), teacher, name="eo_given", analyses=["bias_metrics"])
    config["run"]["seeds"] = [0]
    config["task"]["max_eval"] = 120
    config["compress"] = {"eo": {"gender": "given", "tol": 0.02}}
    config["metrics"] = {**config["metrics"], "metrics": ["extrinsic", "counterfactual"], "n_boot": 100}
    return run_pipeline(config).run_dir


@pytest.mark.slow  # a tiny run: the inferred-gender run of test_eo_remedy.py covers the same path by default
def test_a_run_with_given_genders_builds_measures_compares_and_reports_eo(run_dir):
    table = read_table(run_dir / "tables" / "mitigation.parquet")
    assert ("eo-ft_before", "eo", "teacher-ft") in set(zip(table["variant"], table["mitigation"], table["twin"]))
    pooled = table[(table["level"] == "pooled") & (table["variant"] == "eo-ft_before")]
    assert {"accuracy", "gap_rms", "cf_flip_rate"} <= set(pooled["metric"]) and "cf_prob_gap" not in set(
        pooled["metric"]
    )
    training = read_table(run_dir / "tables" / "training.parquet")
    gaps = training[training["variant"] == "eo-ft_before"].set_index("metric")["value"]
    assert gaps["eo_dev_unknown_gender_share"] == 0 and gaps["eo_dev_tpr_gap_after"] <= 0.02 + 1e-9
    built, measured = (read_table(run_dir / "tables" / f"{t}.parquet") for t in ("build_predictions", "predictions"))
    eo = [t.loc[t["variant"] == "eo-ft_before", "pred"].to_numpy() for t in (built, measured)]
    twin = measured.loc[measured["variant"] == "teacher-ft", "pred"].to_numpy()
    assert (eo[0] == eo[1]).all() and (eo[1] != twin).any()  # reloaded = as built; post-processed
    section = mitigation_section(compute_findings(run_dir, FindingsConfig(n_boot=100)))
    said = [n for n in section.notes if n.startswith("eo-ft_before is equal opportunity by post-processing")]
    assert len(said) == 1 and "gender at prediction time" in said[0] and "the data's gender labels" in said[0]
