"""Attribution patching: the estimate is the gate derivative (finite differences), exact on a model linear in the
gates, finds the planted head and neurons, and screen-then-confirm returns the exact effects of confirmed units."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from attribution.atp import AttributionPatching
from attribution.data import AttributionData, split_rows
from attribution.scores import CounterfactualGap, Score, TrueClassProb
from pipeline.gates import HeadGates, NeuronGates, ones_gates


def _score_at(loaded, score, data, kind, layer, index, gate):
    """The score of every example with one gate set to ``gate`` (no baseline: zero)."""
    gates = ones_gates(loaded.anatomy, neurons=kind == "neuron").double()  # float32 cannot hold 1 + 1e-4 exactly
    gates[layer, index] = gate
    with (HeadGates if kind == "head" else NeuronGates)(loaded.anatomy, gates), torch.no_grad():
        return score(loaded, data.batch(torch.arange(len(data)), loaded.device)).double()


@pytest.mark.parametrize("family", ["bert", "distilbert"])
@pytest.mark.parametrize(("kind", "layer", "index"), [("head", 0, 1), ("head", 1, 3), ("neuron", 1, 7)])
def test_estimate_is_minus_the_gate_derivative(tiny_loaded, tiny_task, family, kind, layer, index):
    loaded = tiny_loaded(family, "classifier", num_labels=3)
    data = AttributionData.from_task(loaded, tiny_task)
    score = CounterfactualGap()
    loaded.model.double()
    est = AttributionPatching(loaded, score).estimates(data, units=(kind,), batch_size=7, progress=False)[kind]
    eps = 1e-4
    fd = (_score_at(loaded, score, data, kind, layer, index, 1 + eps)
          - _score_at(loaded, score, data, kind, layer, index, 1 - eps)) / (2 * eps)  # fmt: skip
    torch.testing.assert_close(est[:, layer, index].double(), -fd, rtol=1e-4, atol=1e-7)
    loaded.model.float()


class _Readout(Score):
    """A score linear in the final hidden state: the mean over tokens of ``hidden @ w``."""

    name, needs = "readout", "encoder"

    def features(self, head, hidden, view):
        w = torch.linspace(-1, 1, hidden.shape[-1], dtype=hidden.dtype)
        return ((hidden @ w) * view.attention_mask).sum(1, keepdim=True) / view.attention_mask.sum(1, keepdim=True)

    def combine(self, feats, batch):
        return feats["orig"][:, 0]


def test_estimate_equals_the_exact_effect_when_the_score_is_linear_in_the_gates(tiny_loaded, tiny_task):
    """One layer, its LayerNorms replaced by identities and its FFN output zeroed: the last hidden state, and so the
    score, is linear in every head gate, so the first-order estimate is the exact ablation effect."""
    loaded = tiny_loaded("bert", "encoder", num_hidden_layers=1)
    layer = loaded.anatomy.layer(0)
    layer.attention.output.LayerNorm, layer.output.LayerNorm = nn.Identity(), nn.Identity()
    with torch.no_grad():
        layer.output.dense.weight.zero_()
    data = AttributionData.from_task(loaded, tiny_task, counterfactual_twins=False)
    for baseline in ("zero", "mean"):
        atp = AttributionPatching(loaded, _Readout(), baseline=baseline)
        est = atp.estimates(data, units=("head",), progress=False)["head"]  # (n_ex, 1, heads)
        heads = [(0, h) for h in range(loaded.anatomy.n_heads)]
        exact = atp.exact(data, "head", heads)  # (heads, n_ex)
        torch.testing.assert_close(est[:, 0, :].T, exact, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("baseline", ["zero", "mean", "counterfactual"])
def test_planted_head_and_neurons_rank_first_and_confirmed_units_are_exact(planted, planted_truth, baseline):
    loaded, data = planted
    head, neurons = planted_truth
    score = TrueClassProb() if baseline == "counterfactual" else CounterfactualGap()
    atp = AttributionPatching(loaded, score, baseline=baseline)
    frame = atp.attribute(data, confirm_top=4, n_boot=50, progress=False)
    heads = frame[frame["unit"] == "head"].assign(key=lambda f: f["value"].abs()).sort_values("key", ascending=False)
    assert (int(heads["layer"].iloc[0]), int(heads["head"].iloc[0])) == head
    assert heads["confirmed"].sum() == 4 and heads["q"].notna().all()
    top = heads[heads["confirmed"] == 1]
    screen, confirm = split_rows(len(data), 0)  # estimates on one half, exact effects on the other
    assert set(heads["n"]) == {len(screen)} and set(top["exact_n"]) == {len(confirm)}
    keys = [(int(l), int(h)) for l, h in zip(top["layer"], top["head"])]
    exact = atp.exact(data.subset(confirm), "head", keys, baseline=atp._baselines(data, 32)["head"])  # mean: all
    assert top["exact"].tolist() == pytest.approx(exact.double().mean(1).tolist(), abs=1e-6)
    assert top["exact_q"].notna().all() and heads.loc[heads["confirmed"] == 0, "exact_q"].isna().all()
    if baseline != "mean":  # mean ablation of the planted neurons keeps their average, hence little effect
        cells = frame[(frame["unit"] == "neuron")].assign(key=lambda f: f["value"].abs())
        ranked = cells.sort_values("key", ascending=False)
        assert set(zip(ranked["layer"].iloc[:3], ranked["head"].iloc[:3])) == {(head[0], n) for n in neurons}


def test_bad_requests_are_refused(planted):
    loaded, data = planted
    with pytest.raises(ValueError, match="score of the original text alone"):
        AttributionPatching(loaded, CounterfactualGap(), baseline="counterfactual").estimates(data)
    with pytest.raises(ValueError, match="units="):
        AttributionPatching(loaded, CounterfactualGap()).estimates(data, units=("layer",))


def test_screen_mode_of_the_command_line(tmp_path, capsys):
    """``bias-atlas ablate --screen K`` on MiniLM: every head and neuron estimated, K of each confirmed."""
    from pipeline.cli.main import main
    from pipeline.schema import read_table

    out = tmp_path / "atp.parquet"
    assert main(["ablate", "--model", "minilm", "--screen", "3", "--units", "head", "--n-boot", "100",
                 "--out", str(out), "--score", "seat"]) == 2  # fmt: skip
    assert "per-example score" in capsys.readouterr().err
    assert main(["ablate", "--model", "minilm", "--n", "6", "--screen", "3", "--units", "head", "--n-boot", "100",
                 "--score", "loss", "--max-length", "32", "--out", str(out)]) == 0  # fmt: skip
    table = read_table(out)  # --screen 3 confirms 2 x 3 heads
    assert len(table) == 72 and table["confirmed"].sum() == 6 and "exact" in capsys.readouterr().out
    assert main(["patch", "--model", "minilm", "--screen", "-1"]) == 2
