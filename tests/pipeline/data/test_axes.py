"""Tests for pipeline/axes.py and pipeline/data/group_swap.py: the bias-axis records, their swap lists (symmetric,
sourced), the training / held-out split (no shared pair) and complete swaps."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.axes import AXES, BiasAxis, axis, list_swapper, register_axis
from pipeline.data import CROWS_BIAS_TYPES, STEREOSET_BIAS_TYPES, GenderSwapper
from pipeline.data.group_swap import LISTS, GroupSwapper, read_group_list

LIST_AXES = ("race", "religion")


def _pairs():
    return [(a, pair) for a in LIST_AXES for pair in AXES[a].pairs()]


def test_the_built_in_axes_and_their_groups():
    assert list(AXES) == ["gender", "race", "religion"]
    assert AXES["gender"].groups == ("female", "male")
    assert AXES["race"].pairs() == (("european_american", "african_american"),)
    assert AXES["religion"].pairs() == (("christian", "muslim"), ("christian", "jewish"), ("muslim", "jewish"))
    assert isinstance(AXES["gender"].swap(), GenderSwapper) and isinstance(AXES["race"].swap(), GroupSwapper)


def test_benchmark_subsets_exist_in_the_benchmarks(root):
    for a in AXES.values():
        assert set(a.crows) <= set(CROWS_BIAS_TYPES) and set(a.stereoset) <= set(STEREOSET_BIAS_TYPES)
        for test in a.seat:
            assert (root / "seat" / f"{test}.jsonl").is_file() and (root / "seat" / f"sent-{test}.jsonl").is_file()
    assert (AXES["race"].crows, AXES["religion"].crows, AXES["religion"].seat) == (("race-color",), ("religion",), ())
    assert all((root / name).is_file() for name in AXES["gender"].lists)


def test_every_list_row_names_its_source_and_the_header_its_provenance():
    for name in LIST_AXES:
        path = LISTS / AXES[name].lists[0]
        lines = path.read_text().splitlines()
        assert lines[0].startswith("#") and "Sources:" in path.read_text() or "Names:" in path.read_text()
        rows = [line.split("\t") for line in lines if line and not line.startswith("#")][1:]
        assert rows and all(r[-1].strip() for r in rows)
        assert len(read_group_list(path).rows) == len(rows)
        assert f"`{path.name}`" in (LISTS / "PROVENANCE.md").read_text()


@pytest.mark.parametrize(("name", "pair"), _pairs())
def test_every_swap_is_symmetric(name, pair):
    swapper = AXES[name].swap(pair)
    for word, target in swapper.mapping.items():
        assert swapper.mapping[target] == word
        text = f"Then {word.title()} and {word} spoke." if word not in swapper.names else f"Then {word.title()} spoke."
        twin = swapper.swap(text)
        assert twin != text and swapper.swap(twin) == text


@pytest.mark.parametrize(("name", "pair"), [(a, p) for a in AXES for p in AXES[a].pairs()])
def test_the_evaluation_part_shares_no_word_or_pair_with_the_training_part(name, pair):
    whole, train, heldout = (AXES[name].swap(pair, part=p) for p in ("all", "train", "heldout"))
    assert train.words() and heldout.words() and not train.words() & heldout.words()
    if name in LIST_AXES:  # every pair of the list is in exactly one part, both its words with it
        assert train.mapping | heldout.mapping == whole.mapping
        assert not set(train.mapping.items()) & set(heldout.mapping.items())


def test_a_row_is_in_the_same_part_for_every_pair_of_religion():
    listed, religion = read_group_list(LISTS / "religion.tsv"), AXES["religion"]
    for first, second in religion.pairs():
        held = religion.swap((first, second), part="heldout").words()
        i, j = listed.groups.index(first), listed.groups.index(second)
        for _, words in listed.rows:
            row_held = words[0] in listed.heldout()
            assert {w in listed.heldout() for w in words} == {row_held}
            assert (words[i] in held, words[j] in held) == (row_held, row_held)


def test_a_text_is_swapped_completely_not_only_its_first_mention():
    race = axis("race").swap()
    text = "Darnell told Darnell's sister Ebony that the African American church and the African-American Brad met."
    twin = race.swap(text)
    assert (
        twin == "Brad told Brad's sister Anne that the European American church and the European-American Darnell met."
    )
    assert race.swap(twin) == text
    religion = axis("religion").swap(("muslim", "jewish"))
    text = "The Muslim imam left the mosque; Muslims and Jews, a rabbi, a MUSLIM."
    assert (
        religion.swap(text) == "The Jewish rabbi left the synagogue; Jews and Muslims, a imam, a JEWISH."
    )  # articles kept
    gender = axis("gender").swap()
    assert (
        gender.swap("He said he saw him and his brother; he left.") == "She said she saw her and her sister; she left."
    )


def test_case_names_multi_word_terms_and_non_matches():
    race = axis("race").swap()
    assert race.swap("EUROPEAN AMERICAN") == "AFRICAN AMERICAN"
    assert race.swap("a South  African American") == "a Italian American"  # longest term first, any whitespace
    assert (
        race.swap("ebony wood, a white-collar job, İslam, Bradley") == "ebony wood, a white-collar job, İslam, Bradley"
    )
    assert race.swap("Whites and blacks") == "Blacks and whites"


def test_the_swap_lists_cover_the_group_words_of_both_directions():
    listed = read_group_list(LISTS / "race.tsv")
    swapper = list_swapper(AXES["race"], AXES["race"].pairs()[0], None)
    assert swapper.words() == {w for _, words in listed.rows for w in words}
    assert len(listed.rows) == 58 and sum(kind == "name" for kind, _ in listed.rows) == 22


def test_bad_lists_and_records_are_refused(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("# x\nkind\ta\tb\tsource\nterm\tone\ttwo\n")
    with pytest.raises(ValueError, match="bad.tsv:3: expected 4 tab-separated fields"):
        read_group_list(bad)
    bad.write_text("kind\ta\tb\tsource\nterm\tone\ttwo\ts\nname\ttwo\tthree\ts\n")
    with pytest.raises(ValueError, match=r"bad.tsv:3: \['two'\] listed twice"):
        read_group_list(bad)
    bad.write_text("# only a comment\n")
    with pytest.raises(ValueError, match="no header row"):
        read_group_list(bad)
    with pytest.raises(ValueError, match="not symmetric"):
        GroupSwapper({"a": "b", "b": "c", "c": "a"})
    with pytest.raises(ValueError, match="not a pair of its groups"):
        AXES["religion"].swap(("muslim", "hindu"))
    with pytest.raises(ValueError, match="two different groups"):
        GroupSwapper.from_list(read_group_list(LISTS / "religion.tsv"), "muslim", "muslim")
    with pytest.raises(ValueError, match="unknown bias axis 'rase' \\(did you mean 'race'\\?\\)"):
        axis("rase")
    with pytest.raises(ValueError, match="already registered"):
        register_axis(BiasAxis("race", ("a", "b"), "", ("race.tsv",), list_swapper))
    with pytest.raises(ValueError, match="unknown CrowS-Pairs bias type \\['race'\\]"):
        register_axis(BiasAxis("x", ("a", "b"), "", ("race.tsv",), list_swapper, crows=("race",)))
    assert "x" not in AXES and np.all([a in AXES for a in LIST_AXES])
