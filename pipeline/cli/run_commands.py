"""``bias-atlas run CONFIG.toml``, ``bias-atlas validate CONFIG.toml`` and ``bias-atlas plan CONFIG.toml``.

``run`` builds every configured model variant, evaluates it and writes the run folder (:mod:`pipeline.runs.run`);
``--dry-run`` prints the variant plan after the early checks, ``--only VARIANT`` (repeatable) restricts the run to
some variants, ``--force STAGE`` (repeatable) recomputes a cached stage. ``validate`` checks the config and
everything :func:`pipeline.runs.run.preflight` can check without building a model. Configuration problems print one
clear message and exit with status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from pipeline.cli.full_run import STAGES, run
from pipeline.files import describe_write_error
from pipeline.models import resolve_source
from pipeline.runs.config import ConfigError, load_config
from pipeline.runs.executors import EXECUTORS, UnitsFailedError
from pipeline.runs.manifest import SOUND, ManifestError, RunLockedError, verify
from pipeline.runs.plan import format_plan, plan_variants
from pipeline.runs.run import preflight
from pipeline.train import TrainingDivergedError


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run_cmd = commands.add_parser("run", help="build, evaluate and write the run folder")
    run_cmd.add_argument("config", help="TOML run config, e.g. configs/demo.toml")
    run_cmd.add_argument("--dry-run", action="store_true", help="print the variant plan and stop")
    run_cmd.add_argument("--executor", choices=EXECUTORS, help="where units run (default: [run] executor, 'local')")
    run_cmd.add_argument("--only", action="append", metavar="VARIANT", help="restrict to this variant (repeatable)")
    run_cmd.add_argument(
        "--force",
        action="append",
        default=[],
        metavar="STAGE",
        choices=[s.name for s in STAGES],
        help="recompute this stage even if cached (repeatable)",
    )
    check = commands.add_parser("validate", help="check a config without running it")
    check.add_argument("config")
    plan = commands.add_parser("plan", help="print the variants a config builds, in build order")
    plan.add_argument("config")
    check_run = commands.add_parser("verify", help="check every unit of a run folder against its recorded hashes")
    check_run.add_argument("run_dir", help="a run folder (runs/<name>)")
    return parser


def _verify(run_dir: str) -> int:
    """Print the state of every stage and unit; exit code 1 when anything is not verifiably sound (``ok``): missing,
    corrupt, unverified (no recorded hash), outside the run folder, failed, started or pending."""
    rows = verify(Path(run_dir))
    width = max(len(f"{r['stage']} {r['unit']}") for r in rows)
    for r in rows:
        print(f"{(r['stage'] + ' ' + r['unit']).strip():<{width}}  {r['state']:<10} {r['detail']}")
    bad = [r for r in rows if r["state"] != SOUND]
    if not bad:
        print(f"{len(rows)} stages and units: all ok.")
        return 0
    states = sorted({r["state"] for r in bad})
    first = " (first delete from manifest.json the units outside the run folder)" if "outside" in states else ""
    print(
        f"{len(rows)} stages and units: {len(rows) - len(bad)} ok, {len(bad)} not sound ({', '.join(states)}); "
        f"`bias-atlas run CONFIG` rebuilds what is missing, corrupt, unverified, failed or unfinished{first}."
    )
    return 1


def _space_needed(cfg) -> int | None:
    """A rough size of the run's models: the teacher's weights once per planned model (students are smaller)."""
    try:
        folder = Path(resolve_source(cfg.teacher.source))
        weights = [*folder.glob("*.safetensors"), *folder.glob("*.bin")] if folder.is_dir() else []
        return sum(f.stat().st_size for f in weights) * len(plan_variants(cfg)) or None
    except (OSError, ImportError, ValueError):
        return None


def main(argv: list[str] | None = None, *, prog: str = "bias-atlas") -> int:
    """Entry point of ``run``, ``validate`` and ``plan`` (``argv[0]``); returns the exit code."""
    args = _parser(prog).parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("pipeline").setLevel(logging.INFO)
    if args.command == "verify":
        return _verify(args.run_dir)
    cfg = None
    try:
        cfg = load_config(args.config)
        if args.command == "plan":
            print(format_plan(plan_variants(cfg)))
            return 0
        if args.command == "validate":
            notes, splits = preflight(cfg)
            for note in notes:
                print(f"note: {note}")
            sizes = "" if splits is None else ", ".join(f"{k} {len(v)}" for k, v in splits.train.items())
            print(f"{args.config}: valid" + (f" (training sets: {sizes}; test {len(splits.test)})" if sizes else ""))
            return 0
        if args.executor:
            cfg = cfg.model_copy(update={"run": cfg.run.model_copy(update={"executor": args.executor})})
        result = run(cfg, config_path=args.config, dry_run=args.dry_run, only=args.only, force=args.force)
    except UnitsFailedError as err:  # not bad input: the run went as far as it could; rerunning resumes
        print(f"error: {err}", file=sys.stderr)
        return 1
    except (ConfigError, FileNotFoundError, ManifestError, RunLockedError, TrainingDivergedError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # disk full, read-only folder, name too long: say so, with the fix
        where = Path(cfg.run.out_dir) / cfg.run.name if cfg is not None else Path(args.config)
        message = describe_write_error(err, where, needed=_space_needed(cfg) if cfg is not None else None)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 2
    if not args.dry_run:
        print(f"run folder: {result.run_dir}")
        print(result.skipped_summary())
    return 0
