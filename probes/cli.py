"""Command line of the probes: ``bias-atlas probe run``, ``bias-atlas probe figure`` and ``bias-atlas probe table``.

    bias-atlas probe run --model minilm --data bug --n 2000 --pooling cls,mean --out runs/probes-minilm
    bias-atlas probe figure runs/probes-minilm --out docs/figures/probes_minilm_bug.png
    bias-atlas probe table runs/probes-minilm

``run`` loads a model (hub name, folder or ``minilm``) and a task (``bug``, ``bug-gold``, ``bias_in_bios`` = the
offline sample, ``LabHC/bias_in_bios`` = the hub, or a table file), runs :func:`probes.analysis.run_probes`,
writes the tidy tables as parquet under ``--out`` and prints a per-layer table. ``figure`` draws the layer-wise
curves on normalised depth (and, with ``--heads-out``, the head maps) from such a folder or table. ``table``
prints such a folder's tables as Markdown (per layer and pooling; erasure before / after; the top heads). With
``--head classifier`` a trained head keeps its classes: the data's labels are mapped onto them by name, a head
class that is no data class (or unnamed, ``LABEL_k``) only through ``--label-map HEAD=DATA,...``. Bad
arguments stop with ``error: ...`` (exit status 2), naming the option.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from pydantic import ValidationError

from pipeline.class_map import load_classifier_for
from pipeline.cli_checks import DATA_HINTS, check_range, for_command_line, parse_label_map, settings_error
from pipeline.data.bias_in_bios import BIOS_HUB_ID
from pipeline.data.task import TaskData
from pipeline.data.tasks import load_task
from pipeline.models import check_max_length, load_model, load_model_config, resolve_source
from pipeline.schema import read_table, write_table
from probes.analysis import ProbeConfig, run_probes
from probes.curves import depth_curves, head_map, plot_depth_curves, plot_head_map

_NAMED_DATA = ("bug", "bug-gold", "bias_in_bios", BIOS_HUB_ID)
# ProbeConfig fields and library parameters -> this command's options (pipeline.cli_checks.for_command_line)
_OPTIONS = {
    "n_folds": "--folds",
    "max_examples": "--n",
    "poolings": "--pooling",
    "erasure_layers": "--erase",
    "fit_on": "--fit-on",
    "batch_size": "--batch-size",
    "max_length": "--max-length",
    "seed": "--seed",
    " or drop the rare classes (ProbeConfig.min_class_size)": " or drop the rare classes from the file",
    ", use groups=None,": ",",
    "give None or at least": "give 0 (all) or at least",
}


def _load_task(name: str, *, text_col: str, label_col: str, gender_col: str) -> TaskData:
    """A task by name (see the module docstring) or from a table file / Bias in Bios folder."""
    try:
        return load_task(name, text_col=text_col, label_col=label_col, gender_col=gender_col)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"--data {name!r} is neither one of {_NAMED_DATA} nor an existing file or folder."
        ) from None


def _csv(text: str, cast=str) -> tuple:
    return tuple(cast(x.strip()) for x in text.split(",") if x.strip())


def layer_summary(table: pd.DataFrame, metric: str = "probe_accuracy") -> pd.DataFrame:
    """Per-layer table: one column per (target, pooling), cells ``value [ci_low, ci_high]``."""
    rows = table[(table["unit"] == "layer") & (table["metric"] == metric)]
    cells = rows.assign(
        cell=[f"{v:.3f} [{lo:.3f}, {hi:.3f}]" for v, lo, hi in zip(rows["value"], rows["ci_low"], rows["ci_high"])]
    )
    return cells.pivot_table(index="layer", columns=["subset", "pooling"], values="cell", aggfunc="first")


def _int_list(option: str, text: str) -> tuple[int, ...]:
    try:
        return _csv(text, int)
    except ValueError:
        raise SystemExit(f"{option} {text!r}: give comma-separated integers, e.g. 3,6.") from None


def _settings(args: argparse.Namespace) -> ProbeConfig:
    """The probe settings of the command line; a bad value stops with a message naming its option."""
    check_range("--n", args.n or 0, low=0, what="examples to probe; 0 = all")
    check_range("--folds", args.folds, low=2, what="outer cross-validation folds; 5 is usual")
    check_range("--batch-size", args.batch_size, low=1, what="texts per forward pass")
    check_range("--seed", args.seed, low=0)
    try:
        return ProbeConfig(
            poolings=_csv(args.pooling),
            n_folds=args.folds,
            max_examples=args.n,
            balance_genders=not args.no_balance,
            heads=not args.no_heads,
            label=not args.no_label,
            control=not args.no_control,
            mdl=args.mdl,
            erasure_layers=_int_list("--erase", args.erase),
            fit_on=args.fit_on,
            batch_size=args.batch_size,
            max_length=args.max_length,
            seed=args.seed,
            min_class_size=max(10, args.folds),  # the label probe needs a class in every fold
        )
    except ValidationError as err:
        raise settings_error(err, _OPTIONS) from None


def _check_erase(layers: tuple[int, ...], n_layers: int) -> None:
    bad = [k for k in layers if not -(n_layers + 1) <= k <= n_layers]
    if bad:
        raise SystemExit(
            f"--erase {','.join(map(str, layers))}: layers {bad} are outside this {n_layers}-block "
            f"model; give hidden-state indices 0..{n_layers} (0 = embeddings) or -{n_layers + 1}..-1."
        )


def _run(args: argparse.Namespace) -> int:
    args.max_length = check_max_length(
        args.max_length, load_model_config(resolve_source(args.model)), option="--max-length"
    )
    cfg = _settings(args)
    try:
        data = _load_task(args.data, text_col=args.text_col, label_col=args.label_col, gender_col=args.gender_col)
    except ValueError as err:  # a table the loader refuses: its fix hint, in this command's options
        raise SystemExit(for_command_line(str(err), DATA_HINTS)) from None
    label_map = parse_label_map(args.label_map)
    if args.head == "classifier":  # a trained head's classes, matched to the data's by name (pipeline.class_map)
        loaded, data = load_classifier_for(args.model, data, label_map, device=args.device)
    elif label_map:
        raise SystemExit(f"--label-map: --head {args.head} has no classes. Fix: drop it, or use --head classifier.")
    else:
        loaded = load_model(args.model, head=args.head, device=args.device)
    _check_erase(cfg.erasure_layers, loaded.anatomy.n_layers)
    variant = args.variant or Path(str(args.model)).name
    try:
        tables = run_probes(loaded, data, cfg, variant=variant, cache_dir=args.cache_dir)
    except ValueError as err:  # too few examples for the folds...: name this command's options
        raise SystemExit(for_command_line(str(err), _OPTIONS)) from None
    out = Path(args.out or f"runs/probes-{variant}")
    for name, frame in tables.items():
        write_table(frame, out / f"{name}.parquet")
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(
            f"\n{variant} on {data.name} ({cfg.max_examples or 'all'} examples max): probe accuracy per layer "
            "(layer 0 = embeddings), mean over folds [95% bootstrap CI over test examples]"
        )
        print(layer_summary(tables["probes_layers"]).to_string())
        if "probes_control" in tables:
            print("\ngender selectivity (accuracy - control accuracy)")
            print(layer_summary(tables["probes_control"], "selectivity").to_string())
    print(f"\ntables written to {out}/: {', '.join(sorted(tables))}")
    return 0


def _table(source: Path, name: str) -> pd.DataFrame:
    return read_table(source / f"{name}.parquet" if source.is_dir() else source)


def _figure(args: argparse.Namespace) -> int:
    frames = [_table(Path(s), "probes_layers") for s in args.sources]
    table = pd.concat(frames, ignore_index=True)
    several = table["variant"].nunique() > 1
    poolings = sorted(table["pooling"].dropna().unique())
    fig, axes = plt.subplots(1, len(poolings), figsize=(5.2 * len(poolings), 3.8), squeeze=False, sharey=True)
    for ax, pooling in zip(axes[0], poolings):
        curves = depth_curves(table, target=None if not several else args.target, pooling=pooling)
        plot_depth_curves(curves, hue="variant" if several else "subset", ax=ax, title=f"{pooling} pooling")
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=args.dpi)
    print(f"wrote {args.out}")
    if args.heads_out:
        heads = pd.concat([_table(Path(s), "probes_heads") for s in args.sources], ignore_index=True)
        keys = list(heads[["variant", "pooling"]].drop_duplicates().itertuples(index=False))
        fig, axes = plt.subplots(1, len(keys), figsize=(6 * len(keys), 3.8), squeeze=False)
        for ax, (variant, pooling) in zip(axes[0], keys):
            plot_head_map(
                head_map(heads, variant=variant, target=args.target, pooling=pooling),
                ax=ax,
                title=f"{variant}: {args.target} probe per head ({pooling})",
            )
        fig.tight_layout()
        fig.savefig(args.heads_out, dpi=args.dpi)
        print(f"wrote {args.heads_out}")
    return 0


def _cell(value: float, lo: float, hi: float) -> str:
    return f"{value:.3f}" if pd.isna(lo) else f"{value:.3f} [{lo:.3f}, {hi:.3f}]"


def markdown(frame: pd.DataFrame) -> str:
    """A frame as a GitHub Markdown table (index dropped; no extra dependency)."""
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * frame.shape[1]]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def markdown_tables(source: Path) -> str:
    """The tables of a ``run`` folder as Markdown: one per pooling (gender metrics, label accuracy, control task),
    then erasure (probe accuracy before / after per erased layer) and the five best heads per pooling."""
    layers = _table(source, "probes_layers")
    control = _table(source, "probes_control") if (source / "probes_control.parquet").exists() else None
    parts = []
    for (variant, pooling), rows in layers.groupby(["variant", "pooling"]):
        out = pd.DataFrame({"layer": sorted(rows["layer"].unique())})
        columns = [
            ("gender", "probe_accuracy", "gender acc"),
            ("gender", "probe_balanced_accuracy", "gender bal. acc"),
            ("gender", "probe_auc", "gender AUC"),
            ("label", "probe_accuracy", "label acc"),
            ("label", "probe_balanced_accuracy", "label bal. acc"),
        ]
        pieces = [(rows, subset, metric, name) for subset, metric, name in columns]
        if control is not None:
            ctrl = control[(control["variant"] == variant) & (control["pooling"] == pooling)]
            pieces += [
                (ctrl, "gender", "control_accuracy", "control acc"),
                (ctrl, "gender", "selectivity", "selectivity"),
            ]
        for frame, subset, metric, name in pieces:
            part = frame[(frame["subset"] == subset) & (frame["metric"] == metric)].set_index("layer")
            if not part.empty:
                out[name] = [_cell(*part.loc[k, ["value", "ci_low", "ci_high"]]) for k in out["layer"]]
        chance = rows[rows["metric"] == "probe_accuracy"].groupby("subset")["chance"].first()
        if control is not None:
            chance["control"] = ctrl[ctrl["metric"] == "control_accuracy"]["chance"].iloc[0]
        note = ", ".join(f"{k} {v:.3f}" for k, v in chance.items())
        sizes = ", ".join(f"{k} {int(v)}" for k, v in rows.groupby("subset")["n"].max().items())
        parts.append(
            f"**{variant}, {pooling} pooling** (examples: {sizes}; chance accuracy: {note}; "
            "balanced-accuracy chance = 1 / classes, AUC chance = 0.5)\n\n" + markdown(out)
        )
    if (source / "erasure.parquet").exists():
        erasure = _table(source, "erasure")
        probes = erasure[(erasure["unit"] == "layer") & (erasure["metric"] == "probe_accuracy")]
        wide = probes.pivot_table(
            index=["erased_layer", "pooling", "subset", "layer"],
            columns="condition",
            values=["value", "ci_low", "ci_high", "chance"],
            aggfunc="first",
        ).reset_index()
        out = pd.DataFrame(
            {
                "erased layer": wide["erased_layer"],
                "pooling": wide["pooling"],
                "target": wide["subset"],
                "probed layer": wide["layer"],
                "before": [
                    _cell(*wide.loc[i, [(c, "before") for c in ("value", "ci_low", "ci_high")]]) for i in wide.index
                ],
                "after": [
                    _cell(*wide.loc[i, [(c, "after") for c in ("value", "ci_low", "ci_high")]]) for i in wide.index
                ],
                "change": [f"{d:+.3f}" for d in wide[("value", "after")] - wide[("value", "before")]],
                "chance": [f"{c:.3f}" for c in wide[("chance", "before")]],
            }
        )
        models = erasure[erasure["unit"] == "model"]
        parts.append("**erasure** (probe accuracy before / after LEACE erasure of gender)\n\n" + markdown(out))
        if not models.empty:
            cells = models.pivot_table(index="metric", columns="condition", values="value", aggfunc="first")
            parts.append("**erasure, model rows**\n\n" + markdown(cells.reset_index()))
    if (source / "probes_heads.parquet").exists():
        heads = _table(source, "probes_heads")
        acc = heads[(heads["metric"] == "probe_accuracy")]
        top = acc.sort_values("value", ascending=False).groupby(["variant", "pooling"]).head(5)
        out = pd.DataFrame(
            {
                "variant": top["variant"],
                "pooling": top["pooling"],
                "block": top["layer"],
                "head": top["head"],
                "gender acc": [_cell(*r) for r in top[["value", "ci_low", "ci_high"]].to_numpy()],
            }
        )
        spread = acc.groupby("pooling")["value"].agg(["min", "median", "max"])
        note = "; ".join(
            f"{p}: min {r['min']:.3f}, median {r['median']:.3f}, max {r['max']:.3f}" for p, r in spread.iterrows()
        )
        parts.append(
            f"**top heads** (gender probe on each head's pooled output; all heads: {note})\n\n"
            + markdown(out.sort_values(["variant", "pooling"], kind="stable"))
        )
    return "\n\n".join(parts)


def _print_tables(args: argparse.Namespace) -> int:
    print(markdown_tables(Path(args.source)))
    return 0


def main(argv: list[str] | None = None, *, prog: str = "bias-atlas probe") -> int:
    """Entry point of ``bias-atlas probe run|figure|table``; returns the exit code."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="probe one model on one task and write tidy tables")
    run.add_argument("--model", required=True, help="hub name, save_pretrained folder, or 'minilm'")
    run.add_argument("--data", required=True, help=f"one of {', '.join(_NAMED_DATA)}, or a table file / folder")
    run.add_argument(
        "--head",
        default="encoder",
        choices=("encoder", "classifier", "mlm"),
        help="classifier adds task and bias rows to the erasure table",
    )
    run.add_argument("--n", type=int, default=2000, help="examples to probe (seeded subsample; 0 = all)")
    run.add_argument("--pooling", default="cls,mean", help="comma-separated: cls, mean")
    run.add_argument("--folds", type=int, default=5)
    run.add_argument("--erase", default="", help="comma-separated layers to erase gender at (0 = embeddings)")
    run.add_argument("--fit-on", default="tokens", choices=("tokens", "cls", "mean"))
    run.add_argument("--no-heads", action="store_true")
    run.add_argument("--no-label", action="store_true")
    run.add_argument("--no-control", action="store_true")
    run.add_argument("--no-balance", action="store_true", help="keep the gender imbalance of each class")
    run.add_argument("--mdl", action="store_true", help="also compute the online-code MDL of gender")
    run.add_argument("--variant", default=None, help="name written to the tables (default: the model's name)")
    run.add_argument("--out", default=None, help="output folder (default runs/probes-VARIANT)")
    run.add_argument("--cache-dir", default=None, help="representation cache (default ~/.cache/bias-atlas/reps)")
    run.add_argument("--batch-size", type=int, default=32)
    run.add_argument(
        "--max-length", type=int, default=None, help="tokens per text (default: 128, or the model's limit when smaller)"
    )
    run.add_argument("--device", default=None)
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--text-col", default="text")
    run.add_argument("--label-col", default="label")
    run.add_argument("--label-map", help="HEAD=DATA,...: --head classifier: the data class of each head class")
    run.add_argument("--gender-col", default="gender")
    fig = sub.add_parser("figure", help="draw probe curves (and head maps) from run outputs")
    fig.add_argument("sources", nargs="+", help="folders written by 'run' or probes_layers tables")
    fig.add_argument("--out", required=True, help="image file for the depth curves (.png, .pdf, .svg)")
    fig.add_argument("--heads-out", default=None, help="image file for the head maps")
    fig.add_argument("--target", default="gender", help="target drawn when comparing variants and in head maps")
    fig.add_argument("--dpi", type=int, default=150)
    tab = sub.add_parser("table", help="print a run folder's tables as Markdown")
    tab.add_argument("source", help="folder written by 'run'")
    args = parser.parse_args(argv)
    if args.command == "run" and args.n == 0:
        args.n = None
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return {"run": _run, "figure": _figure, "table": _print_tables}[args.command](args)
