"""The figure command: which files it writes, their documented pixel sizes, and its notes and errors."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from pipeline.figures import plots
from pipeline.figures.run_figures import figure_bytes, main, make_figures, save_figure
from pipeline.files import _umask
from pipeline.schema import tidy, write_table

VIEWER_DOC = Path(__file__).resolve().parents[2] / "docs" / "VIEWER.md"
KIND = {
    "heads": "head_heatmap",
    "compare": "side_by_side_heatmaps",
    "cumulative": "cumulative_curve",
    "probe": "probe_curves",
    "bias": "bias_vs_compression",
    "tokens": "token_attributions",
    "top": "top_neurons",
}  # file-name prefix -> plotting function


def _write(run: Path, name: str, rows: list[dict]) -> None:
    write_table(tidy(rows), run / "tables" / f"{name}.parquet")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A run folder with hand-built tables, one figure of each kind (no head_importance, head_ig, patching,
    probes_heads: each figure takes about a second to encode on a busy 2-core CPU)."""
    run = tmp_path_factory.mktemp("runs") / "hand"
    rng = np.random.default_rng(0)
    shapes = {"teacher-ft": (4, 3), "distil-ft_after": (2, 3)}
    _write(
        run,
        "head_ablation",
        [
            {
                "variant": v,
                "unit": "head",
                "layer": l,
                "head": h,
                "metric": "delta_score",
                "value": rng.normal(),
                "mode": "single",
            }
            for v, (n, k) in shapes.items()
            for l in range(n)
            for h in range(k)
        ],
    )
    _write(
        run,
        "cumulative_ablation",
        [
            {"variant": v, "metric": m, "value": rng.random(), "step": s, "order": o, "fraction": s / (n * k)}
            for v, (n, k) in shapes.items()
            for o in ("most", "least")
            for s in range(n * k + 1)
            for m in ("ablated_score", "ablated_accuracy")
        ],
    )
    _write(
        run,
        "probes_layers",
        [
            {"variant": v, "unit": "layer", "layer": l, "metric": "probe_accuracy", "subset": s, "value": rng.random()}
            for v, (n, _) in shapes.items()
            for l in range(n + 1)
            for s in ("gender", "label")
        ],
    )
    _write(
        run,
        "task_metrics",
        [
            {"variant": v, "unit": "model", "metric": m, "value": x}
            for v, size in (("teacher-ft", 90.0), ("distil-ft_after", 45.0))
            for m, x in (("size_mb", size), ("accuracy", rng.random()))
        ],
    )
    _write(run, "bias_metrics", [{"variant": v, "metric": "gap_rms", "value": rng.random()} for v in shapes])
    _write(
        run,
        "token_ig",
        [
            {
                "variant": "teacher-ft",
                "unit": "token",
                "metric": "token_ig",
                "value": rng.normal(),
                "example": 5,
                "position": p,
                "token": t,
            }
            for p, t in enumerate(["[CLS]", "she", "sang", "[SEP]"])
        ],
    )
    _write(
        run,
        "neuron_ig",
        [
            {"variant": "teacher-ft", "unit": "neuron", "layer": l, "head": j, "metric": "ig", "value": rng.normal()}
            for l in range(4)
            for j in range(8)
        ],
    )
    return run


def documented_sizes() -> dict[str, tuple[float, float, int, int]]:
    """``function -> (width in, height in, width px, height px)`` from the sizes table of docs/VIEWER.md."""
    rows = re.findall(
        r"^\|[^|]*\| `(\w+)` \| ([\d.]+) \| ([\d.]+) \| (\d+) x (\d+) \|", VIEWER_DOC.read_text(), re.MULTILINE
    )
    return {fn: (float(w), float(h), int(pw), int(ph)) for fn, w, h, pw, ph in rows}


