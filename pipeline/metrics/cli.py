"""``bias-atlas metrics FAMILY --model NAME_OR_DIR``: the intrinsic bias benchmarks of one model, a one-liner.

``seat`` prints the SEAT effect size d and permutation p-value of the 12 gender tests (6, 6b, 7, 7b, 8, 8b in word
and sentence form) under each pooling; ``crows``, ``stereoset``, ``winobias`` and ``winogender`` need a trained
masked-LM head that beats the unigram baseline of :mod:`pipeline.metrics.mlm_check` (a model without one prints
the reason, e.g. the TinyBERT general checkpoints, whose ``cls.*`` weights were never trained as an LM head;
``--mlm-head-check report`` scores such a head anyway); ``all`` runs every one of them. Each prints the
published procedure it follows (docs/METRICS.md) above its numbers and can write the tidy rows with ``--out``.
``--bias-type race-color,religion`` reports those bias types of a family whose registry record lists them
(``subsets``; CrowS-Pairs: all nine types) instead of its default subset.
"""

from __future__ import annotations

import argparse
import logging
import sys

import pandas as pd

from pipeline.cli_checks import check_n_boot
from pipeline.metrics.config import BiasMetricsConfig
from pipeline.metrics.evaluate import FAMILIES, Inputs, family_frame, skip_reason
from pipeline.metrics.seat import SEAT_POOLINGS
from pipeline.models import load_model
from pipeline.schema import write_table
from pipeline.untrained import untrained_reason

__all__ = ["main"]


def _intrinsic() -> tuple[str, ...]:
    """The registered families a model alone can be scored on (no task data): intrinsic ones, plug-ins included."""
    return tuple(name for name, f in FAMILIES.items() if f.intrinsic)


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("family", choices=(*_intrinsic(), "all"), help="benchmark to run")
    parser.add_argument("--model", default="minilm", help="hub name, model folder or 'minilm' (default)")
    parser.add_argument("--pooling", default="cls,mean", help=f"SEAT: comma-separated, of {', '.join(SEAT_POOLINGS)}")
    parser.add_argument("--form", default="both", choices=("word", "sentence", "both"), help="SEAT test form")
    parser.add_argument("--layer", type=int, default=-1, help="SEAT hidden state: -1 last block, 0 embeddings")
    parser.add_argument("--n-samples", type=int, default=100_000, help="SEAT: random partitions for sampled p-values")
    parser.add_argument("--max-examples", type=int, default=None, help="score at most this many items (seeded)")
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for the intervals")
    parser.add_argument("--seed", type=int, default=0, help="seed of permutation sampling, bootstrap, draws")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--data-root", default=None, help="folder of the shared benchmark data")
    parser.add_argument("--bias-type", default=None, help="comma-separated bias types to report (CrowS-Pairs)")
    parser.add_argument(
        "--mlm-head-check",
        default="require",
        choices=("require", "report"),
        help="skip the MLM benchmarks of a head that fails the usability check (require), or score "
        "them anyway (report)",
    )
    parser.add_argument("--out", help="also write the tidy rows here (.csv or .parquet)")
    return parser


def _config(args: argparse.Namespace, families: tuple[str, ...]) -> BiasMetricsConfig:
    poolings = tuple(p.strip() for p in args.pooling.split(",") if p.strip())
    bad = [p for p in poolings if p not in SEAT_POOLINGS]
    if bad or not poolings:
        raise SystemExit(f"--pooling {args.pooling!r}: use a comma-separated list of {', '.join(SEAT_POOLINGS)}.")
    check_n_boot(args.n_boot, zero="no intervals")
    for option in ("n_samples", "batch_size", "max_examples"):
        value = getattr(args, option)
        if value is not None and value < 1:
            raise SystemExit(f"--{option.replace('_', '-')} {value}: give a positive number.")
    return BiasMetricsConfig(
        metrics=families,
        **_bias_types(args.bias_type, families),
        poolings=poolings,
        seat_form=args.form,
        seat_layer=args.layer,
        seat_n_samples=args.n_samples,
        max_examples=args.max_examples,
        n_boot=args.n_boot,
        seed=args.seed,
        batch_size=args.batch_size,
        data_root=args.data_root,
        mlm_head_check=args.mlm_head_check,
    )


