"""Mitigations as recipes of the plan: their sections, their variant names (round-tripping through the grammar),
their composition with compression methods and orders, and every bad input refused before any training."""

from __future__ import annotations

import pytest
from transformers import BertConfig

from pipeline.runs.compress_checks import check_compression
from pipeline.runs.config import ConfigError, config_from_dict
from pipeline.runs.plan import plan_variants
from pipeline.variants import Variant, mitigation_twins

TEACHER = BertConfig(num_hidden_layers=4, num_attention_heads=4, hidden_size=64, intermediate_size=128)


def _cfg(distil=("before",), **compress):
    return config_from_dict(
        {
            "run": {"name": "t", "seeds": [0]},
            "task": {"training_sets": ["original", "cda"]},
            "compress": {"distil": {"orders": list(distil)}, **compress},
        }
    )


def test_mitigations_plan_named_variants_on_the_teacher_and_on_compression_methods():
    cfg = _cfg(
        ("none", "before"),
        biasprune={"heads": [2], "fractions": [0.25], "on": ["teacher", "distil"]},
        erase={"layers": [1, -1], "orders": ["none", "before"], "on": ["teacher", "distil"]},
    )
    plan = {s.variant: s for s in plan_variants(cfg)}
    for name, op, parent, params in [
        ("biasprune2h-ft_before", "biasprune", "teacher-ft/seed0", {"heads": 2, "by": "bias"}),
        ("prune2h-ft_before", "biasprune", "teacher-ft/seed0", {"heads": 2, "by": "importance"}),
        ("biasprune25-ft_before", "biasprune", "teacher-ft/seed0", {"fraction": 0.25, "by": "bias"}),
        ("distil_biasprune2h-ft_before", "biasprune", "distil-ft_before/seed0", {"heads": 2, "by": "bias"}),
        ("distil_prune25-ft_before@cda", "biasprune", "distil-ft_before@cda/seed0", {"fraction": 0.25,
                                                                                     "by": "importance"}),
        ("erase-ft_none", "erase", None, {}),
        ("erase-ft_before@cda", "erase", "teacher-ft@cda/seed0", {}),
        ("distil_erase-ft_before", "erase", "distil-ft_before/seed0", {}),
        ("distil_erase-ft_none", "erase", "distil-ft_none/seed0", {}),
    ]:  # fmt: skip
        step = plan[name]
        assert (step.op, step.parent, step.params) == (op, parent, params), name
        assert Variant.parse(name).name == name
    assert plan["erase-ft_none"].source is not None and plan["distil_erase-ft_before"].training_set == "original"


def test_an_importance_pruned_name_planned_twice_keeps_its_first_recipe():
    cfg = _cfg(prune={"fractions": [0.25]}, biasprune={"fractions": [0.25]})
    plan = {s.variant: s for s in plan_variants(cfg)}
    assert plan["prune25-ft_before"].op == "prune" and plan["biasprune25-ft_before"].op == "biasprune"


def test_a_base_order_the_run_does_not_evaluate_is_built_as_an_intermediate():
    plan = {s.variant: s for s in plan_variants(_cfg(erase={"orders": ["after"], "on": ["distil"]}))}
    assert plan["distil_erase-ft_after"].parent == "distil-ft_after/seed0" and plan["distil_erase-ft_after"].exposed
    assert not plan["distil-ft_after"].exposed and not plan["distil-ft_none"].exposed
    assert plan["distil-ft_before"].exposed


def test_a_mitigation_on_a_base_the_run_cannot_build_is_a_config_error():
    with pytest.raises(
        ConfigError,
        match=r"compress.biasprune.on = 'tiny': no method of this run is called so "
        r"\(its methods: .*distil",
    ):
        plan_variants(_cfg(biasprune={"heads": [1], "on": ["tiny"]}))
    with pytest.raises(
        ConfigError,
        match=r"on = 'prune30' with order 'none' needs 'prune30-ft_none', which cannot "
        r"be built: orders \['none'\] are not possible here",
    ):
        plan_variants(_cfg(prune={"fractions": [0.3]}, erase={"orders": ["none"], "on": ["prune30"]}))