def test_viewer_doc_sizes_match_the_code():
    sizes = documented_sizes()
    assert set(sizes) == set(plots.FIGURE_SIZES)
    for fn, (w, h, pw, ph) in sizes.items():
        assert (w, h) == plots.FIGURE_SIZES[fn]
        assert (pw, ph) == (round(w * plots.DPI), round(h * plots.DPI))
    assert {w for w, _ in plots.FIGURE_SIZES.values()} == {plots.SINGLE_COLUMN_IN, plots.DOUBLE_COLUMN_IN}


def test_make_figures_writes_every_figure_the_tables_allow(run, tmp_path, capsys):
    written = make_figures(run, tmp_path / "out", formats=["png"])
    assert {p.name for p in written} == {
        f"{stem}.png"
        for stem in (
            "heads_delta_score_teacher-ft",
            "heads_delta_score_distil-ft_after",
            "compare_delta_score",
            "cumulative_ablation",
            "probe_curves",
            "bias_vs_compression",
            "tokens_teacher-ft_ex5",
            "top_neurons_teacher-ft",
        )
    }
    sizes = documented_sizes()
    for path in written:
        assert path.parent == tmp_path / "out" and path.stat().st_size > 1000
        if path.suffix == ".png":
            _, _, width, height = sizes[KIND[path.stem.split("_")[0]]]
            assert Image.open(path).size == (width, height), path.name
    assert not list((tmp_path / "out").glob(".*tmp"))  # atomic writes leave no temp file
    assert all(p.stat().st_mode & 0o044 == 0o044 & ~_umask() for p in written)  # not private like mkstemp's
    notes = capsys.readouterr().out
    for table in ("head_importance", "head_ig", "patching", "probes_heads"):
        assert f"{table} is missing" in notes
    assert "bias-atlas run" in notes


def test_cli_writes_the_chosen_formats_into_the_run_figures_folder(run, tmp_path, capsys):
    small = tmp_path / "small"
    (small / "tables").mkdir(parents=True)
    for name in ("task_metrics", "bias_metrics"):
        (small / "tables" / f"{name}.parquet").write_bytes((run / "tables" / f"{name}.parquet").read_bytes())
    assert main([str(small), "--format", "pdf, SVG"]) == 0
    files = sorted(p.name for p in (small / "figures").iterdir())
    assert files == ["bias_vs_compression.pdf", "bias_vs_compression.svg"]
    assert "wrote 2 files" in capsys.readouterr().out
    assert (small / "figures" / "bias_vs_compression.pdf").read_bytes().startswith(b"%PDF")
    assert "GAP_RMS" in (small / "figures" / "bias_vs_compression.svg").read_text()  # text stays text


def test_partial_run_skips_with_notes_and_bad_input_fails_clearly(tmp_path, capsys):
    partial = tmp_path / "partial"
    _write(partial, "task_metrics", [{"variant": "teacher-ft", "unit": "model", "metric": "accuracy", "value": 0.5}])
    assert make_figures(partial, formats=["png"]) == []
    notes = capsys.readouterr().out
    assert "bias_metrics is missing" in notes and "head_ablation is missing" in notes
    assert main([str(partial), "--format", "png,gif"]) == 2
    assert "choose one or more of png, pdf, svg" in capsys.readouterr().err
    assert main([str(tmp_path / "absent")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_figure_bytes_encode_exactly_the_figure_size(tmp_path):
    fig = Figure(figsize=plots.FIGURE_SIZES["top_neurons"])
    fig.add_subplot().plot([0, 1])
    png = Image.open(io.BytesIO(figure_bytes(fig, "png")))
    assert png.size == (1005, 780)
    assert figure_bytes(fig, "pdf").startswith(b"%PDF") and b"<svg" in figure_bytes(fig, "svg")
    assert figure_bytes(fig, "svg") == figure_bytes(fig, "svg")  # no date or random ids: reproducible files
    with pytest.raises(ValueError, match="use one of png, pdf, svg"):
        figure_bytes(fig, "jpg")
    assert [p.name for p in save_figure(fig, tmp_path / "a" / "fig", ["png", "pdf"])] == ["fig.png", "fig.pdf"]
