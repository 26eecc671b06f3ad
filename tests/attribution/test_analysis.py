"""The attribution stage: every table, variant/seed stamped, gradient methods skipped on int8 with a reason."""

from __future__ import annotations

import pytest

from attribution.analysis import AttributionConfig, method_tables, run_attribution
from attribution.config import EXAMPLES_TABLE
from attribution.data import AttributionData, split_rows
from attribution.ig import NeuronIntegratedGradients
from attribution.patching import ActivationPatching
from attribution.scores import CounterfactualGap, TrueClassProb
from pipeline.anatomy import Anatomy
from pipeline.data.sampling import seeded_rows
from pipeline.int8 import quantise_dynamic
from pipeline.models import LoadedModel

FAST = AttributionConfig(n_examples=10, token_examples=2, ig_steps=8, n_boot=100, cumulative_steps=4,
                         patch_top_neurons=3, atp=True, pruning_curve=True, pruning_random=2,
                         pruning_steps=4)  # fmt: skip


def test_all_tables_on_a_classifier(tiny_loaded, tiny_task):
    loaded = tiny_loaded("bert")
    data = AttributionData.from_task(loaded, tiny_task)
    every = FAST.model_copy(update={"extra_methods": ("eap", "circuit")})  # the opt-in edge methods too
    tables = run_attribution(loaded, data, every, variant="tiny-ft", seed=3)
    assert set(tables) == set(method_tables()) | {EXAMPLES_TABLE}
    for name, frame in tables.items():
        assert set(frame["variant"]) == {"tiny-ft"} and set(frame["seed"]) == {3}, name
        assert "skipped" not in frame, name
    assert set(tables["head_ablation"]["mode"]) == {"single", "layer"}
    cumulative = tables["cumulative_ablation"]
    randoms = {f"random{r}" for r in range(FAST.cumulative_random)}
    assert set(cumulative["order"].dropna()) == {"most", "least"} | randoms and cumulative["step"].max() == 12
    ends = cumulative[(cumulative["step"] == 12) & (cumulative["metric"] == "ablated_score")]
    assert len(ends) == 2 + len(randoms) and ends["value"].nunique() == 1  # every head off: one model, any order
    firsts = cumulative[(cumulative["step"] == 4) & cumulative["order"].isin(randoms)]
    assert firsts[["removed_layer", "removed_head"]].drop_duplicates().shape[0] > 1  # the orders differ
    assert (tables["patching"]["unit"] == "neuron").sum() == 3
    assert tables["token_ig"]["example"].nunique() == 2
    curve = tables["pruning_curve"]
    assert set(curve["order"]) == {"bias", "importance", "random"} and sorted(set(curve["step"])) == [0, 4, 8, 12]


def test_int8_skips_gradient_methods_with_a_reason(tiny_loaded, tiny_task):
    loaded = tiny_loaded("bert")
    model = quantise_dynamic(loaded.model)
    int8 = LoadedModel(model, loaded.tokenizer, Anatomy(model), "classifier", True, "int8")
    data = AttributionData.from_task(int8, tiny_task)
    cfg = AttributionConfig(n_examples=8, n_boot=0, token_ig=False, neuron_ig=False, cumulative_steps=3)
    tables = run_attribution(int8, data, cfg, variant="int8-ft_after", seed=0)
    for name in ("head_importance", "head_ig"):
        assert tables[name]["skipped"].str.contains("int8").all() and tables[name]["value"].isna().all()
    assert "skipped" not in tables["head_ablation"] and "skipped" not in tables["patching"]
    orders = set(tables["cumulative_ablation"]["order"].dropna())
    assert {"most", "least"} < orders and all(o.startswith("random") for o in orders - {"most", "least"})


def test_config_is_validated():
    with pytest.raises(ValueError, match="ablation_modes"):
        AttributionConfig(ablation_modes=("single", "random"))
    with pytest.raises(ValueError, match=r"ig_steps\n  Input should be greater than or equal to 1"):
        AttributionConfig(ig_steps=0)


def test_patched_neurons_are_picked_on_one_half_and_tested_on_the_other(tiny_loaded, tiny_task):
    """Neuron IG picks the neurons on one part of the examples; their patching rows are measured on the other part
    only; token IG explains the bias (from the twin) by default."""
    loaded = tiny_loaded("bert")
    data = AttributionData.from_task(loaded, tiny_task)
    cfg = AttributionConfig(n_examples=12, token_examples=2, ig_steps=8, n_boot=100, ablation=False, cumulative=False,
                            importance=False, head_ig=False, patch_top_neurons=4)  # fmt: skip
    tables = run_attribution(loaded, data, cfg, variant="tiny-ft", seed=0)
    sample = data.subset(seeded_rows(len(data), 12, 0))
    select, test = split_rows(12, 0)
    attr, _, _ = NeuronIntegratedGradients(loaded, CounterfactualGap()).integrate(sample, n_steps=8, batch_size=64,
                                                                                 progress=False)  # fmt: skip
    mean = attr[select].double().mean(0).abs().flatten()
    expected = [(int(i) // attr.shape[2], int(i) % attr.shape[2]) for i in mean.argsort(descending=True)[:4]]
    patching = tables["patching"]
    neurons = patching[patching["unit"] == "neuron"]
    assert list(zip(neurons["layer"], neurons["head"])) == expected
    assert set(neurons["split"]) == {"test"} and set(neurons["n"]) == {len(test)}  # every pair here is aligned
    heads = patching[patching["unit"] == "head"]
    assert set(heads["n"]) == {12} and set(heads["split"]) == {"all"}
    effects = ActivationPatching(loaded, TrueClassProb()).effects(sample.subset(test), neurons=expected)
    assert neurons["value"].tolist() == pytest.approx(effects.indirect[:, -4:].double().mean(0).tolist(), abs=1e-6)
    tokens = tables["token_ig"]
    assert set(tokens.loc[tokens["unit"] == "token", "score"]) == {"cf_gap from twin"}
    assert tokens.loc[tokens["metric"] == "pairs_dropped", ["value", "n"]].values.tolist() == [[0.0, 12]]
