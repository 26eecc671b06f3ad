"""``bias-atlas``: the one command line of the tool (``bias-atlas --help`` lists every subcommand).

Each subcommand is a row of :data:`COMMANDS`: the module that implements it (imported only when used, so
``bias-atlas --help`` and ``bias-atlas view`` do not load torch) and the words put before its arguments. The
``python -m pipeline|attribution|probes|pipeline.metrics`` forms are thin aliases of this one. Every subcommand
shares one error style: bad input prints ``error: <what is wrong and the fix>`` and exits with status 2, never a
traceback.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import import_module

from pipeline.method_registry import methods

__all__ = ["COMMANDS", "Command", "commands", "main"]


@dataclass(frozen=True)
class Command:
    """A subcommand: ``module.main(prefix + argv, prog=...)`` runs it."""

    module: str
    help: str
    prefix: tuple[str, ...] = ()


COMMANDS: dict[str, Command] = {
    "run": Command(
        "pipeline.cli.run_commands", "build every variant of a TOML config, measure it, write the run folder", ("run",)
    ),
    "validate": Command(
        "pipeline.cli.run_commands",
        "check a config (and its data, teacher, variants) without running it",
        ("validate",),
    ),
    "plan": Command("pipeline.cli.run_commands", "print the variants a config builds, in build order", ("plan",)),
    "verify": Command(
        "pipeline.cli.run_commands", "check every unit of a run folder against its recorded hashes", ("verify",)
    ),
    "metrics": Command(
        "pipeline.metrics.cli", "bias benchmarks of one model: seat | crows | stereoset | winobias | winogender | all"
    ),
    "ablate": Command("attribution.cli", "head ablation (single, layer, leave-one-in, cumulative)", ("ablate",)),
    "importance": Command("attribution.cli", "gradient head importance (Michel et al. 2019)", ("importance",)),
    "ig": Command("attribution.cli", "integrated gradients over heads, neurons or tokens (captum)", ("ig",)),
    "patch": Command("attribution.cli", "activation patching of heads (Vig et al. 2020)", ("patch",)),
    "probe": Command("probes.cli", "layer and head probes of one model: run | figure | table"),
    "report": Command(
        "pipeline.report.run_report", "write RUN/report/index.html and report.md: the answers to the research questions"
    ),
    "figures": Command("pipeline.figures.run_figures", "write the publication figures of a run folder"),
    "view": Command("pipeline.viewer.serve", "start the Streamlit viewer on a runs folder"),
}


def commands() -> dict[str, Command]:
    """:data:`COMMANDS` and the command of every registered attribution method that has one (plug-ins)."""
    extra = {m.command[0]: Command("attribution.cli", m.command[1], (m.command[0],)) for m in methods() if m.command}
    return {**COMMANDS, **extra}


def _usage() -> str:
    everything = commands()
    width = max(map(len, everything))
    lines = [f"  {name:<{width}}  {cmd.help}" for name, cmd in everything.items()]
    return (
        "usage: bias-atlas COMMAND [options]   (bias-atlas COMMAND --help for its options)\n\n"
        "Locate gender bias inside BERT-family models and see how compression and fine-tuning move it.\n\n"
        "commands:\n" + "\n".join(lines)
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``bias-atlas ARGV``; returns the exit code (2 for bad input, with a one-line ``error:`` message)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    known = commands()
    if name not in known:
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" Did you mean `{close[0]}`?" if close else ""
        print(f"error: unknown command {name!r}.{hint} Commands: {', '.join(known)}.", file=sys.stderr)
        return 2
    command = known[name]
    try:
        return import_module(command.module).main([*command.prefix, *rest], prog=f"bias-atlas {name}")
    except SystemExit as stop:  # argparse (already printed) or a command's own message
        if stop.code is None or isinstance(stop.code, int):
            return int(stop.code or 0)
        print(f"error: {stop.code}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
