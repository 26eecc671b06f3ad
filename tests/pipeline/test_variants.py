"""Variant names: every name the shipped configs plan parses back to itself, and the grammar rejects others."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.runs.config import load_config
from pipeline.runs.plan import plan_variants
from pipeline.variants import Variant, parse_variant, variant_sort_key

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("config", sorted(CONFIGS.glob("*.toml")), ids=lambda p: p.name)
def test_every_planned_name_round_trips(config):
    plan = plan_variants(load_config(config))
    assert plan
    for step in plan:
        assert Variant.parse(step.variant).name == step.variant
        assert Variant.parse(f"somerun/{step.variant}") == Variant.parse(step.variant)


@pytest.mark.parametrize(
    ("name", "variant"),
    [
        ("teacher", Variant("teacher", "none")),
        ("teacher-ft", Variant("teacher", "ft")),
        ("teacher-mlm", Variant("teacher-mlm", "none")),
        ("distil_mixup-ft_after@balanced", Variant("distil_mixup", "after", "balanced")),
        ("prune30-ft_both", Variant("prune30", "both")),
        ("hub-distilbert-ft_after@balanced", Variant("hub-distilbert", "after", "balanced")),
    ],
)
def test_names_parse_with_their_training_set(name, variant):
    assert Variant.parse(name) == variant and variant.name == name


def test_training_set_is_part_of_the_identity():
    assert Variant.parse("hub-distilbert-ft_after") != Variant.parse("hub-distilbert-ft_after@balanced")


@pytest.mark.parametrize("name", ["", "bert", "distil-ft_later", "teacher-ft_before", "distil-ft_none@"])
def test_other_names_are_rejected(name):
    with pytest.raises(ValueError, match="recipe naming"):
        parse_variant(name)


def test_families_sort_teacher_first_and_new_methods_last():
    names = ["cda_prune-ft_before", "int8-ft_before", "distil-ft_after", "teacher-ft", "teacher", "prune30-ft_before"]
    assert sorted(names, key=variant_sort_key) == [
        "teacher",
        "teacher-ft",
        "distil-ft_after",
        "prune30-ft_before",
        "int8-ft_before",
        "cda_prune-ft_before",
    ]
    assert (
        Variant.parse("distil_mixup-ft_none").family == "distil"
        and Variant.parse("sparse50-ft_both").family == "sparse"
    )
