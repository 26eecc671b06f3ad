"""The shared plotting functions, on hand-built tidy frames with known values."""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import TwoSlopeNorm

from attribution import plot_style, plots
from pipeline.schema import tidy


def heads_frame(values: dict[str, np.ndarray], metric: str = "delta_score", seeds=(0,), **extra) -> pd.DataFrame:
    """Unit-head rows of each variant's (layer, head) matrix; seed s adds s to every value."""
    rows = [{"variant": v, "seed": s, "unit": "head", "layer": l, "head": h, "metric": metric,
             "value": float(m[l, h]) + s, **extra}
            for v, m in values.items() for s in seeds for l in range(m.shape[0]) for h in range(m.shape[1])]
    return tidy(rows)


TEACHER = np.arange(12, dtype=float).reshape(4, 3) - 5.0  # (layer, head), signed
STUDENT = np.array([[1.0, -2.0, 0.5], [3.0, 0.0, -1.0]])


def test_head_matrix_is_the_layer_head_table_averaged_over_seeds():
    frame = heads_frame({"teacher-ft": TEACHER}, seeds=(0, 1))
    np.testing.assert_allclose(plots.head_matrix(frame, "delta_score"), TEACHER + 0.5)
    pruned = frame[~((frame["layer"] == 2) & (frame["head"] == 1))]
    matrix = plots.head_matrix(pruned, "delta_score")
    assert np.isnan(matrix[2, 1]) and np.isfinite(np.delete(matrix.ravel(), 7)).all()


def test_signed_heatmap_shows_the_matrix_on_a_scale_centred_at_zero():
    fig = plots.head_heatmap(heads_frame({"teacher-ft": TEACHER}), "delta_score")
    image = fig.axes[0].images[0]
    np.testing.assert_array_equal(image.get_array(), TEACHER)
    assert isinstance(image.norm, TwoSlopeNorm) and image.norm.vcenter == 0
    assert (image.norm.vmin, image.norm.vmax) == (-6.0, 6.0)  # symmetric: max |value| = 6
    assert image.get_cmap().name.startswith(plots.SIGNED_CMAP)
    assert fig.axes[0].get_xlabel() == "head" and fig.axes[0].get_ylabel() == "layer"
    assert fig.axes[1].get_ylabel() == plot_style.label("delta_score")  # the colour bar, {score} filled
    assert tuple(fig.get_size_inches()) == plots.FIGURE_SIZES["head_heatmap"]


def test_unsigned_heatmap_uses_a_sequential_map_from_min_to_max():
    values = np.abs(TEACHER) + 1
    fig = plots.head_heatmap(heads_frame({"teacher-ft": values}, metric="grad_importance"), "grad_importance")
    image = fig.axes[0].images[0]
    assert image.get_cmap().name.startswith(plots.UNSIGNED_CMAP)
    assert (image.norm.vmin, image.norm.vmax) == (values.min(), values.max())


def test_heatmap_errors_name_the_choice_to_make():
    both = heads_frame({"teacher-ft": TEACHER, "distil-ft_after": STUDENT})
    with pytest.raises(ValueError, match="pass variant="):
        plots.head_heatmap(both, "delta_score")
    with pytest.raises(ValueError, match="metrics present .*delta_score"):
        plots.head_heatmap(both, "ig", variant="teacher-ft")
    subsets = pd.concat([heads_frame({"t": TEACHER}, subset="x"), heads_frame({"t": TEACHER + 1}, subset="y")])
    with pytest.raises(ValueError, match="pass subset="):
        plots.head_matrix(subsets, "delta_score")
    np.testing.assert_array_equal(plots.head_matrix(subsets, "delta_score", subset="y"), TEACHER + 1)
    modes = pd.concat([heads_frame({"t": TEACHER}, mode="layer"), heads_frame({"t": -TEACHER}, mode="single")])
    np.testing.assert_array_equal(plots.head_matrix(modes, "delta_score"), -TEACHER)  # single-head mode preferred


def test_depth_profile_and_difference_on_known_values():
    teacher = plots.depth_profile(np.array([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0], [4.0, 6.0]]))
    assert teacher.index.tolist() == [0.25, 0.5, 0.75, 1.0] and teacher.tolist() == [1, 2, 3, 5]
    student = plots.depth_profile(np.array([[10.0, -10.0], [20.0, 40.0]]), absolute=True)
    assert student.index.tolist() == [0.5, 1.0] and student.tolist() == [10, 30]
    diff = plots.depth_difference(student, teacher)  # on the student's grid, where teacher layers 1, 3 lie
    assert diff.index.tolist() == [0.5, 1.0] and diff.tolist() == [8, 25]
    three = pd.Series([0.0, 3.0, 6.0], index=[1 / 3, 2 / 3, 1.0])
    np.testing.assert_allclose(plots.depth_difference(three, teacher).to_numpy(),  # teacher interpolated
                               [0 - (1 + (1 / 3 - 0.25) * 4), 3 - (2 + (2 / 3 - 0.5) * 4), 6 - 5])


