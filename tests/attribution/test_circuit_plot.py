"""The circuit figure: teacher beside student, nodes where the layer / head layout puts them, edges signed and
weighted, and a clean layout (no clipped text, no overlapping tick labels) at the demo's 6 x 12 and a 12 x 12
teacher (tests/figure_layout.py)."""

from __future__ import annotations

import numpy as np
import pytest
from circuit_tables import circuit_tables
from figure_layout import layout_problems
from matplotlib.colors import to_hex

from pipeline.figures.circuit_plot import ADDS, REDUCES, circuit_figure, node_xy


def test_nodes_sit_by_layer_and_head():
    assert [node_xy(n, 6, 12) for n in ("emb", "L0.H1", "L5.FFN", "readout")] == [
        (6.0, 0.0), (1.0, 1.0), (12.0, 6.0), (6.0, 7.0)
    ]  # fmt: skip
    with pytest.raises(ValueError, match="not a node name"):
        node_xy("L1.X", 6, 12)


def test_teacher_beside_student_with_signed_weighted_edges():
    fig = circuit_figure(*circuit_tables())
    teacher, student = fig.axes[:2]
    assert teacher.get_title() == "teacher-ft s0: 4 edges, 85% of bias"
    assert student.get_title() == "distil-ft_before s0: 4 edges, 85% of bias"
    assert [t.get_text() for t in student.get_yticklabels()] == ["emb", "L0", "L1", "L2", "L3", "L4", "L5", "out"]
    lines = [line for line in teacher.get_lines()]
    assert [to_hex(line.get_color()) for line in lines] == [ADDS.lower()] * 3 + [REDUCES.lower()]
    widths = [line.get_linewidth() for line in lines]
    assert widths[0] == pytest.approx(3.0) and widths == sorted(widths, reverse=True)
    np.testing.assert_allclose(lines[1].get_xydata(), [[1.0, 1.0], [11.0, 12.0]])  # L0.H1 -> L11.H11
    assert layout_problems(fig) == []


def test_without_edge_scores_the_circuit_nodes_give_the_shape_and_no_circuit_is_refused():
    circuit, _ = circuit_tables(4, 2)
    fig = circuit_figure(circuit)
    assert len(fig.axes[0].get_yticklabels()) == 4 + 2 and layout_problems(fig) == []
    with pytest.raises(ValueError, match="no circuit edges"):
        circuit_figure(circuit[circuit["unit"] == "model"])
