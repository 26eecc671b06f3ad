"""The shared plotting functions, on hand-built tidy frames with known values."""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import TwoSlopeNorm

from pipeline.figures import plots
from pipeline.figures import style as plot_style
from pipeline.schema import tidy


def heads_frame(values: dict[str, np.ndarray], metric: str = "delta_score", seeds=(0,), **extra) -> pd.DataFrame:
    """Unit-head rows of each variant's (layer, head) matrix; seed s adds s to every value."""
    rows = [
        {
            "variant": v,
            "seed": s,
            "unit": "head",
            "layer": l,
            "head": h,
            "metric": metric,
            "value": float(m[l, h]) + s,
            **extra,
        }
        for v, m in values.items()
        for s in seeds
        for l in range(m.shape[0])
        for h in range(m.shape[1])
    ]
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
    what, sign = fig.axes[1].get_ylabel().split("\n")  # the colour bar: what is measured, which sign adds bias
    assert what == plot_style.label("delta_score") and sign == "+ = removing it raises the score"
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
    np.testing.assert_allclose(
        plots.depth_difference(three, teacher).to_numpy(),  # teacher interpolated
        [0 - (1 + (1 / 3 - 0.25) * 4), 3 - (2 + (2 / 3 - 0.5) * 4), 6 - 5],
    )


def test_side_by_side_heatmaps_share_one_scale_and_plot_the_depth_difference():
    frame = heads_frame({"teacher-ft": TEACHER, "distil-ft_after": STUDENT})
    fig = plots.side_by_side_heatmaps(
        {v: frame[frame["variant"] == v] for v in ("teacher-ft", "distil-ft_after")}, "delta_score"
    )
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == 2
    assert {(im.norm.vmin, im.norm.vmax) for im in images} == {(-6.0, 6.0)}
    np.testing.assert_array_equal(images[1].get_array(), STUDENT)
    bottom = fig.axes[-1]
    diff = plots.depth_difference(plots.depth_profile(STUDENT), plots.depth_profile(TEACHER))
    line = bottom.get_lines()[0]  # (the last line is the zero line)
    np.testing.assert_allclose(line.get_xdata(), diff.index)
    np.testing.assert_allclose(line.get_ydata(), diff.to_numpy())
    assert bottom.get_xlabel() == "depth (l+1)/L"
    with pytest.raises(ValueError, match="empty"):
        plots.side_by_side_heatmaps({}, "delta_score")


def test_side_by_side_heatmaps_wrap_any_number_of_variants_and_scale_per_map_on_request():
    values = {f"distil{i}-ft_after": STUDENT * (i + 1) for i in range(6)}
    frames = heads_frame({"teacher-ft": TEACHER, **values})
    chosen = {v: frames[frames["variant"] == v] for v in ["teacher-ft", *values]}
    fig = plots.side_by_side_heatmaps(chosen, "delta_score")
    heat = [ax for ax in fig.axes if ax.images]
    assert len(heat) == 7 and len({round(ax.get_position().y0, 3) for ax in heat}) == 2  # 4 + 3: two rows
    assert fig.get_size_inches()[1] == pytest.approx(plots.grown_height("side_by_side_heatmaps", 2))
    assert {(ax.images[0].norm.vmin, ax.images[0].norm.vmax) for ax in heat} == {(-18.0, 18.0)}  # one scale
    panel = plots.side_by_side_heatmaps(chosen, "delta_score", scale="panel")
    limits = [ax.images[0].norm.vmax for ax in panel.axes if ax.images]
    assert limits == [6.0] + [3.0 * (i + 1) for i in range(6)]  # each map its own max |value|
    with pytest.raises(ValueError, match="scale="):
        plots.side_by_side_heatmaps(chosen, "delta_score", scale="log")


def test_heatmap_marks_significant_heads_fades_the_rest_and_boxes_the_carriers():
    frame = heads_frame({"teacher-ft": TEACHER}, seeds=(0, 1), n=12)
    frame["q"] = 0.5
    frame.loc[(frame["layer"] == 0) & (frame["head"] == 0), "q"] = 0.01  # both seeds
    frame.loc[(frame["layer"] == 1) & (frame["head"] == 2) & (frame["seed"] == 0), "q"] = 0.01  # one seed
    carries = tidy(
        [
            {
                "variant": "teacher-ft",
                "seed": 0,
                "unit": "head",
                "layer": 3,
                "head": 1,
                "metric": "delta_score",
                "value": 1.0,
                "carries": True,
            }
        ]
    )
    fig = plots.head_heatmap(frame, "delta_score", carries=carries, flag="untrained head")
    ax = fig.axes[0]
    dots, rings = ([tuple(p) for p in c.get_offsets()] for c in ax.collections[:2])
    assert dots == [(0.0, 0.0)] and rings == [(2.0, 1.0)]  # (head, layer)
    faded = [p for p in ax.patches if p.get_facecolor()[:3] == (1.0, 1.0, 1.0) and p.get_fill()]
    assert len(faded) == TEACHER.size - 2
    boxes = [p.get_xy() for p in ax.patches if not p.get_fill()]
    assert boxes == [(1 - 0.42, 3 - 0.42)]
    assert "n = 12" in ax.get_title() and "not fit to be read: untrained head" in ax.get_title()
    share, carried = plots.head_significance(frame, TEACHER.shape, 0.05, carries)
    assert share[0, 0] == 1 and share[1, 2] == 0.5 and carried.sum() == 1


