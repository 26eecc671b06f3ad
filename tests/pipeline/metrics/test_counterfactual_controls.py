"""Issue #26: counterfactual metrics on held-out swap words, the flip-rate control, and BCa intervals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from pipeline.bootstrap import bootstrap_ci
from pipeline.data import FEMALE, MALE, GenderSwapper, TaskData
from pipeline.data.neutral_edits import NeutralEditor
from pipeline.metrics.counterfactual import counterfactual_rows, counterfactual_summary

# he/she is the training part (CDA sees it), john/mary the held-out part
SWAPPER = GenderSwapper({"he": "she", "she": "he", "john": "mary", "mary": "john"}, heldout={"john", "mary"},
                        possessives=False)  # fmt: skip
TEXTS = ("the boss met john", "a friend met mary", "he said hi", "mary said hi", "she left", "john left", "the sky")
DATA = TaskData("toy", TEXTS, np.zeros(7, int), np.array([MALE, FEMALE, MALE, FEMALE, FEMALE, MALE, MALE]), ("a", "b"))


def _model(weights: dict[str, float]):
    """Logits (score, 0) with score = sum of the weights of the words of each text (the genders are not read)."""
    return lambda texts, genders: torch.tensor([[sum(weights.get(w, 0.0) for w in t.split()), 0.0] for t in texts])


BIASED = _model({"she": 1.0, "mary": 1.0, "he": -1.0, "john": -1.0})
MEMORISER = _model({"mary": 1.0, "john": -1.0})  # learnt to ignore exactly its training swap: he/she


def test_a_remedy_that_memorises_its_swap_pairs_gains_on_them_and_not_on_held_out_words():
    assert not {"he", "she"} & SWAPPER.part("heldout").words() and SWAPPER.part("train").words() == {"he", "she"}
    before, after = (counterfactual_summary(counterfactual_rows(m, DATA, swapper=SWAPPER, control=NeutralEditor({})),
                                            n_boot=20).set_index(["metric", "subset"]) for m in (BIASED, MEMORISER))  # fmt: skip
    key_all, key_held = ("cf_prob_abs_change", "all"), ("cf_prob_abs_change", "heldout")
    assert after.loc[key_all, "value"] < before.loc[key_all, "value"]  # the gain on all pairs (partly its own)
    assert after.loc[key_held, "value"] == pytest.approx(before.loc[key_held, "value"])  # none on the held-out ones
    assert before.loc[key_held, "n"] == 4  # texts with john or mary
    held = counterfactual_rows(MEMORISER, DATA, swapper=SWAPPER, control=NeutralEditor({}))
    assert set(held.loc[held["subset"] == "heldout", "example"]) == {0, 1, 3, 5}


def test_the_flip_rate_is_reported_beside_its_gender_neutral_control():
    """A near-tie model that flips under any edit of 'said' (the control word) flips as often under the control as
    under the gender swap: excess 0. A model that reads only gender has control 0 and excess = its flip rate."""
    tie = _model({"said": 0.01, "stated": -0.03, "he": 0.01, "she": -0.03})  # every edit crosses the tie
    editor = NeutralEditor({"said": "stated"})
    rows = counterfactual_rows(tie, DATA, swapper=SWAPPER.part("train"), control=editor)
    summary = counterfactual_summary(rows, n_boot=20).set_index(["metric", "subset"])
    assert summary.loc[("cf_control_flip_rate", "all"), "value"] == 1.0
    assert summary.loc[("cf_flip_excess", "all"), "value"] == 0.0 and summary.loc[("cf_flip_excess", "all"), "n"] == 1
    gendered = _model({"he": 1.0, "she": -1.0})
    rows = counterfactual_rows(gendered, DATA, swapper=SWAPPER.part("train"), control=editor)
    summary = counterfactual_summary(rows, n_boot=20).set_index(["metric", "subset"])
    assert summary.loc[("cf_control_flip_rate", "all"), "value"] == 0.0
    assert summary.loc[("cf_flip_excess", "all"), "value"] == 1.0  # "he said hi": flips on gender only


def test_the_shipped_control_list_has_no_gendered_word():
    editor = NeutralEditor.default()
    gendered = GenderSwapper.from_winobias().words()
    assert len(editor.pairs) > 50 and not (set(editor.pairs) | set(editor.pairs.values())) & gendered
    assert editor.edit("She said the Film was big.") == "She stated the Movie was large."


def test_bca_interval_matches_scipy_on_a_skewed_mean():
    x = np.random.default_rng(0).exponential(size=60)
    _, low, high = bootstrap_ci(np.mean, x, n_boot=20000, method="bca")
    ref = stats.bootstrap((x,), np.mean, n_resamples=20000, method="BCa", random_state=1).confidence_interval
    assert low == pytest.approx(ref.low, abs=0.01) and high == pytest.approx(ref.high, abs=0.015)
    _, p_low, p_high = bootstrap_ci(np.mean, x, n_boot=20000)
    assert low > p_low and high > p_high  # BCa moves the interval of a right-skewed mean up
    with pytest.raises(ValueError, match="'percentile' or 'bca'"):
        bootstrap_ci(np.mean, x, method="student")
