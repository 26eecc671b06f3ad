"""The Head inspector's twin-difference view (issue #28, round 2): attention(text) − attention(twin) of every head,
checked against the tiny model's own attention, its per-head summary, the figure's layout and the page."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from figure_layout import layout_problems
from viewer_helpers import open_app, show

from pipeline.data import GenderSwapper
from pipeline.figures import plots
from pipeline.models import load_model
from pipeline.viewer.playground import DEFAULT_SENTENCE
from pipeline.viewer.twin_attention import head_weights, row_l1, twin_difference

TEXT = "She said that she would call her brother."
UNEVEN = "The businesswoman smiled."  # "businesswoman" is two word pieces, "businessman" one


@pytest.fixture(scope="module")
def teacher(demo_run):
    loaded = load_model(str(demo_run / "models" / "teacher-ft" / "seed0"), head="classifier")
    loaded.model.set_attn_implementation("eager")
    return loaded


@torch.no_grad()
def _direct(loaded, text: str) -> torch.Tensor:
    """(layers, heads, seq, seq) attention of ``text`` alone, straight from the model."""
    out = loaded.model(**loaded.tokenize([text]), output_attentions=True).attentions
    return torch.stack([a[0] for a in out]).double()


def test_a_text_minus_itself_is_zero_everywhere(teacher):
    found = twin_difference(teacher, TEXT, TEXT)
    assert found.difference is not None and found.marked == ()
    assert np.array_equal(found.difference, np.zeros_like(found.difference))
    assert np.array_equal(row_l1(found.difference), np.zeros(found.difference.shape[:2]))


def test_the_difference_is_the_attention_of_the_text_minus_that_of_the_twin(teacher):
    twin = GenderSwapper.from_winobias().swap(TEXT)
    assert twin != TEXT
    found = twin_difference(teacher, TEXT, twin)
    expected = (_direct(teacher, TEXT) - _direct(teacher, twin)).numpy()
    assert found.difference.shape == expected.shape == (4, 4, len(found.tokens), len(found.tokens))
    np.testing.assert_allclose(found.difference[2, 1], expected[2, 1], atol=1e-6)
    np.testing.assert_allclose(found.difference, expected, atol=1e-6)
    marked = [found.tokens[i] for i in found.marked]
    assert marked == [t for t, u in zip(found.tokens, found.twin_tokens) if t != u] and "she" in marked
    assert all("/" in found.labels()[i] for i in found.marked)
    summary = row_l1(found.difference)
    l1 = np.abs(expected[1, 3]).sum(axis=1).mean()
    assert summary[1, 3] == pytest.approx(l1) and ((summary >= 0) & (summary <= 2 + 1e-9)).all()


def test_texts_of_different_lengths_are_refused(teacher):
    found = twin_difference(teacher, UNEVEN, GenderSwapper.from_winobias().swap(UNEVEN))
    assert found.difference is None and len(found.tokens) != len(found.twin_tokens)


def test_pruned_heads_are_nan_at_their_original_ids():
    attentions = (torch.rand(1, 2, 3, 3), torch.rand(1, 1, 3, 3))
    loaded = SimpleNamespace(anatomy=SimpleNamespace(head_ids=((0, 2), (1,)), n_heads=2))
    grid = head_weights(loaded, attentions, 0)
    assert grid.shape == (2, 3, 3, 3)
    assert np.isnan(grid[0, 1]).all() and np.isnan(grid[1, [0, 2]]).all()
    np.testing.assert_allclose(grid[0, 2], attentions[0][0, 1].double().numpy())
    np.testing.assert_allclose(grid[1, 1], attentions[1][0, 0].double().numpy())


def test_the_figure_fits_its_canvas():
    rng = np.random.default_rng(0)
    tokens = [f"tok{i}" for i in range(40)]
    summary = rng.uniform(0, 2, (12, 12))
    summary[3, 5] = np.nan  # a pruned head
    fig = plots.twin_attention(tokens, rng.normal(0, 0.1, (40, 40)), summary, selected=(3, 4), marked=(1, 17))
    assert layout_problems(fig) == []
    assert tuple(fig.get_size_inches()) == plots.FIGURE_SIZES["twin_attention"]


def test_the_inspector_shows_the_twin_difference_of_every_head(demo_run, teacher):
    at = show(open_app(demo_run.parent), "Head inspector")
    at.selectbox(key="inspect_layer").set_value(2).run()
    at.selectbox(key="inspect_head").set_value(1).run()
    sentence = at.selectbox(key="inspect_text")
    assert sentence.value == DEFAULT_SENTENCE and not at.exception
    assert "twin_attention_teacher-ft_L2H1" in [i.proto.imgs[0].caption for i in at.image]
    grid = next(d.value for d in at.dataframe if "head 0" in d.value)
    assert list(grid.columns) == ["layer", "head 0", "head 1", "head 2", "head 3"] and len(grid) == 4
    found = twin_difference(teacher, DEFAULT_SENTENCE, GenderSwapper.from_winobias().swap(DEFAULT_SENTENCE))
    np.testing.assert_allclose(grid.drop(columns="layer").to_numpy(), row_l1(found.difference).round(4), atol=1e-4)
    swapper = GenderSwapper.from_winobias()
    uneven = next(t for t in sentence.options if twin_difference(teacher, t, swapper.swap(t)).difference is None)
    sentence.set_value(uneven).run()
    assert not at.exception and "positions do not line up" in " ".join(i.value for i in at.info)
    assert "twin_attention_teacher-ft_L2H1" not in [i.proto.imgs[0].caption for i in at.image]


def test_hover_maps_carry_every_cell_and_its_value():
    from pipeline.viewer.twin_attention import hover_map

    values = np.array([[0.5, np.nan, -0.25], [0.0, 1.5, -1.0]])
    chart = hover_map(values, ["L0", "L1"], ["H0", "H1", "H2"], title="t", signed=True)
    cells = chart.data.set_index(["row", "column"])["value"]
    assert len(cells) == 5 and ("L0", "H1") not in cells.index  # the pruned (NaN) head is left out
    assert cells[("L1", "H1")] == 1.5 and cells[("L0", "H2")] == -0.25
    spec = chart.to_dict()
    assert [t["field"] for t in spec["encoding"]["tooltip"]] == ["row", "column", "value"]
    assert spec["encoding"]["color"]["scale"]["domain"] == [-1.5, 1.5]  # centred on 0
    greys = hover_map(np.abs(values), ["L0", "L1"], ["H0", "H1", "H2"], title="t", signed=False).to_dict()
    assert greys["encoding"]["color"]["scale"]["domain"] == [0, 2]
