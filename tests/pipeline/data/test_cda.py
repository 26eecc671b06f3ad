"""Counterfactual data augmentation: every training text and its gender-swapped twin exactly once (two-sided), or
the twin in place of the text (one-sided); data without gendered words is refused; the run's ``cda`` training
set is built from its original training set."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from pipeline.data import GenderSwapper, TaskData, counterfactual, counterfactual_augment
from pipeline.runs.config import ConfigError, TaskSection
from pipeline.runs.task_data import load_task_splits

TEXTS = ("She is a nurse.", "He fixed the car.", "The report is due.", "Mary met her client.", "The nurse is here.")


@pytest.fixture
def data() -> TaskData:
    return TaskData("toy", TEXTS, [0, 1, 2, 0, 0], [1, 0, 0, 1, 0], ("nurse", "mechanic", "clerk"))


def test_two_sided_cda_holds_each_text_and_its_twin_exactly_once(data, swapper: GenderSwapper):
    cda = counterfactual_augment(data, swapper, part="all")  # every pair, so that he/she swap too
    twins = counterfactual(data, swapper)
    changed = [i for i in range(len(data)) if twins.texts[i] != data.texts[i]]
    assert changed == [0, 1, 3]
    expected = Counter(data.texts) + Counter(twins.texts[i] for i in changed)
    assert Counter(cda.texts) == expected and len(cda) == len(data) + len(changed)
    assert cda.texts[:3] == ("She is a nurse.", "He is a nurse.", "He fixed the car.")  # each twin after its text
    for i in range(len(data)):
        rows = [j for j, t in enumerate(cda.texts) if t in (data.texts[i], twins.texts[i])]
        assert len(rows) == (2 if i in changed else 1)
        assert all(cda.labels[j] == data.labels[i] for j in rows)  # the label stays
    row = {t: g for t, g in zip(cda.texts, cda.genders)}
    assert row["He is a nurse."] == 0 and row["She fixed the car."] == 1 and row["The report is due."] == 0
    assert cda.name == "toy-cda" and cda.label_names == data.label_names


def test_one_sided_cda_replaces_each_text_by_its_twin(data, swapper: GenderSwapper):
    cda = counterfactual_augment(data, swapper, mode="one_sided", part="all")
    assert cda.texts == (
        "He is a nurse.",
        "She fixed the car.",
        "The report is due.",
        "John met his client.",
        "The nurse is here.",
    )
    assert cda.genders.tolist() == [0, 1, 0, 0, 0] and cda.labels.tolist() == data.labels.tolist()


def test_cda_trains_on_the_training_part_only_and_no_held_out_word_is_ever_swapped(swapper: GenderSwapper):
    """The training and held-out parts share no word; CDA's twins change only training-part words, so a text whose
    only gendered words are held out gets no twin."""
    train, held = swapper.part("train"), swapper.part("heldout")
    assert train.words() and held.words() and not train.words() & held.words()
    assert {"he", "she", "himself", "herself"} <= held.words() and {"his", "her", "him"} <= train.words()
    assert set(train.pairs) | set(held.pairs) == set(swapper.pairs)  # a split: nothing lost
    data = TaskData("toy", ("She fixed it herself.", "Her mother and his son left.", "He met him."), [0, 1, 0],
                    [1, 1, 0], ("a", "b"))  # fmt: skip
    cda = counterfactual_augment(data, swapper)
    added = Counter(cda.texts) - Counter(data.texts)
    assert "She fixed it herself." not in {*added} and len(cda) == 5  # held-out words only: no twin
    for text in added:
        words = {w.lower().strip(".") for w in text.split()}
        original = next(t for t in data.texts if len(t.split()) == len(text.split()) and t != text)
        changed = {w.lower().strip(".") for w in original.split()} - words
        assert changed and not changed & held.words(), (original, text)


def test_cda_on_data_without_gendered_words_is_a_data_error(swapper: GenderSwapper):
    plain = TaskData("plain", ("The report is due.", "The car broke."), [0, 1], [0, 1], ("a", "b"))
    with pytest.raises(ValueError, match="no text of the training set 'plain'.*drop 'cda'"):
        counterfactual_augment(plain, swapper)
    with pytest.raises(ValueError, match="CDA mode 'both'"):
        counterfactual_augment(plain, swapper, mode="both")


def test_the_run_builds_its_cda_set_from_the_original_training_set(root):
    task = TaskSection(max_classes=4, max_train=200, max_eval=40, training_sets=("original", "cda"))
    splits = load_task_splits(task, root)
    original, cda = splits.train["original"], splits.train["cda"]
    twins = counterfactual(original, GenderSwapper.from_winobias(root).part("train"))  # CDA's part of the lists
    changed = np.array([a != b for a, b in zip(original.texts, twins.texts)])
    assert changed.mean() > 0.75  # BUG sentences mention the entity's gender (0.815 with the training part)
    assert Counter(cda.texts) == Counter(original.texts) + Counter(np.array(twins.texts)[changed].tolist())
    assert "balanced" not in splits.train


def test_the_run_refuses_cda_on_data_without_gendered_words(tmp_path, root):
    table = tmp_path / "plain.csv"
    table.write_text(
        "text,label,gender\n" + "".join(f"the report {i} is due,{'ab'[i % 2]},{'mf'[i % 2]}\n" for i in range(40)),
        encoding="utf-8",
    )
    task = TaskSection(
        dataset="table",
        path=str(table),
        text_col="text",
        label_col="label",
        gender_col="gender",
        training_sets=("original", "cda"),
    )
    with pytest.raises(ConfigError, match="no text of the training set .* has a gendered word"):
        load_task_splits(task, root)