def test_side_by_side_heatmaps_share_one_scale_and_plot_the_depth_difference():
    frame = heads_frame({"teacher-ft": TEACHER, "distil-ft_after": STUDENT})
    fig = plots.side_by_side_heatmaps({v: frame[frame["variant"] == v] for v in ("teacher-ft", "distil-ft_after")},
                                      "delta_score")
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == 2
    assert {(im.norm.vmin, im.norm.vmax) for im in images} == {(-6.0, 6.0)}
    np.testing.assert_array_equal(images[1].get_array(), STUDENT)
    bottom = fig.axes[-1]
    diff = plots.depth_difference(plots.depth_profile(STUDENT), plots.depth_profile(TEACHER))
    line = bottom.get_lines()[0]  # (the last line is the zero line)
    np.testing.assert_allclose(line.get_xdata(), diff.index)
    np.testing.assert_allclose(line.get_ydata(), diff.to_numpy())
    assert bottom.get_xlabel().startswith("normalised depth")
    with pytest.raises(ValueError, match="empty"):
        plots.side_by_side_heatmaps({}, "delta_score")


def cumulative_frame() -> pd.DataFrame:
    rows = [{"variant": "teacher-ft", "metric": "ablated_score", "value": np.nan}]  # the intact row: no step/order
    for variant, n in (("teacher-ft", 4), ("distil-ft_after", 2)):
        for order in ("most", "least"):
            for step in range(n + 1):
                for metric, value in (("ablated_score", step / n), ("ablated_accuracy", 1 - step / n)):
                    rows.append({"variant": variant, "metric": metric, "value": value, "ci_low": value - 0.1,
                                 "ci_high": value + 0.1, "step": step, "fraction": step / n, "order": order})
    return tidy(rows, score="cf_gap")


def test_cumulative_curve_draws_one_line_with_a_band_per_variant_and_order():
    fig = plots.cumulative_curve(cumulative_frame())
    score_ax, accuracy_ax = fig.axes[:2]
    assert score_ax.get_ylabel() == "cf_gap with heads ablated"
    assert accuracy_ax.get_xlabel() == "fraction of heads ablated"
    lines = score_ax.get_lines()
    assert len(lines) == 4 and len(score_ax.collections) == 4  # (variant, order) lines, each with its CI band
    xs = sorted(tuple(line.get_xdata()) for line in lines)
    assert xs[0] == (0.0, 0.25, 0.5, 0.75, 1.0) and (0.0, 0.5, 1.0) in xs
    assert {line.get_linestyle() for line in lines} == {"-", "--"}
    with pytest.raises(ValueError, match="lacks column"):
        plots.cumulative_curve(cumulative_frame().drop(columns=["order"]))


def test_probe_curves_put_layers_on_normalised_depth_with_chance():
    rows = [{"variant": v, "unit": "layer", "layer": l, "metric": "probe_accuracy", "subset": s, "value": 0.6,
             "pooling": p, "chance": 0.5}
            for v, n in (("teacher-ft", 4), ("distil-ft_after", 2)) for l in range(n + 1)
            for s in ("gender", "label") for p in ("cls", "mean")]
    fig = plots.probe_curves(tidy(rows))
    gender_ax = fig.axes[0]
    assert gender_ax.get_title() == "gender probe"
    xs = {tuple(np.round(line.get_xdata(), 6)) for line in gender_ax.get_lines() if len(line.get_xdata()) > 2}
    assert xs == {(0.0, 0.25, 0.5, 0.75, 1.0), (0.0, 0.5, 1.0)}
    assert any(tuple(line.get_ydata()) == (0.5, 0.5) for line in gender_ax.get_lines())  # chance
    with pytest.raises(ValueError, match="probe_auc"):
        plots.probe_curves(tidy(rows), metric="probe_auc")


