"""Attribution patching's screen and confirmation: twins of another token length dropped and counted exactly as
activation patching drops them, screen and confirmation on disjoint halves, and the measured recall of the exact
top heads among the confirmed ones."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from attribution.atp import AttributionPatching
from attribution.data import AttributionData, aligned_pairs, split_rows
from attribution.patching import ActivationPatching
from attribution.scores import CounterfactualGap, TrueClassProb
from pipeline.data import TaskData

from .conftest import OCCUPATIONS, TEMPLATES


def _with_longer_twins(loaded, data: AttributionData, rows: list[int]) -> AttributionData:
    """``data`` with the twins of ``rows`` one word longer (their positions no longer align)."""
    twins = [t + " today" if i in rows else t for i, t in enumerate(data.cf_texts)]
    return AttributionData.from_texts(loaded, data.texts, cf_texts=twins, labels=data.labels.tolist(),
                                      genders=data.genders.tolist(), label_names=data.label_names)  # fmt: skip


def test_pairs_of_unequal_length_are_dropped_and_counted_as_patch_does(planted):
    loaded, data = planted
    mixed = _with_longer_twins(loaded, data, [0, 5, 9])
    atp = AttributionPatching(loaded, TrueClassProb(), baseline="counterfactual")
    with pytest.raises(ValueError, match="3 pairs .* change token length"):
        atp.estimates(mixed, progress=False)
    frame = atp.attribute(mixed, units=("head",), confirm_top=2, n_boot=20, progress=False)
    patch = ActivationPatching(loaded, TrueClassProb()).attribute(mixed, n_boot=20, progress=False)
    dropped = lambda f: f.loc[f["metric"] == "pairs_dropped", ["value", "n"]].values.tolist()
    assert dropped(frame) == dropped(patch) == [[3.0, 24]]
    aligned, n_dropped = aligned_pairs(mixed, "test")
    assert n_dropped == 3 and len(aligned) == 21
    clean = atp.attribute(aligned, units=("head",), confirm_top=2, n_boot=20, progress=False)
    units = lambda f: f[f["unit"] == "head"].reset_index(drop=True)
    pd.testing.assert_frame_equal(units(frame), units(clean))  # the same table as on the aligned pairs alone


def test_screen_and_confirmation_use_disjoint_halves(planted):
    loaded, data = planted
    screen, confirm = split_rows(len(data), 3)
    assert len(screen) == 12 and set(screen).isdisjoint(confirm) and sorted([*screen, *confirm]) == list(range(24))
    atp = AttributionPatching(loaded, CounterfactualGap(), baseline="mean")
    frame = atp.attribute(data, confirm_top=3, n_boot=20, seed=3, progress=False)
    mean = atp._baselines(data, 32)  # the mean baseline is over all examples: it defines the intervention
    for kind in ("head", "neuron"):
        rows = frame[frame["unit"] == kind].reset_index(drop=True)
        est = atp.estimates(data.subset(screen), units=(kind,), baselines=mean, progress=False)[kind]
        mean_est = est.mean(0)  # (layer, width)
        assert rows["value"].tolist() == pytest.approx(
            [float(mean_est[l, h]) for l, h in zip(rows["layer"], rows["head"])], abs=1e-6
        )
        top = rows[rows["confirmed"] == 1]
        exact = atp.exact(data.subset(confirm), kind, list(zip(top["layer"], top["head"])), baseline=mean[kind])
        assert top["exact"].tolist() == pytest.approx(exact.double().mean(1).tolist(), abs=1e-6)
        assert set(rows["n"]) == {12} and set(top["exact_n"]) == {12} and len(top) == 3
    with pytest.raises(ValueError, match="give at least 2"):
        atp.attribute(data.subset([0]), confirm_top=1, progress=False)


def _recall(loaded, data, baseline: str, k: int) -> float:
    """Share of the k heads with the largest exact effect (over all examples) among the 2k confirmed ones."""
    score = TrueClassProb() if baseline == "counterfactual" else CounterfactualGap()
    atp = AttributionPatching(loaded, score, baseline=baseline)
    heads = [(l, h) for l in range(loaded.anatomy.n_layers) for h in range(loaded.anatomy.n_heads)]
    exact = atp.exact(data, "head", heads).double().mean(1).numpy()
    truth = set(np.argsort(-np.abs(exact), kind="stable")[:k].tolist())
    frame = atp.attribute(data, units=("head",), confirm_top=2 * k, n_boot=0, progress=False)
    confirmed = set(np.flatnonzero(frame.loc[frame["unit"] == "head", "confirmed"].to_numpy() == 1).tolist())
    return len(truth & confirmed) / k


@pytest.mark.parametrize("baseline", ["zero", "mean", "counterfactual"])
def test_recall_of_the_exact_top_heads_on_the_planted_model(planted, baseline):
    loaded, data = planted
    assert _recall(loaded, data, baseline, 3) == 1.0


def test_recall_of_the_exact_top_heads_on_a_tiny_random_model(tiny_loaded):
    """A random model has no dominant head (12 heads of similar effect): the screen can miss one of the true top k
    even among 2k confirmed. The measured values, stated in docs/ATTRIBUTION.md."""
    loaded = tiny_loaded("bert", "classifier", num_labels=3)
    rng = np.random.default_rng(0)
    texts, labels, genders = [], [], []
    for i in range(48):
        texts.append(TEMPLATES[i % len(TEMPLATES)].format(o=OCCUPATIONS[rng.integers(len(OCCUPATIONS))],
                                                          p=("he", "she")[i % 2], n=("john", "mary")[i % 2]))  # fmt: skip
        labels.append(int(rng.integers(3)))
        genders.append(i % 2)
    data = AttributionData.from_task(loaded, TaskData("tiny48", tuple(texts), np.array(labels), np.array(genders),
                                                      ("a", "b", "c")))  # fmt: skip
    measured = {(b, k): _recall(loaded, data, b, k) for b in ("zero", "mean", "counterfactual") for k in (2, 5)}
    assert measured == {("zero", 2): 0.5, ("mean", 2): 1.0, ("counterfactual", 2): 1.0,
                        ("zero", 5): 1.0, ("mean", 5): 1.0, ("counterfactual", 5): 1.0}  # fmt: skip