@pytest.mark.parametrize(("section", "expected"), [
    ({"biasprune": {}}, "heads and fractions are both empty"),
    ({"biasprune": {"heads": [0]}}, r"heads \[0\]: give numbers of heads to remove, each at least 1"),
    ({"biasprune": {"fractions": [1.0]}}, r"fractions\[0\] = 1.0 is outside \[0, 1\)"),
    ({"biasprune": {"fractions": [0.0]}}, "0 removes no head"),
    ({"biasprune": {"heads": [1], "orders": ["none"]}}, "bias effect and importance need a fine-tuned classifier"),
    ({"biasprune": {"heads": [1], "protect": 1.0}}, "protect"),
    ({"biasprune": {"heads": [1], "on": ["hub-distilbert"]}}, "hub students are not compressed here"),
    ({"erase": {"on": ["teacher", "int8"]}}, "an int8 model is quantised for evaluation only"),
    ({"erase": {"layers": []}}, "layers is empty"),
    ({"erase": {"layers": [2, 2]}}, "layers lists a value twice"),
    ({"erase": {"fit_on": ["words"]}}, r"compress.erase.fit_on\[0\]"),
    ({"erase": {"on": []}}, "on is empty"),
])  # fmt: skip
def test_bad_mitigation_sections_are_config_errors(section, expected):
    with pytest.raises(ConfigError, match=expected):
        _cfg(**section)


def test_cda_is_a_training_set_and_its_mode_is_checked():
    assert _cfg().task.training_sets == ("original", "cda") and _cfg().task.cda == "two_sided"
    with pytest.raises(ConfigError, match=r"`task.cda` = 'both'"):
        config_from_dict({"run": {"name": "t"}, "task": {"cda": "both"}})


@pytest.mark.parametrize(("compress", "expected"), [
    ({"biasprune": {"heads": [13]}}, (r"teacher variants\): cannot remove 13 heads: the model has 16 heads in 4 "
                                      r"layers .* 1\.\.12 heads can go")),
    ({"biasprune": {"fractions": [0.9]}}, r"fraction 0.9 \(14 of 16 heads\)"),
    ({"biasprune": {"heads": [12], "protect": 0.5}}, "protect = 0.5 keeps 8 leaves too few"),
    ({"biasprune": {"heads": [7], "on": ["distil"]}}, r"distil variants\).*2 layers.*1\.\.6 heads"),
    ({"erase": {"layers": [5]}}, r"layers = \[5\]: layer 5 is out of range.*0\.\.4 .* \(the teacher variants"),
    ({"erase": {"layers": [-6]}}, r"-5\.\.-1 from the end"),
    ({"erase": {"layers": [3], "on": ["distil"]}}, r"out of range.*0\.\.2.*the distil variants have 2 blocks"),
    ({"erase": {"layers": [4, -1]}}, "names a layer twice"),
])  # fmt: skip
def test_model_dependent_mitigation_errors_come_from_the_preflight(compress, expected):
    with pytest.raises(ConfigError, match=expected):
        check_compression(_cfg(**compress), TEACHER)


def test_sizes_the_model_can_take_pass_the_preflight():
    check_compression(
        _cfg(
            biasprune={"heads": [6], "protect": 0.25, "on": ["teacher", "distil", "prune30"]},
            erase={"layers": [0, 1, -1], "on": ["teacher", "distil"]},
        ),
        TEACHER,
    )


@pytest.mark.parametrize(("name", "expected"), [
    ("teacher-ft@cda", [("cda", ["teacher-ft"])]),
    ("distil_mixup-ft_before@balanced", [("mixup", ["distil-ft_before@balanced"]),
                                         ("balanced", ["distil_mixup-ft_before"])]),
    ("biasprune4h-ft_before", [("biasprune", ["prune4h-ft_before"])]),
    ("distil_biasprune30-ft_both@cda", [("biasprune", ["distil_prune30-ft_both@cda"]),
                                        ("cda", ["distil_biasprune30-ft_both"])]),
    ("erase-ft_none", [("erase", ["teacher-mlm", "teacher"])]),
    ("erase-ft_before", [("erase", ["teacher-ft"])]),
    ("erase-ft_after", [("erase", ["teacher-ft"])]),
    ("tiny_erase-ft_before", [("erase", ["tiny-ft_before"])]),
    ("distil-ft_before", []), ("teacher-ft", []), ("prune30-ft_before", []), ("not a variant", []),
])  # fmt: skip
def test_each_mitigated_variant_knows_its_unmitigated_twin(name, expected):
    assert mitigation_twins(name) == expected