def test_bias_vs_compression_marks_method_and_colours_order():
    task = tidy([{"variant": v, "unit": "model", "metric": m, "subset": s, "value": x}
                 for v, size, acc in (("teacher-ft", 90.0, 0.8), ("distil-ft_after", 45.0, 0.7),
                                      ("distil-ft_after@balanced", 45.0, 0.6))
                 for m, s, x in (("size_mb", "", size), ("accuracy", "test", acc))])
    bias = tidy([{"variant": "teacher-ft", "metric": "gap_rms", "value": 0.2, "ci_low": 0.1, "ci_high": 0.3},
                 {"variant": "distil-ft_after", "metric": "gap_rms", "value": 0.1},
                 {"variant": "distil-ft_after@balanced", "metric": "gap_rms", "value": 0.05}])
    fig = plots.bias_vs_compression(task, bias)
    size_ax, accuracy_ax = fig.axes
    points = {(line.get_xdata()[0], line.get_ydata()[0]): (line.get_marker(), line.get_color(),
                                                           line.get_markerfacecolor())
              for line in size_ax.get_lines() if line.get_marker() not in ("None", "", None, "|", "_")}
    assert points[(90.0, 0.2)] == ("*", plots.ORDER_COLOURS["ft"], plots.ORDER_COLOURS["ft"])
    assert points[(45.0, 0.1)] == ("o", plots.ORDER_COLOURS["after"], plots.ORDER_COLOURS["after"])
    assert points[(45.0, 0.05)] == ("o", plots.ORDER_COLOURS["after"], "none")  # the balanced set: open marker
    assert size_ax.get_xlabel() == "size (MB)" and accuracy_ax.get_xlabel() == "accuracy"
    with pytest.raises(ValueError, match="no model rows for metric 'cf_prob_gap'"):
        plots.bias_vs_compression(task, bias, bias_metric="cf_prob_gap")


def token_frame(tokens: list[str], values: list[float]) -> pd.DataFrame:
    return tidy([{"variant": "teacher-ft", "unit": "token", "metric": "token_ig", "value": v, "example": 7,
                  "position": i, "token": t, "score": "cf_gap"} for i, (t, v) in enumerate(zip(tokens, values))])


def test_token_attributions_colour_each_token_and_join_word_pieces():
    tokens = ["[CLS]", "she", "sings", "##ong", "[SEP]", "[PAD]"]
    values = [0.0, 0.5, -0.25, 0.1, 0.0, 9.0]
    fig = plots.token_attributions(token_frame(tokens, values), 7)
    texts = [t for t in fig.texts if t.get_bbox_patch() is not None]
    assert [t.get_text() for t in texts] == ["[CLS]", "she", "sings", "ong", "[SEP]"]  # [PAD] dropped
    cmap, norm = matplotlib.colormaps[plots.SIGNED_CMAP], TwoSlopeNorm(0.0, -0.5, 0.5)  # |max| without padding
    for text, value in zip(texts, values):
        np.testing.assert_allclose(text.get_bbox_patch().get_facecolor(), cmap(norm(value)))
    sings, ong = texts[2], texts[3]
    assert ong.get_position()[1] == sings.get_position()[1] and ong.get_position()[0] > sings.get_position()[0]
    assert tuple(fig.get_size_inches()) == plots.FIGURE_SIZES["token_attributions"]


def test_token_attributions_count_the_tokens_that_do_not_fit():
    fig = plots.token_attributions(token_frame([f"word{i}" for i in range(200)], list(np.linspace(-1, 1, 200))), 7)
    notes = [t.get_text() for t in fig.texts if "not shown" in t.get_text()]
    shown = sum(t.get_bbox_patch() is not None for t in fig.texts)
    assert notes == [f"(+{200 - shown} tokens not shown)"] and 20 < shown < 200


def test_top_neurons_are_the_largest_absolute_effects():
    rng = np.random.default_rng(1)
    frame = tidy([{"variant": "teacher-ft", "unit": "neuron", "layer": l, "head": j, "metric": "ig",
                   "value": rng.normal()} for l in range(3) for j in range(30)])
    fig = plots.top_neurons(frame, 5)
    bars = fig.axes[0].patches
    expected = frame.loc[frame["value"].abs().sort_values(ascending=False).index[:5]]
    np.testing.assert_allclose([b.get_width() for b in bars][::-1], expected["value"])
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()][::-1]
    assert labels == [f"L{l} n{j}" for l, j in zip(expected["layer"], expected["head"])]
    with pytest.raises(ValueError, match="k=0"):
        plots.top_neurons(frame, 0)


def test_style_sets_paper_fonts_only_inside_the_context():
    before = matplotlib.rcParams["font.size"]
    with plots.style():
        assert matplotlib.rcParams["font.size"] == 7 and matplotlib.rcParams["savefig.dpi"] == plots.DPI
    assert matplotlib.rcParams["font.size"] == before
