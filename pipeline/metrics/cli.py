"""Command line for the bias metrics.

``bias-atlas metrics seat --model minilm [--pooling cls,mean] [--out file.csv]`` prints the SEAT effect
size d and permutation p-value of the 12 gender tests (6, 6b, 7, 7b, 8, 8b in word and sentence form) under each
pooling, and optionally writes the tidy rows (May et al. 2019; see docs/METRICS.md).
"""

from __future__ import annotations

import argparse
import logging
import sys

from pipeline.data import load_gender_seat_tests
from pipeline.metrics.seat import seat_metrics
from pipeline.models import load_model
from pipeline.schema import write_table


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    seat = sub.add_parser("seat", help="SEAT effect sizes of the 12 gender tests")
    seat.add_argument("--model", default="minilm", help="hub name, model folder or 'minilm' (default)")
    seat.add_argument("--pooling", default="cls,mean", help="comma-separated: cls, mean (default both)")
    seat.add_argument("--form", default="both", choices=("word", "sentence", "both"), help="test form (default both)")
    seat.add_argument("--layer", type=int, default=-1, help="hidden state: -1 last block (default), 0 embeddings")
    seat.add_argument("--n-samples", type=int, default=100_000, help="random partitions for sampled p-values")
    seat.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for the effect-size interval")
    seat.add_argument("--seed", type=int, default=0, help="seed of permutation sampling and bootstrap")
    seat.add_argument("--batch-size", type=int, default=32)
    seat.add_argument("--out", help="also write the tidy rows here (.csv or .parquet)")
    return parser


def _seat(args: argparse.Namespace) -> int:
    poolings = tuple(p.strip() for p in args.pooling.split(",") if p.strip())
    bad = [p for p in poolings if p not in ("cls", "mean")]
    if bad or not poolings:
        raise SystemExit(f"--pooling {args.pooling!r}: use cls, mean or cls,mean.")
    loaded = load_model(args.model, head="encoder")
    table = seat_metrics(loaded, load_gender_seat_tests(args.form), poolings, layer=args.layer,
                         batch_size=args.batch_size, n_samples=args.n_samples, n_boot=args.n_boot,
                         seed=args.seed)  # fmt: skip
    table["variant"] = args.model
    wide = table.pivot_table(index=["subset", "pooling"], columns="metric", values="value", sort=False)
    ci = table[table.metric == "seat_effect_size"].set_index(["subset", "pooling"])[["ci_low", "ci_high", "n"]]
    wide = wide.join(ci).reset_index()
    wide.columns = ["test", "pooling", "d", "p", "d_ci_low", "d_ci_high", "n_targets"]
    print(f"SEAT gender tests on {args.model!r} (layer {args.layer}; d: effect size, p: one-sided permutation p-value)")
    print(wide.to_string(index=False, float_format=lambda v: f"{v:.3f}", formatters={"p": lambda v: f"{v:.5f}"}))
    if args.out:
        write_table(table, args.out)
        print(f"wrote {len(table)} rows to {args.out}")
    return 0


def main(argv: list[str] | None = None, *, prog: str = "bias-atlas metrics") -> int:
    """Entry point of ``bias-atlas metrics FAMILY``; returns the exit code."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = _parser(prog).parse_args(argv)
    return {"seat": _seat}[args.command](args)