def cumulative_frame() -> pd.DataFrame:
    rows = [{"variant": "teacher-ft", "metric": "ablated_score", "value": np.nan}]  # the intact row: no step/order
    for variant, n in (("teacher-ft", 4), ("distil-ft_after", 2)):
        for order in ("most", "least"):
            for step in range(n + 1):
                for metric, value in (("ablated_score", step / n), ("ablated_accuracy", 1 - step / n)):
                    rows.append(
                        {
                            "variant": variant,
                            "metric": metric,
                            "value": value,
                            "ci_low": value - 0.1,
                            "ci_high": value + 0.1,
                            "step": step,
                            "fraction": step / n,
                            "order": order,
                        }
                    )
    return tidy(rows, score="cf_gap")


def test_cumulative_curve_draws_one_panel_per_model_with_both_orders_and_bands():
    fig = plots.cumulative_curve(cumulative_frame(), flags={"distil-ft_after": "untrained head"})
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 4  # 2 models x (score, accuracy)
    titles = [ax.get_title() for ax in axes if ax.get_title()]
    assert titles == ["teacher-ft", "distil-ft_after (not fit)"]
    teacher_score = axes[0]
    assert teacher_score.get_ylabel() == "cf gap"
    lines = teacher_score.get_lines()
    assert len(lines) == 2 and len(teacher_score.collections) == 2  # most / least, each with its CI band
    assert {line.get_linestyle() for line in lines} == {"-", "--"}
    assert all(tuple(line.get_xdata()) == (0.0, 0.25, 0.5, 0.75, 1.0) for line in lines)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "(no random-order curves in the table)" in legend
    with pytest.raises(ValueError, match="lacks column"):
        plots.cumulative_curve(cumulative_frame().drop(columns=["order"]))


def test_cumulative_curve_draws_the_random_order_baseline_when_the_table_has_it():
    rows = [
        {
            "variant": "teacher-ft",
            "metric": "ablated_score",
            "value": v,
            "step": step,
            "fraction": step / 4,
            "order": order,
        }
        for order, offset in (("random0", 0.0), ("random1", 0.2), ("most", 0.5))
        for step in range(5)
        for v in [step / 4 + offset]
    ]
    fig = plots.cumulative_curve(tidy(rows, score="cf_gap"))
    ax = fig.axes[0]
    random = [line for line in ax.get_lines() if line.get_linestyle() == "-."]
    assert len(random) == 1
    np.testing.assert_allclose(random[0].get_ydata(), np.arange(5) / 4 + 0.1)  # mean of the two orders
    assert any("random order: mean, min-max of 2 seeded orders" == t.get_text() for t in fig.legends[0].get_texts())


def test_probe_curves_put_layers_on_normalised_depth_with_chance():
    rows = [
        {
            "variant": v,
            "unit": "layer",
            "layer": l,
            "metric": "probe_accuracy",
            "subset": s,
            "value": 0.6,
            "pooling": p,
            "chance": 0.5,
        }
        for v, n in (("teacher-ft", 4), ("distil-ft_after", 2))
        for l in range(n + 1)
        for s in ("gender", "label")
        for p in ("cls", "mean")
    ]
    fig = plots.probe_curves(tidy(rows))
    gender_ax = fig.axes[0]
    assert gender_ax.get_title() == "gender probe"
    xs = {tuple(np.round(line.get_xdata(), 6)) for line in gender_ax.get_lines() if len(line.get_xdata()) > 2}
    assert xs == {(0.0, 0.25, 0.5, 0.75, 1.0), (0.0, 0.5, 1.0)}
    assert any(tuple(line.get_ydata()) == (0.5, 0.5) for line in gender_ax.get_lines())  # chance
    with pytest.raises(ValueError, match="probe_auc"):
        plots.probe_curves(tidy(rows), metric="probe_auc")


