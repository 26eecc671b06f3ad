"""Layout checks on a drawn matplotlib figure, from its artists' bounding boxes: no text leaves the canvas, and no
two tick labels of one axis overlap (used by ``tests/attribution/test_figure_layout.py``)."""

from __future__ import annotations

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text

TOLERANCE_PX = 1.0


def _tick_labels(axis) -> list[Text]:
    """The tick labels drawn: visible, non-empty, at a tick inside the axis' view interval (matplotlib keeps labels
    for ticks outside it, which it does not draw)."""
    low, high = sorted(axis.get_view_interval())
    span = (high - low) * 1e-9
    return [
        t
        for loc, t in zip(axis.get_majorticklocs(), axis.get_majorticklabels())
        if t.get_visible() and t.get_text().strip() and low - span <= loc <= high + span
    ]


def _visible_texts(fig: Figure) -> list[Text]:
    """Every drawn text: figure and axes texts, titles, axis labels, legend texts and drawn tick labels."""
    ticks = {id(t) for ax in fig.axes for axis in (ax.xaxis, ax.yaxis) for t in axis.get_majorticklabels()}
    drawn = [t for ax in fig.axes if ax.get_visible() for axis in (ax.xaxis, ax.yaxis) for t in _tick_labels(axis)]
    others = [
        t
        for t in fig.findobj(Text)
        if id(t) not in ticks and t.get_visible() and t.get_text().strip() and (t.axes is None or t.axes.get_visible())
    ]
    return drawn + others


def layout_problems(fig: Figure) -> list[str]:
    """Every text outside the canvas and every pair of overlapping tick labels (empty when the layout is clean)."""
    if fig.canvas is None or not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    canvas = fig.bbox
    problems = []
    for text in _visible_texts(fig):
        box = text.get_window_extent(renderer)
        if (
            box.x0 < canvas.x0 - TOLERANCE_PX
            or box.y0 < canvas.y0 - TOLERANCE_PX
            or box.x1 > canvas.x1 + TOLERANCE_PX
            or box.y1 > canvas.y1 + TOLERANCE_PX
        ):
            problems.append(f"text {text.get_text()!r} leaves the canvas: {box.bounds} vs {canvas.bounds}")
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        for name, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
            boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in _tick_labels(axis)]
            for i, (a, box_a) in enumerate(boxes):
                for b, box_b in boxes[i + 1 :]:
                    if box_a.overlaps(box_b):
                        problems.append(f"{name} tick labels {a!r} and {b!r} overlap in axes {ax.get_title()!r}")
    return problems
