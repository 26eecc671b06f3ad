"""Significance and direction on the planted model (tests/attribution/conftest.py::build_planted): gender reaches the
prediction only through head (1, 2), so the causal methods flag exactly that head, as adding bias; a second planted
head that writes against it is a suppressor (direction ``reduces``), never "carries bias"; on null versions, no unit
of any model or method is flagged in more than 10% of seeded runs.

The null keeps the planted route but draws every label at random, independently of the text and its gender. The
planted model's two classes favour opposite genders, so each example's counterfactual gap, and each head's effect on
it, has a random sign: the mean effect of every head over the population of examples is exactly 0, while the
per-example effects stay large (up to 0.7). This is a harder null than a head with no effect at all (which gives
exact zeros and p = 1). Zeroing the planted head's write is *not* a null: the other heads then still carry a
second-order leak of gender (about 1e-4 of the planted effect) that is systematic, so a correct test may find it
with enough examples; the materiality floor (``min_share``) is what keeps such heads from "carrying bias".
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from attribution.ablation import HeadAblation
from attribution.data import AttributionData
from attribution.patching import ActivationPatching
from attribution.scores import CounterfactualGap, TrueClassProb
from pipeline.data import TaskData
from pipeline.findings.bias_units import bias_units
from pipeline.findings.compute import FindingsConfig

N_DRAWS, N_EXAMPLES = 20, 24


def _data(lib, loaded, seed: int, *, random_labels: bool) -> AttributionData:
    rng = np.random.default_rng(seed)
    texts, genders = [], []
    for i in range(N_EXAMPLES):
        gender = int(rng.integers(2)) if random_labels else i % 2
        template = lib.TEMPLATES[rng.integers(len(lib.TEMPLATES))]
        occupation = lib.OCCUPATIONS[rng.integers(len(lib.OCCUPATIONS))]
        texts.append(template.format(o=occupation, p=("he", "she")[gender], n=("john", "mary")[gender]))
        genders.append(gender)
    labels = rng.integers(2, size=N_EXAMPLES) if random_labels else np.ones(N_EXAMPLES, dtype=np.int64)
    return AttributionData.from_task(loaded, TaskData("planted", tuple(texts), labels, np.array(genders), ("m", "f")))


def _tables(loaded, data) -> dict:
    kw = {"n_boot": 0, "progress": False}
    ablation = HeadAblation(loaded, CounterfactualGap()).attribute(data, mode="single", **kw)
    patching = ActivationPatching(loaded, TrueClassProb()).attribute(data, **kw)
    for frame in (ablation, patching):
        frame["variant"], frame["seed"] = "planted", 0
    return {"head_ablation": ablation, "patching": patching}


@pytest.fixture(scope="module")
def planted_model(planted_lib):
    return planted_lib.build_planted(planted_lib.make_tokenizer())


def test_tables_carry_p_and_q_for_every_head(planted_lib, planted_model):
    tables = _tables(planted_model, _data(planted_lib, planted_model, 0, random_labels=False))
    for frame, metric in ((tables["head_ablation"], "delta_score"), (tables["patching"], "indirect_effect")):
        heads = frame[(frame["unit"] == "head") & (frame["metric"] == metric)]
        assert len(heads) == 12 and heads["p"].between(0, 1).all() and heads["q"].between(0, 1).all()
        assert (heads["q"] >= heads["p"]).all()
        assert frame.loc[frame["metric"] == "ablated_score", "p"].isna().all()
    intact = tables["head_ablation"].query("metric == 'intact_score'")
    assert len(intact) == 1 and intact["p"].iloc[0] < 1e-6  # the planted bias is there to locate


def test_the_causal_methods_flag_exactly_the_planted_head(planted_lib, planted_model):
    units = bias_units(_tables(planted_model, _data(planted_lib, planted_model, 0, random_labels=False)),
                       FindingsConfig())  # fmt: skip
    layer, head = planted_lib.PLANTED_HEAD
    for method in ("ablation", "patching"):
        rows = units[units["method"] == method]
        flagged = {(int(r.layer), int(r.head)) for r in rows[rows["carries"]].itertuples()}
        assert flagged == {(layer, head)}, method
        planted = rows[(rows["layer"] == layer) & (rows["head"] == head)].iloc[0]
        assert planted["q"] < 0.05 and planted["share"] > 0.9 and planted["direction"] == "adds"
        assert planted["total_detectable"] and not rows["suppresses"].any()
        assert rows["significant"].sum() > 1  # tiny second-order leaks are significant, yet not material


def test_a_suppressing_head_reduces_bias_and_never_carries_it(planted_lib):
    model = planted_lib.build_planted(planted_lib.make_tokenizer(), suppressor=True)
    units = bias_units(_tables(model, _data(planted_lib, model, 0, random_labels=False)), FindingsConfig())
    for method in ("ablation", "patching"):
        rows = units[units["method"] == method].set_index(["layer", "head"])
        carrier, suppressor = rows.loc[planted_lib.PLANTED_HEAD], rows.loc[planted_lib.SUPPRESSOR_HEAD]
        assert carrier["direction"] == "adds" and carrier["carries"], method
        assert suppressor["direction"] == "reduces" and suppressor["suppresses"] and not suppressor["carries"], method
        # removing the suppressor moves the bias away from 0: the ablated |bias| exceeds the intact one
        if method == "ablation":
            assert abs(suppressor["total"] + suppressor["value"]) > abs(suppressor["total"])
        assert set(rows.index[rows["carries"]]) == {planted_lib.PLANTED_HEAD}


def _null_run(lib, model, draw: int, n_models: int = 3) -> dict:
    """A run of ``n_models`` null models: the planted model on independent draws of randomly labelled examples (the
    mean effect of every head is 0 over the population), each under its own variant name."""
    parts = [_tables(model, _data(lib, model, 1000 * draw + m, random_labels=True)) for m in range(n_models)]
    for m, tables in enumerate(parts):
        for frame in tables.values():
            frame["variant"] = f"null{m}"
    return {name: pd.concat([t[name] for t in parts], ignore_index=True) for name in parts[0]}


def test_on_null_runs_no_unit_of_any_model_or_method_is_flagged_in_more_than_a_tenth(planted_lib, planted_model):
    flagged = [bool(bias_units(_null_run(planted_lib, planted_model, draw), FindingsConfig())["carries"].any())
               for draw in range(N_DRAWS)]  # fmt: skip
    print(f"share of null runs (3 models x 2 causal methods) with a flagged unit: {np.mean(flagged):.2f}")
    assert np.mean(flagged) <= 0.10, flagged
