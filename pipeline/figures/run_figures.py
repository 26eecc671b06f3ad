"""``bias-atlas figures RUN_DIR``: write the publication figures of a run folder.

Every figure is drawn by :mod:`pipeline.figures.plots` (the functions the viewer uses) from the run's tidy tables and
written (:func:`save_figure`, atomically) as PNG (300 dpi), PDF and/or SVG at the sizes of :data:`pipeline.figures.plots.FIGURE_SIZES` (single column
3.35 in, double column 7.0 in wide). A table the run lacks skips its figures with a printed note naming the
stage that writes it. Files (``<variant>`` and ``<metric>`` as in the tables):

    heads_<metric>_<variant>.*       layer x head map per variant (mean over seeds): ablation delta_score /
                                     delta_accuracy, grad_importance, ig, indirect_effect, probe_accuracy; heads
                                     with q < alpha marked, heads that carry bias (findings) boxed
    compare_<metric>.*               every variant side by side (small multiples wrapping after four), on one
                                     absolute colour scale, with per-layer means on normalised depth
    cumulative_ablation.*            cumulative head-ablation curves with CI bands, one panel per model
    layer_ablation.*                 whole-layer ablation effects on normalised depth
    probe_curves.*                   layer probes on normalised depth
    probe_selectivity.*              control-task accuracy and selectivity per layer
    bias_vs_compression.*            GAP_RMS against size and accuracy, by method and fine-tuning order
    frontier.*                       accuracy vs GAP_RMS and |cf gap| per variant, mitigations marked, Pareto front
    pruning_curve.*                  bias and accuracy as heads go in bias / importance / random order
    tokens_<variant>_ex<k>.*         token attributions of the examples with the largest |sum of attributions|
                                     (smallest seed), on one colour scale for all variants and examples
    top_neurons_<variant>.*          the FFN neurons with the largest integrated-gradients attribution
    circuit.*                        the teacher's bias circuit beside each student's (circuit, eap_edges tables)

Models not fit to be read (the findings' ``fitness`` table, else computed from ``predictions``:
:func:`pipeline.viewer.viewer_data.model_status`) are named on every figure that shows them, and drawn grey in
bias_vs_compression.

References: Michel et al. 2019 (head ablation, importance), Sundararajan et al. 2017 (integrated gradients),
Vig et al. 2020 (patching), Hewitt & Liang 2019 (probes), Leteno et al. 2023 (normalised-depth comparison).
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from pipeline.figures import frontier as plots_frontier
from pipeline.figures import plots
from pipeline.figures.circuit_plot import circuit_figure
from pipeline.files import write_bytes
from pipeline.findings.model_status import flags_by_point, flags_by_variant, model_status
from pipeline.runs.findings_config import FindingsConfig
from pipeline.runs.runfolder import RunFolder
from pipeline.runs.tables import head_maps
from pipeline.schema import SchemaError
from pipeline.variants import variant_sort_key

__all__ = ["FORMATS", "figure_bytes", "main", "make_figures", "save_figure"]

FORMATS = ("png", "pdf", "svg")

N_TOKEN_EXAMPLES = 3  # token-attribution figures per variant

FigureJob = tuple[str, Callable[[], Figure]]


def figure_bytes(fig: Figure, fmt: str = "png") -> bytes:
    """The figure encoded as ``png`` (300 dpi), ``pdf`` or ``svg``, at exactly its figure size."""
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r} is not supported; use one of {', '.join(FORMATS)}.")
    metadata = {"png": {"Software": "bias-atlas"}, "pdf": {"CreationDate": None}, "svg": {"Date": None}}[fmt]
    buf = io.BytesIO()
    with plots.style():
        fig.savefig(buf, format=fmt, dpi=plots.DPI, metadata=metadata)
    return buf.getvalue()


def save_figure(fig: Figure, stem: str | Path, formats: Iterable[str] = FORMATS) -> list[Path]:
    """Write ``stem.<fmt>`` for each format, atomically (temp file, then rename); returns the paths."""
    stem, paths = Path(stem), []
    stem.parent.mkdir(parents=True, exist_ok=True)
    for fmt in formats:
        paths.append(write_bytes(stem.with_name(f"{stem.name}.{fmt}"), figure_bytes(fig, fmt)))
    return paths


def _variants(frame: pd.DataFrame) -> list[str]:
    return sorted(set(frame["variant"]), key=variant_sort_key)


def _head_jobs(tables: dict[str, pd.DataFrame], flags: dict[str, str], cfg: FindingsConfig) -> Iterator[FigureJob]:
    units = tables.get("bias_units")
    for _, name, metrics in head_maps():
        if name not in tables:
            continue
        heads = tables[name][tables[name]["unit"] == "head"]
        metric = next((m for m in metrics if m in set(heads["metric"])), None)
        if metric is None:
            print(f"note: {name} has no head rows for {' or '.join(metrics)}; skipping its maps")
            continue
        carries = None if units is None else units[units["metric"] == metric]
        variants = _variants(heads[heads["metric"] == metric])
        for variant in variants:
            part = tables[name][tables[name]["variant"] == variant]
            mine = None if carries is None else carries[carries["variant"] == variant]
            yield (
                f"heads_{metric}_{variant}",
                lambda part=part, metric=metric, mine=mine, variant=variant: plots.head_heatmap(
                    part, metric, alpha=cfg.alpha, carries=mine, flag=flags.get(variant)
                ),
            )
        if len(variants) > 1:
            chosen = {v: tables[name][tables[name]["variant"] == v] for v in variants}
            yield (
                f"compare_{metric}",
                lambda chosen=chosen, metric=metric, carries=carries: plots.side_by_side_heatmaps(
                    chosen, metric, alpha=cfg.alpha, carries=carries, flags={v: flags[v] for v in chosen if v in flags}
                ),
            )


def _token_jobs(tokens: pd.DataFrame, flags: dict[str, str], label_names: tuple[str, ...]) -> Iterator[FigureJob]:
    tokens = tokens[tokens["unit"] == "token"].astype({"example": int})  # not the rows of skipped variants
    if tokens.empty:
        return
    first = tokens[tokens["seed"] == tokens.groupby("variant")["seed"].transform("min")]
    vlim = float(first["value"].abs().max())  # one scale for every exported token figure
    for variant in _variants(first):
        rows = first[first["variant"] == variant]
        totals = rows.groupby("example")["value"].sum().abs().sort_values(ascending=False, kind="stable")
        for example in totals.index[:N_TOKEN_EXAMPLES]:
            yield (
                f"tokens_{variant}_ex{example}",
                lambda rows=rows, example=example, variant=variant: plots.token_attributions(
                    rows, int(example), vlim=vlim, label_names=label_names, flag=flags.get(variant)
                ),
            )


def _jobs(
    tables: dict[str, pd.DataFrame], status: pd.DataFrame, cfg: FindingsConfig, label_names: tuple[str, ...] = ()
) -> Iterator[FigureJob]:
    flags, points = flags_by_variant(status), flags_by_point(status)
    yield from _head_jobs(tables, flags, cfg)
    if "cumulative_ablation" in tables:
        yield "cumulative_ablation", lambda: plots.cumulative_curve(tables["cumulative_ablation"], flags=flags)
    if "head_ablation" in tables and (tables["head_ablation"]["unit"] == "layer").any():
        yield "layer_ablation", lambda: plots.layer_effects(tables["head_ablation"], flags=flags)
    if "probes_layers" in tables:
        yield "probe_curves", lambda: plots.probe_curves(tables["probes_layers"], flags=flags)
    if "probes_control" in tables:
        yield "probe_selectivity", lambda: plots.selectivity_curves(tables["probes_control"], flags=flags)
    if "task_metrics" in tables and "bias_metrics" in tables:
        yield (
            "bias_vs_compression",
            lambda: plots.bias_vs_compression(tables["task_metrics"], tables["bias_metrics"], flags=points),
        )
    if "frontier" in tables:
        yield "frontier", lambda: plots_frontier.frontier_figure(tables["frontier"])
    if "pruning_curve" in tables and "skipped" not in tables["pruning_curve"]:
        yield "pruning_curve", lambda: plots_frontier.pruning_curve_figure(tables["pruning_curve"])
    if "token_ig" in tables:
        yield from _token_jobs(tables["token_ig"], flags, label_names)
    if "circuit" in tables:
        yield "circuit", lambda: circuit_figure(tables["circuit"], tables.get("eap_edges"))
    if "neuron_ig" in tables:
        neurons = tables["neuron_ig"]
        for variant in _variants(neurons[neurons["unit"] == "neuron"]):
            yield (
                f"top_neurons_{variant}",
                lambda variant=variant: plots.top_neurons(
                    neurons[neurons["variant"] == variant], alpha=cfg.alpha, flag=flags.get(variant)
                ),
            )


def make_figures(
    run_dir: str | Path, out_dir: str | Path | None = None, formats: Sequence[str] = FORMATS
) -> list[Path]:
    """Write every figure the run's tables allow; return the written files.

    Args:
        run_dir: the run folder (``runs/<name>``).
        out_dir: where to write (default ``<run_dir>/figures``).
        formats: any of ``png``, ``pdf``, ``svg``.

    Raises:
        FileNotFoundError: ``run_dir`` does not exist.
        ValueError: an unknown format.
    """
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ValueError(f"formats={list(formats)!r}: choose one or more of {', '.join(FORMATS)}.")
    run = RunFolder(run_dir)
    out = Path(out_dir) if out_dir is not None else run.figures_dir
    wanted = {t for _, t, _ in head_maps()} | {
        "cumulative_ablation",
        "probes_layers",
        "probes_control",
        "task_metrics",
        "bias_metrics",
        "token_ig",
        "neuron_ig",
    }
    # read when present (marks, flags, mitigation figures), never a note when absent
    quiet = ("bias_units", "fitness", "predictions", "frontier", "pruning_curve", "circuit", "eap_edges")
    tables = {}
    for name in sorted(wanted):
        if not run.has(name):
            print(f"note: skipping figures from {run.missing(name)}")
            continue
        try:
            tables[name] = run.table(name)
        except SchemaError as err:  # a damaged table costs its own figures, not the others
            print(f"warning: skipping figures from {name}: {err}")
    for name in quiet:
        try:
            tables[name] = run.table(name) if run.has(name) else None
        except SchemaError as err:
            print(f"warning: {name} is damaged ({err}); figures are drawn without it")
            tables[name] = None
    extra = {name: tables.pop(name) for name in quiet}
    for name in ("bias_units", "frontier", "pruning_curve", "circuit", "eap_edges"):
        if extra[name] is not None:
            tables[name] = extra[name]
    section = run.manifest.get("config", {}).get("findings") or {}
    cfg = FindingsConfig(**section)
    status = model_status(extra["fitness"], tables.get("task_metrics"), extra["predictions"], cfg)
    label_names = tuple(run.manifest.get("label_names") or ())
    written: list[Path] = []
    for stem, draw in tqdm(list(_jobs(tables, status, cfg, label_names)), desc="figures", unit="figure", disable=None):
        try:
            fig = draw()
        except ValueError as err:
            print(f"note: skipping {stem}: {err}")
            continue
        written += save_figure(fig, out / stem, formats)
    return written


def main(argv: Sequence[str] | None = None, *, prog: str = "bias-atlas figures") -> int:
    """CLI: ``bias-atlas figures RUN_DIR [--out DIR] [--format png,pdf,svg]``; returns the exit code."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="run folder written by `bias-atlas run` (runs/<name>)")
    parser.add_argument("--out", default=None, help="output folder (default: RUN_DIR/figures)")
    parser.add_argument(
        "--format", default=",".join(FORMATS), help="comma-separated formats among png, pdf, svg (default: all three)"
    )
    args = parser.parse_args(argv)
    formats = [f.strip().lower() for f in args.format.split(",") if f.strip()]
    try:
        written = make_figures(args.run_dir, args.out, formats)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {len(written)} files to {Path(args.out) if args.out else RunFolder(args.run_dir).figures_dir}")
    return 0