def _bias_types(option: str | None, families: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """The config field of ``--bias-type`` (empty when not given), checked against the records' ``subsets``."""
    if option is None:
        return {}
    kinds = tuple(k.strip() for k in option.split(",") if k.strip())
    known = FAMILIES["crows"].subsets
    if "crows" not in families:
        raise SystemExit(f"--bias-type applies to crows only, not to {', '.join(families)}.")
    bad = [k for k in kinds if k not in known]
    if bad or not kinds or len(set(kinds)) != len(kinds):
        raise SystemExit(f"--bias-type {option!r}: use distinct comma-separated names of {', '.join(known)}.")
    return {"crows_bias_types": kinds}


def _print_seat(table: pd.DataFrame, args: argparse.Namespace) -> None:
    wide = table.pivot_table(index=["subset", "pooling"], columns="metric", values="value", sort=False)
    ci = table[table.metric == "seat_effect_size"].set_index(["subset", "pooling"])[["ci_low", "ci_high", "n"]]
    wide = wide.join(ci).reset_index()
    wide.columns = ["test", "pooling", "d", "p", "d_ci_low", "d_ci_high", "n_targets"]
    print(f"SEAT gender tests on {args.model!r} (layer {args.layer}; d: effect size, p: one-sided permutation p-value)")
    print(wide.to_string(index=False, float_format=lambda v: f"{v:.3f}", formatters={"p": lambda v: f"{v:.5f}"}))


def _print_rows(table: pd.DataFrame) -> None:
    columns = [c for c in ("metric", "subset", "value", "ci_low", "ci_high", "n", "skipped") if c in table]
    shown = table[columns].copy()
    if "skipped" in shown and not shown["skipped"].astype(bool).any():
        shown = shown.drop(columns="skipped")
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


def main(argv: list[str] | None = None, *, prog: str = "bias-atlas metrics") -> int:
    """Entry point of ``bias-atlas metrics FAMILY``; returns the exit code."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = _parser(prog).parse_args(argv)
    families = _intrinsic() if args.family == "all" else (args.family,)
    cfg = _config(args, families)
    frames, warned = [], False
    for head in ("encoder", "mlm"):  # SEAT reads the encoder; the masked-LM benchmarks need the MLM head
        wanted = [FAMILIES[f] for f in families if (FAMILIES[f].needs == "mlm") == (head == "mlm")]
        if not wanted:
            continue
        inputs = Inputs(load_model(args.model, head=head), cfg)
        untrained = untrained_reason(inputs.loaded.model)
        if untrained and not warned:  # once per model (the encoder and the MLM model share the encoder)
            print(f"warning: {args.model}: {untrained}", file=sys.stderr)
            warned = True
        for family in wanted:
            reason = skip_reason(family, inputs)
            print(f"\n== {family.name}: {family.procedure}" + (f"\n   skipped: {reason}" if reason else ""))
            if family.needs == "mlm" and inputs.mlm_check is not None:
                check = inputs.mlm_check
                print(
                    f"   MLM head check: top-1 {check.top1:.3f} vs unigram baseline {check.baseline:.3f} "
                    f"({'passed' if check.passed else 'failed'})"
                )
            table = family_frame(family, inputs)
            table["variant"] = args.model
            frames.append(table)
            if not reason:
                _print_seat(table, args) if family.name == "seat" else _print_rows(table)
    if args.out:
        rows = pd.concat(frames, ignore_index=True)
        write_table(rows, args.out)
        print(f"wrote {len(rows)} rows to {args.out}")
    return 0
