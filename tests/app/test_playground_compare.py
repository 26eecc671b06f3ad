"""The Playground (issue #28) under AppTest on the test session's demo run: the model comparison reads every model on
one class (the one picked, by default the first model's prediction) beside each model's own prediction, small gaps
keep 3 significant digits, the gate grid keeps its labels in rows of at most six heads, and a rerun of the same
sentence (or a head switched off) recomputes neither models, probabilities nor token attributions."""

from __future__ import annotations

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest
from viewer_helpers import open_app, show

from pipeline.data import GenderSwapper
from pipeline.gates import ones_gates
from pipeline.models import load_model
from pipeline.runs.runfolder import RunFolder
from pipeline.viewer import playground, playground_compare, playground_models
from pipeline.viewer.playground_compare import signed, token_ig
from pipeline.viewer.playground_models import cached_model, outcome, probabilities

GAP = "gap P(c|text) − P(c|twin)"


@pytest.fixture(scope="module")
def demo_app(demo_run):
    return open_app(demo_run.parent)


def _compared(at):
    return next(d.value for d in at.dataframe if "class compared" in d.value)


def _class_box(at):
    return next(s for s in at.selectbox if s.label.startswith("Class compared"))


def test_every_row_is_read_on_the_chosen_class(demo_app, demo_run):
    at = show(demo_app, "Playground")
    box, rows = _class_box(at), _compared(at)
    text = at.text_input(key="play_text").value
    twin = GenderSwapper.from_winobias().swap(text)
    first = load_model(demo_run / "models" / rows["model"].iloc[0] / f"seed{rows['seed'].iloc[0]}", head="classifier")
    p = probabilities(first, [text, twin], ones_gates(first.anatomy))
    assert box.value == first.model.config.id2label[int(p[0].argmax())]  # default: the first model's prediction
    other = next(c for c in box.options if c != box.value)
    box.set_value(other).run()
    assert not at.exception
    rows = _compared(at)
    assert (rows["class compared"] == other).all() and _class_box(at).value == other
    assert any(other in c.value and "same class" in c.value for c in at.caption)  # the caption names it
    for model, seed, pred, p_text, p_twin, gap in zip(
        rows["model"], rows["seed"], rows["prediction"], rows["P(c|text)"], rows["P(c|twin)"], rows[GAP]
    ):
        loaded = load_model(demo_run / "models" / model / f"seed{seed}", head="classifier")
        probs = probabilities(loaded, [text, twin], ones_gates(loaded.anatomy))
        c = loaded.model.config.label2id[other]
        assert pred == loaded.model.config.id2label[int(probs[0].argmax())]  # its own prediction, kept apart
        assert float(p_text) == pytest.approx(float(probs[0, c]), rel=5e-3, abs=1e-6)
        assert float(p_twin) == pytest.approx(float(probs[1, c]), rel=5e-3, abs=1e-6)
        assert float(gap) == pytest.approx(float(probs[0, c] - probs[1, c]), rel=5e-3, abs=1e-6)


def test_signed_keeps_three_significant_digits():
    assert signed(0.0012) == "+0.0012" and signed(0.0012345) == "+0.00123" and signed(-0.00041234) == "-0.000412"
    assert signed(0.25) == "+0.25" and signed(float("nan")) == ""


def test_a_gap_of_0_0012_renders_with_its_digits(demo_app, demo_run, monkeypatch):
    fake = np.full((2, len(RunFolder(demo_run).manifest["label_names"])), 0.1)
    fake[0, 0], fake[1, 0] = 0.5012, 0.5  # class 0 predicted by every model, gap 0.0012
    monkeypatch.setattr(playground, "outcome", lambda folder, text, twin: fake.copy())
    monkeypatch.setattr(playground_compare, "outcome", lambda folder, text, twin: fake.copy())
    at = show(demo_app, "Playground")
    at.text_input(key="play_text").set_value("The nurse said that she was tired.").run()
    assert not at.exception
    assert at.metric[1].value == "+0.0012"  # was "+0.001" (and "-0.000" for a gap of -0.0004)
    assert set(_compared(at)[GAP]) == {"+0.0012"}


def _twelve_heads():
    from types import SimpleNamespace

    import streamlit as st

    from pipeline.viewer.playground import _gate_grid

    anatomy = SimpleNamespace(n_layers=2, n_heads=12, heads_per_layer=[12, 12], head_ids=[list(range(12))] * 2)
    gates = _gate_grid(anatomy, "g", {(layer, h): ":red[+0.0012]" for layer in range(2) for h in range(12)})
    st.session_state["gates_off"] = int((gates == 0).sum())


def test_the_gate_grid_rows_hold_at_most_six_heads():
    at = AppTest.from_function(_twelve_heads).run()
    assert not at.exception
    blocks = 2 * (1 + 2)  # heads 0-5 then 6-11: a header row and one row per layer each
    assert len(at.columns) == blocks * (playground.HEADS_PER_ROW + 1)
    assert [c.value for c in at.caption if c.value.startswith("H")] == [f"H{h}" for h in range(12)]
    boxes = [c for c in at.checkbox]
    assert len(boxes) == 24 and all(c.label == ":red[+0.0012]" for c in boxes)
    boxes[7].uncheck().run()
    assert at.session_state["gates_off"] == 1


def test_the_same_sentence_again_recomputes_nothing(demo_app, monkeypatch):
    counts = {"load": 0, "probabilities": 0, "ig": 0}

    def counted(name, fn):
        def wrapper(*args, **kwargs):
            counts[name] += 1
            return fn(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(playground_models, "load_model", counted("load", playground_models.load_model))
    monkeypatch.setattr(playground_models, "probabilities", counted("probabilities", playground_models.probabilities))
    monkeypatch.setattr(playground, "probabilities", counted("probabilities", playground.probabilities))
    monkeypatch.setattr(playground_compare, "twin_token_ig", counted("ig", playground_compare.twin_token_ig))
    for cache in (cached_model, outcome, token_ig):
        cache.clear()
    at = show(demo_app, "Playground")
    rows, first = _compared(at), dict(counts)
    explained = sum(1 for i in at.image if i.proto.imgs[0].caption.startswith("play_tokens_"))
    assert first["load"] == len(set(zip(rows["model"], rows["seed"])) | {at.selectbox(key="play_model").value[1:]})
    assert first["ig"] == explained > 0
    at.run()  # the same sentence again: nothing is computed
    assert not at.exception and counts == first
    next(c for c in at.checkbox if c.key.startswith("gate:")).uncheck().run()  # one head off: one gated forward
    assert not at.exception and counts == {**first, "probabilities": first["probabilities"] + 1}
    at.text_input(key="play_text").set_value("My mother told the doctor that she felt fine.").run()
    assert not at.exception  # a new sentence: no model is loaded again, its attributions are computed once
    assert counts["load"] == first["load"] and counts["ig"] == 2 * explained
