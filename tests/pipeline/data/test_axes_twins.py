"""Tests for pipeline/data/axis_twins.py: twins per axis, texts with nothing to swap counted and left out."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from pipeline.axes import AXES
from pipeline.data import TaskData

TEXTS = (
    "Darnell and Darnell's friend Emily met the [MASK].",
    "The [MASK] went home.",
    "An African American [MASK] spoke to the Christian pastor.",
    "She said it twice.",
)


def _data() -> TaskData:
    return TaskData("toy", TEXTS, np.array([0, 1, 0, 1]), np.array([1, 0, 0, 1]), ("a", "b"))


def test_race_twins_keep_the_texts_that_mention_race_and_count_the_rest(caplog):
    with caplog.at_level(logging.WARNING):
        twins = AXES["race"].twins(_data())
    assert twins.rows.tolist() == [0, 2] and twins.n_left_out == 2
    assert twins.twins.texts == (
        "Brad and Brad's friend Latonya met the [MASK].",
        "An European American [MASK] spoke to the Christian pastor.",
    )
    assert twins.originals.texts == (TEXTS[0], TEXTS[2])
    assert twins.twins.labels.tolist() == [0, 0] and twins.twins.genders.tolist() == [1, 0]  # race keeps gender
    assert twins.groups == ("european_american", "african_american") and twins.twins.name == "toy-race-twins"
    assert "2 of 4 texts have nothing to swap; left out" in caplog.text


def test_religion_twins_are_per_pair_and_gender_twins_flip_the_gender():
    religion = AXES["religion"].twins(_data(), ("christian", "jewish"))
    assert religion.rows.tolist() == [2] and religion.n_left_out == 3
    assert religion.twins.texts == ("An African American [MASK] spoke to the Jewish rabbi.",)
    gender = AXES["gender"].twins(_data())
    assert gender.rows.tolist() == [0, 3] and gender.n_left_out == 2
    assert gender.twins.texts == ("Darnell and Darnell's friend David met the [MASK].", "He said it twice.")
    assert gender.twins.genders.tolist() == [0, 0]  # flipped from [1, 1]


def test_a_part_swaps_only_its_own_words():
    heldout = AXES["race"].swap(part="heldout").words()
    assert "darnell" not in heldout and {"emily", "african american"} <= heldout
    train = AXES["race"].twins(_data(), part="train")
    assert train.rows.tolist() == [0] and train.n_left_out == 3
    assert train.twins.texts == ("Brad and Brad's friend Emily met the [MASK].",)
    held = AXES["race"].twins(_data(), part="heldout")
    assert held.rows.tolist() == [0, 2]
    assert held.twins.texts == ("Darnell and Darnell's friend Latonya met the [MASK].",
                                "An European American [MASK] spoke to the Christian pastor.")  # fmt: skip


def test_no_text_to_swap_is_an_error_not_an_empty_set():
    data = TaskData("plain", ("The [MASK] went home.",), np.array([0]), np.array([0]), ("a",))
    with pytest.raises(ValueError, match="no text of 'plain' \\(1 rows\\) mentions the race groups"):
        AXES["race"].twins(data)