def test_bias_vs_compression_marks_method_and_colours_order():
    task = tidy(
        [
            {"variant": v, "unit": "model", "metric": m, "subset": s, "value": x}
            for v, size, acc in (
                ("teacher-ft", 90.0, 0.8),
                ("distil-ft_after", 45.0, 0.7),
                ("distil-ft_after@balanced", 45.0, 0.6),
            )
            for m, s, x in (("size_mb", "", size), ("accuracy", "test", acc))
        ]
    )
    bias = tidy(
        [
            {"variant": "teacher-ft", "metric": "gap_rms", "value": 0.2, "ci_low": 0.1, "ci_high": 0.3},
            {"variant": "distil-ft_after", "metric": "gap_rms", "value": 0.1},
            {"variant": "distil-ft_after@balanced", "metric": "gap_rms", "value": 0.05},
        ]
    )
    fig = plots.bias_vs_compression(task, bias)
    size_ax, accuracy_ax = fig.axes
    points = {
        (line.get_xdata()[0], line.get_ydata()[0]): (line.get_marker(), line.get_color(), line.get_markerfacecolor())
        for line in size_ax.get_lines()
        if line.get_marker() not in ("None", "", None, "|", "_")
    }
    assert points[(90.0, 0.2)] == ("*", plots.ORDER_COLOURS["ft"], plots.ORDER_COLOURS["ft"])
    assert points[(45.0, 0.1)] == ("o", plots.ORDER_COLOURS["after"], plots.ORDER_COLOURS["after"])
    assert points[(45.0, 0.05)] == ("o", plots.ORDER_COLOURS["after"], "none")  # the balanced set: open marker
    assert size_ax.get_xlabel() == "size (MB)" and accuracy_ax.get_xlabel() == "accuracy"
    assert size_ax.get_ylabel() == "GAP_RMS (TPR gap)\n(0 = fair, lower is fairer)"
    assert any(list(line.get_ydata()) == [0.0, 0.0] and line.get_linestyle() == ":" for line in size_ax.get_lines())
    labels = sorted(t.get_text() for t in size_ax.texts)  # one label per point, none overlapping
    assert labels == ["distil-ft_after", "distil-ft_after@balanced", "teacher-ft"]
    with pytest.raises(ValueError, match="no model rows for metric 'cf_prob_gap'"):
        plots.bias_vs_compression(task, bias, bias_metric="cf_prob_gap")


def token_frame(tokens: list[str], values: list[float]) -> pd.DataFrame:
    return tidy(
        [
            {
                "variant": "teacher-ft",
                "unit": "token",
                "metric": "token_ig",
                "value": v,
                "example": 7,
                "position": i,
                "token": t,
                "score": "cf_gap",
            }
            for i, (t, v) in enumerate(zip(tokens, values))
        ]
    )


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


def test_word_pieces_and_punctuation_join_the_word_before_them():
    tokens = ["[CLS]", "my", "ins", "##tagram", "account", "capt", "##ion", ",", "(", "she", ")", "[SEP]"]
    pieces = plots.token_pieces(tokens)
    text = "".join((" " if space else "") + piece for piece, space in pieces)
    assert text == "[CLS] my instagram account caption, (she) [SEP]"
    fig = plots.token_attributions(token_frame(tokens, list(np.linspace(-1, 1, len(tokens)))), 7)
    boxes = {t.get_text(): t for t in fig.texts if t.get_bbox_patch() is not None}
    renderer = fig.canvas.get_renderer()
    right = lambda t: t.get_window_extent(renderer).x1
    left = lambda t: t.get_window_extent(renderer).x0
    assert abs(left(boxes["tagram"]) - right(boxes["ins"])) < 1.5  # no gap inside a word
    assert abs(left(boxes["ion"]) - right(boxes["capt"])) < 1.5 and abs(left(boxes[","]) - right(boxes["ion"])) < 1.5
    assert left(boxes["account"]) - right(boxes["tagram"]) > 3  # a space between words


def test_token_attributions_name_gender_and_classes_and_take_a_shared_scale():
    frame = token_frame(["[CLS]", "she", "[SEP]"], [0.0, 0.01, 0.0]).assign(gender=1.0, label=2.0, pred=0.0)
    fig = plots.token_attributions(frame, 7, vlim=0.5, label_names=("author", "person", "singer"))
    header = fig.texts[0].get_text()
    assert "label singer" in header and "pred author" in header and "gender female" in header
    she = next(t for t in fig.texts if t.get_text() == "she")
    cmap, norm = matplotlib.colormaps[plots.SIGNED_CMAP], TwoSlopeNorm(0.0, -0.5, 0.5)  # the given limit, not 0.01
    np.testing.assert_allclose(she.get_bbox_patch().get_facecolor(), cmap(norm(0.01)))


def test_top_neurons_are_the_largest_absolute_effects():
    rng = np.random.default_rng(1)
    frame = tidy(
        [
            {"variant": "teacher-ft", "unit": "neuron", "layer": l, "head": j, "metric": "ig", "value": rng.normal()}
            for l in range(3)
            for j in range(30)
        ]
    )
    fig = plots.top_neurons(frame, 5)
    bars = fig.axes[0].patches
    expected = frame.loc[frame["value"].abs().sort_values(ascending=False).index[:5]]
    np.testing.assert_allclose([b.get_width() for b in bars][::-1], expected["value"])
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()][::-1]
    assert labels == [f"L{l} n{j}" for l, j in zip(expected["layer"], expected["head"])]
    with pytest.raises(ValueError, match="k=0"):
        plots.top_neurons(frame, 0)
    tall = plots.top_neurons(frame, 50)
    assert tall.get_size_inches()[1] == pytest.approx(plots.grown_height("top_neurons", bars=50))
    assert tall.get_size_inches()[1] > 2.6 + 4  # grows with k


def test_style_sets_paper_fonts_only_inside_the_context():
    before = matplotlib.rcParams["font.size"]
    with plots.style():
        assert matplotlib.rcParams["font.size"] == 7 and matplotlib.rcParams["savefig.dpi"] == plots.DPI
    assert matplotlib.rcParams["font.size"] == before
