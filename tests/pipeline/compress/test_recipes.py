"""The variant plan: names by recipe, orders, intermediates, seeds and training sets."""

from __future__ import annotations

import pytest

from pipeline.runs.config import ConfigError, config_from_dict
from pipeline.runs.plan import format_plan, plan_variants, select


def _plan(**sections):
    return plan_variants(config_from_dict({"run": {"name": "p", **sections.pop("run", {})}, **sections}))


def test_orders_map_to_parents():
    plan = _plan(
        compress={
            "distil": {"orders": ["after", "both"]},
            "prune": {"fractions": [0.25], "sparsities": [0.5], "orders": ["both"]},
            "int8": {"orders": ["none", "before"]},
        }
    )
    by = {s.variant: s for s in plan}
    assert [s.variant for s in plan][:2] == ["teacher", "teacher-ft"]
    assert by["distil-ft_none"].parent is None and not by["distil-ft_none"].exposed  # intermediate of ft_after
    assert by["distil-ft_after"].op == "finetune" and by["distil-ft_after"].parent == "distil-ft_none/seed0"
    assert by["distil-ft_before"].parent == "teacher-ft/seed0" and not by["distil-ft_before"].exposed
    assert by["distil-ft_both"].parent == "distil-ft_before/seed0"
    assert by["prune25-ft_both"].parent == "prune25-ft_before/seed0"
    assert by["sparse50-ft_both"].params == {"keep_sparsity": True}
    assert by["int8-ft_none"].source == "minilm" and by["int8-ft_before"].parent == "teacher-ft/seed0"
    keys = [s.key for s in plan]
    assert all(keys.index(s.parent) < keys.index(s.key) for s in plan if s.parent)  # parents first


def test_seeds_training_sets_and_data_free_variants():
    plan = _plan(
        run={"seeds": [3, 5]},
        task={"training_sets": ["original", "balanced"]},
        compress={"int8": {"orders": ["none"]}},
        finetune={"mlm_domain": False},
        hub_students=[{"source": "distilbert-base-uncased", "name": "db", "orders": ["none", "after"]}],
    )
    seeds = {}
    for s in plan:
        seeds.setdefault(s.variant, set()).add(s.seed)
    assert seeds["teacher"] == {3} and seeds["int8-ft_none"] == {3} and seeds["hub-db-ft_none"] == {3}
    assert seeds["teacher-ft"] == {3, 5} and seeds["teacher-ft@balanced"] == {3, 5}
    assert seeds["hub-db-ft_after@balanced"] == {3, 5}
    assert {s.training_set for s in plan if s.variant == "teacher-ft@balanced"} == {"balanced"}
    assert next(s for s in plan if s.variant == "teacher").training_set is None


def test_domain_mlm_becomes_the_pretrained_start():
    plan = _plan(finetune={"mlm_domain": True}, compress={"distil": {"orders": ["none"]}, "int8": {"orders": ["none"]}})
    by = {s.variant: s for s in plan}
    assert by["teacher-mlm"].op == "mlm"
    assert by["teacher-ft"].parent == by["distil-ft_none"].parent == by["int8-ft_none"].parent == "teacher-mlm/seed0"
    assert by["int8-ft_none"].training_set == "original"  # learnt from the data through its parent


def test_select_keeps_ancestors_and_rejects_unknown_names():
    plan = _plan(compress={"distil": {"orders": ["both"]}, "tiny": {"orders": ["before"]}})
    chosen = select(plan, ["distil-ft_both"])
    assert [s.variant for s in chosen] == ["teacher-ft", "distil-ft_before", "distil-ft_both"]
    assert [s.exposed for s in chosen] == [False, False, True]
    with pytest.raises(ConfigError, match="--only \\['distil-ft_after'\\]: not in this run's plan"):
        select(plan, ["distil-ft_after"])
    text = format_plan(plan)
    assert "distil-ft_before" in text and "(intermediate)" in text and text.endswith("variants evaluated.")
