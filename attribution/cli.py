"""Command line: the head-ablation scripts, usable on any model folder or hub name without a pipeline run.

    bias-atlas ablate     --model NAME_OR_DIR --data bug --score cf_gap --n 64 --out ablation.parquet
    bias-atlas importance --model NAME_OR_DIR --data bug --score loss
    bias-atlas ig         --model NAME_OR_DIR --data winobias --score pronoun_gap --over neurons
    bias-atlas patch      --model NAME_OR_DIR --data bug --score prob --engine lens

``--data`` is ``bug``, ``bias_in_bios`` (the offline sample), ``winobias``, ``winogender``, ``seat`` /
``seat:<test>`` (e.g. ``seat:sent-weat6``) or a table file (``--text-col``, ``--label-col``, ``--gender-col``).
``--score`` is ``loss``, ``prob``, ``cf_gap``, ``cf_skew_gap`` (the gap times each class's gender skew in
``--data``), ``pronoun_gap`` or ``seat``; the model is loaded with the head the
score needs (classifier, mlm, encoder). A trained classifier head keeps its classes: the data's labels are mapped
onto them by name and rows of other classes are dropped (logged). Each command writes a tidy table (parquet, or
CSV by suffix) and prints the top-k units by |value|. Bad arguments stop with ``error: ...`` (exit status 2).

Under ``accelerate launch`` the single-head sweep (``ablate --mode single``) is split by heads, ``ig`` and
``patch`` by examples; the main process merges the shards into the table one process writes
(:mod:`attribution.shard`)::

    accelerate launch --multi_gpu --num_processes 2 -m attribution ig --model NAME_OR_DIR --out ig.parquet
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
import torch

from attribution import shard as sharding
from attribution.ablation import HeadAblation
from attribution.analysis import AttributionJob, patching_score
from attribution.atp import AttributionPatching
from attribution.config import AttributionConfig
from attribution.data import AttributionData
from attribution.errors import GateIndependentScoreError
from attribution.ig import HeadIntegratedGradients, NeuronIntegratedGradients, TokenIntegratedGradients
from attribution.importance import GradientHeadImportance
from attribution.patching import ActivationPatching
from attribution.scores import SCORES, Score, SkewGap, make_score
from pipeline.class_map import load_classifier_for
from pipeline.cli_checks import DATA_HINTS, check_n_boot, check_range, for_command_line, parse_label_map
from pipeline.data import SeatTest, TaskData, load_seat, load_winobias_all, load_winogender
from pipeline.data.sampling import seeded_rows
from pipeline.data.tasks import TASK_NAMES, load_task
from pipeline.method_registry import AttributionMethod, methods
from pipeline.metrics.counterfactual import skew_orientation
from pipeline.models import check_max_length, load_model, load_model_config, resolve_source
from pipeline.schema import read_table, write_table
from pipeline.untrained import untrained_reason

_HEAD_OF_SCORE = {"loss": "classifier", "prob": "classifier", "cf_gap": "classifier", "cf_skew_gap": "classifier",
                  "pronoun_gap": "mlm", "seat": "encoder"}  # fmt: skip
_DATA_OF_SCORE = {"loss": "bug", "prob": "bug", "cf_gap": "bug", "cf_skew_gap": "bug", "pronoun_gap": "winobias",
                  "seat": "seat"}  # fmt: skip
_MAIN_METRIC = {"ablate": "delta_score", "importance": "grad_importance", "ig": "ig", "patch": "indirect_effect"}


def _parser(prog: str = "bias-atlas") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--model", required=True, help="hub name, model folder, or 'minilm'")
    common.add_argument("--data", help="bug | bias_in_bios | winobias | winogender | seat[:test] | table file "
                                       "(default: the score's usual data)")  # fmt: skip
    common.add_argument("--score", default="cf_gap", choices=sorted(SCORES), help="what to explain")
    common.add_argument("--pooling", default="mean", choices=("mean", "cls"), help="SEAT pooling")
    common.add_argument("--n", type=int, default=64, help="examples drawn (seeded); 0 = all")
    common.add_argument("--out", type=Path, help="output table (.parquet or .csv)")
    common.add_argument("--top-k", type=int, default=10, help="units printed")
    common.add_argument("--batch-size", type=int, default=32, help="rows per forward pass")
    common.add_argument("--n-boot", type=int, default=200, help="bootstrap resamples")
    common.add_argument("--seed", type=int, default=0)
    common.add_argument(
        "--max-length", type=int, default=None, help="tokens per text (default: 128, or the model's limit when smaller)"
    )
    common.add_argument("--device", default=None, help="cpu, cuda, ... (default: cpu)")
    common.add_argument("--text-col", default="text")
    common.add_argument("--label-col", default="label")
    common.add_argument("--gender-col", default="gender")
    common.add_argument(
        "--label-map",
        help="HEAD=DATA,...: the data class of each class of a trained head whose names are not the data's",
    )
    screen = argparse.ArgumentParser(add_help=False)
    screen.add_argument(
        "--screen",
        type=int,
        default=None,
        metavar="K",
        help="attribution patching: estimate every head and FFN neuron from one backward pass on half of the "
        "examples, then re-measure the 2K of each kind with the largest estimates exactly on the other half (a screen "
        "can miss one of the true top K; table columns value = estimate, exact)",
    )
    screen.add_argument("--units", default="head,neuron", help="with --screen: head, neuron or head,neuron")
    ablate = sub.add_parser("ablate", parents=[common, screen], help="head ablation")
    ablate.add_argument("--mode", default="single", choices=("single", "layer", "leave_one_in", "cumulative"))
    ablate.add_argument("--baseline", default="zero", choices=("zero", "mean"))
    ablate.add_argument("--order", type=Path, help="cumulative: importance table (default: gradient importance)")
    ablate.add_argument("--least-first", action="store_true", help="cumulative: remove the least important first")
    ablate.add_argument("--slow", action="store_true", help="single: naive loop instead of the prefix-cached sweep")
    sub.add_parser("importance", parents=[common], help="gradient head importance (Michel et al. 2019)")
    ig = sub.add_parser("ig", parents=[common], help="integrated gradients")
    ig.add_argument("--over", default="heads", choices=("heads", "neurons", "tokens"))
    ig.add_argument("--steps", type=int, default=32, help="integration steps")
    ig.add_argument("--baseline", default="zero", choices=("zero", "mean"), help="heads, neurons: the gate's baseline")
    ig.add_argument("--token-baseline", default="twin", choices=("twin", "padding"),
                    help="tokens: from the gender-swapped twin (the bias: sums to each example's gap; pairs of "
                    "unequal token length left out) or from padding (the prediction)")  # fmt: skip
    patch = sub.add_parser("patch", parents=[common, screen], help="activation patching (Vig et al. 2020)")
    patch.add_argument("--engine", default="gates", choices=("gates", "lens"))
    for method in _plugin_commands().values():  # a registered method's own command (pipeline.method_registry)
        sub.add_parser(method.command[0], parents=[common], help=method.command[1])
    return parser


def _plugin_commands() -> dict[str, AttributionMethod]:
    """Command name -> the registered method that has its own command (plug-ins)."""
    return {m.command[0]: m for m in methods() if m.command}


def _check_args(args: argparse.Namespace) -> None:
    """Stop with a message naming the option for a value no command can use (``--max-length`` is checked against
    the model's limit once its config is read)."""
    check_range("--n", args.n, low=0, what="examples drawn; 0 = all")
    check_range("--batch-size", args.batch_size, low=1, what="rows per forward pass")
    check_n_boot(args.n_boot)
    check_range("--top-k", args.top_k, low=1, what="units printed")
    check_range("--seed", args.seed, low=0)
    if args.command == "ig":
        check_range("--steps", args.steps, low=1, what="integration steps; 32 is usual")
    if getattr(args, "screen", None) is not None:
        check_range("--screen", args.screen, low=0, what="units of each kind confirmed exactly")
        units = [u.strip() for u in args.units.split(",") if u.strip()]
        if not units or set(units) - {"head", "neuron"}:
            raise SystemExit(f"--units {args.units!r}: give head, neuron or head,neuron.")


def _load_source(args: argparse.Namespace) -> TaskData | SeatTest | list:
    """The raw examples named by ``--data``: a task (all rows; drawn by :func:`_draw` once its labels are mapped
    onto the model's), a SEAT test, or WinoBias / Winogender items (``--n`` drawn)."""
    name = args.data or _DATA_OF_SCORE[args.score]
    if name in ("winobias", "winogender"):
        items = list(load_winobias_all() if name == "winobias" else load_winogender())
        if args.n and args.n < len(items):
            items = [items[i] for i in seeded_rows(len(items), args.n, args.seed)]
        return items
    if name == "seat" or name.startswith("seat:"):
        return load_seat(name.partition(":")[2] or "weat6")
    try:
        return load_task(name, text_col=args.text_col, label_col=args.label_col, gender_col=args.gender_col)
    except FileNotFoundError:
        raise SystemExit(
            f"--data {name!r}: not a known dataset ({', '.join(TASK_NAMES)}, winobias, winogender, "
            "seat[:test]) and not an existing table file."
        ) from None


def _draw(task: TaskData, args: argparse.Namespace) -> TaskData:
    """``--n`` rows of ``task`` drawn with ``--seed`` (all when ``--n`` is 0 or at least the size)."""
    return task.subset(seeded_rows(len(task), args.n, args.seed))


def _attribution_data(loaded, source, name: str, twins: bool, max_length: int) -> AttributionData:
    if isinstance(source, TaskData):
        return AttributionData.from_task(loaded, source, counterfactual_twins=twins, max_length=max_length)
    if isinstance(source, SeatTest):
        return AttributionData.from_seat(loaded, source, max_length=max_length)
    return AttributionData.from_pronouns(loaded, source, name=name, max_length=max_length)


def _sharded(args: argparse.Namespace) -> bool:
    """Whether the command can be split over processes (:mod:`attribution.shard`)."""
    if getattr(args, "screen", None) is not None:
        return False
    return args.command in ("ig", "patch") or (args.command == "ablate" and args.mode == "single")


def _run(
    args: argparse.Namespace, loaded, score: Score, data: AttributionData, shard: sharding.Shard
) -> pd.DataFrame | None:
    """The command's table; None on a process other than the main one of a sharded run."""
    common = {"batch_size": args.batch_size}
    boot = {"n_boot": args.n_boot, "seed": args.seed}
    plugin = _plugin_commands().get(args.command)
    if plugin is not None:  # a registered method: its runner on a job of these settings
        cfg = AttributionConfig(batch_size=args.batch_size, n_boot=args.n_boot, seed=args.seed, n_examples=0)
        return plugin.runner()(AttributionJob(loaded, score, data, cfg))
    if getattr(args, "screen", None) is not None:  # screen every unit, confirm the top ones (attribution.atp)
        baseline = "counterfactual" if args.command == "patch" else args.baseline
        units = tuple(u.strip() for u in args.units.split(",") if u.strip())
        return AttributionPatching(loaded, score, baseline=baseline).attribute(
            data, units=units, confirm_top=2 * args.screen, progress=True, **common, **boot
        )
    if args.command == "ablate" and args.mode == "single":
        return sharding.sweep(HeadAblation(loaded, score), data, args.out, shard, baseline=args.baseline,
                              fast=not args.slow, **common, **boot)  # fmt: skip
    if args.command == "ablate":
        order = None
        if args.mode == "cumulative":
            order = (
                read_table(args.order)
                if args.order
                else GradientHeadImportance(loaded, score).attribute(data, **common, **boot)
            )
            order = order[order["metric"] == ("grad_importance" if "grad_importance" in set(order["metric"])
                                              else "delta_score")]  # fmt: skip
        return HeadAblation(loaded, score).attribute(data, mode=args.mode, baseline=args.baseline, order=order,
                                                     most_first=not args.least_first, **common, **boot)  # fmt: skip
    if args.command == "importance":
        return GradientHeadImportance(loaded, score).attribute(data, **common, **boot)
    if args.command == "ig":
        if args.over == "tokens":  # pairs left out before the split, so every share counts them all
            method = TokenIntegratedGradients(loaded, score, baseline=args.token_baseline)
            pairs, dropped = method.pairs(data)
            return sharding.token_ig(method, pairs, args.out, shard, n_steps=args.steps, dropped=dropped,
                                     **common)  # fmt: skip
        method = HeadIntegratedGradients if args.over == "heads" else NeuronIntegratedGradients
        return sharding.integrated_gradients(method(loaded, score), data, args.out, shard, n_steps=args.steps,
                                             baseline=args.baseline, **common, **boot)  # fmt: skip
    return sharding.patching(ActivationPatching(loaded, score, engine=args.engine), data, args.out, shard, **common,
                             **boot)  # fmt: skip


def main(argv: list[str] | None = None, *, prog: str = "bias-atlas") -> int:
    """Entry point of ``ablate``, ``importance``, ``ig`` and ``patch`` (``argv[0]``); returns the exit code."""
    args = _parser(prog).parse_args(argv)
    _check_args(args)
    if args.command == "patch" and args.score == "cf_gap":
        print(
            "patch: the counterfactual gap is the total effect of patching; explaining the true-class "
            "probability (--score prob) instead.",
            file=sys.stderr,
        )
        args.score = "prob"
    shard, device = sharding.current_shard(args.device)
    if shard.world > 1 and not (_sharded(args) and args.out):
        raise SystemExit(
            f"{args.command}: a run under accelerate launch needs --out (shards are written next to it) "
            "and one of ablate --mode single, ig, patch; run other commands in one process."
        )
    skew = args.score == "cf_skew_gap"  # its orientation is the gender skew of each class in the whole --data
    options = {"pooling": args.pooling} if args.score == "seat" else {}
    score = SkewGap([0.0]) if skew else make_score(args.score, **options)  # oriented once the data is read
    token_twin = args.command == "ig" and args.over == "tokens" and args.token_baseline == "twin"
    twins = "cf" in score.views or args.command == "patch" or token_twin
    head = _HEAD_OF_SCORE[args.score]
    try:
        source = _load_source(args)
    except ValueError as err:  # a table the loader refuses: its fix hint, in this command's options
        raise SystemExit(for_command_line(str(err), DATA_HINTS)) from None
    args.max_length = check_max_length(
        args.max_length, load_model_config(resolve_source(args.model)), option="--max-length"
    )
    label_map = parse_label_map(args.label_map)
    torch.manual_seed(args.seed)  # a head missing from the checkpoint starts random: the same in every process
    if head == "classifier" and isinstance(source, TaskData):  # a trained head's classes, matched by name
        loaded, source = load_classifier_for(args.model, source, label_map, device=device)
    elif label_map:
        data = args.data or _DATA_OF_SCORE[args.score]
        raise SystemExit(f"--label-map: --score {args.score} on --data {data} reads no classes. Fix: drop it.")
    else:
        loaded = load_model(args.model, head=head, device=device)
    if isinstance(source, TaskData):
        if skew:
            score = SkewGap(skew_orientation(source))
            score = patching_score(score) if args.command == "patch" else score
        source = _draw(source, args)
    untrained = untrained_reason(loaded.model)
    if untrained and shard.rank == 0:
        print(f"warning: {args.model}: {untrained}", file=sys.stderr)
    data = _attribution_data(loaded, source, args.data or _DATA_OF_SCORE[args.score], twins, args.max_length)
    try:
        frame = _run(args, loaded, score, data, shard)
    except GateIndependentScoreError as err:
        print(f"{args.command}: {err}", file=sys.stderr)
        return 2
    if frame is None:  # a sharded run's other process: the main process writes the table
        return 0
    frame["variant"] = str(args.model)
    if args.out:
        print(f"wrote {write_table(frame, args.out)}", file=sys.stderr)
    main = {**_MAIN_METRIC, **{name: m.main_metric for name, m in _plugin_commands().items()}}
    metric = "token_ig" if args.command == "ig" and args.over == "tokens" else main[args.command]
    screened = getattr(args, "screen", None) is not None
    metric = "atp_estimate" if screened else metric
    rows = frame[frame["metric"] == metric]
    key = rows["exact"].abs().fillna(-1) if screened else rows["value"].abs()  # screen: confirmed units by |exact|
    top = rows.assign(key=key).nlargest(args.top_k, "key")
    columns = [
        c for c in ("unit", "layer", "head", "token", "example", "value", "ci_low", "ci_high", "exact", "q") if c in top
    ]
    label = "exact effect among the confirmed" if screened else metric
    what = f"{score!r}" + (f" from {args.token_baseline}" if args.command == "ig" and args.over == "tokens" else "")
    print(f"top {args.top_k} by |{label}| ({what}, {len(data)} examples):")
    print(top[columns].to_string(index=False))
    return 0
