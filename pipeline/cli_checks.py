"""Argument checks shared by the command lines (``bias-atlas ablate|importance|ig|patch|probe``).

A bad value stops the command with ``SystemExit("message")``, which ``bias-atlas`` prints as ``error: message``
with exit status 2 (never a traceback); the message names the option, the value and what is allowed. Errors
raised by the library name Python parameters (``text_col=``, ``n_folds``); :func:`for_command_line` rewords them
with the command's own options, so a fix hint never names an option the command does not have.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from pydantic import ValidationError

from pipeline.settings import MIN_BOOT, resamples

__all__ = [
    "DATA_HINTS",
    "MIN_BOOT",
    "check_n_boot",
    "check_range",
    "for_command_line",
    "parse_label_map",
    "settings_error",
]

# Fix hints of the data loaders (pipeline.data) that name Python parameters, as a table-file command puts them.
DATA_HINTS: dict[str, str] = {
    "pass text_col=, label_col= and gender_col=": "pass --text-col, --label-col and --gender-col",
    "pass gender_map={value: 'male' | 'female', ...}": "recode those values in the file as male / female (m / f, 0 / 1)",
    "or pass encoding= with the file's real codec (e.g. encoding='latin-1')": "(this command reads UTF-8 only)",
    ", or pass allow_pickle=True if you trust the file": " (this command never unpickles)",
}


def check_range(option: str, value: int, *, low: int | None = None, high: int | None = None, what: str = "") -> int:
    """``value`` unchanged when ``low <= value <= high`` (a missing bound is open); else SystemExit naming the
    option, the value, the allowed range and ``what`` the option means."""
    if (low is None or value >= low) and (high is None or value <= high):
        return value
    allowed = (
        f"an integer from {low} to {high}"
        if low is not None and high is not None
        else f"an integer >= {low}"
        if low is not None
        else f"an integer <= {high}"
    )
    raise SystemExit(f"{option} {value!r} is out of range: give {allowed}{f' ({what})' if what else ''}.")


def check_n_boot(value: int, *, option: str = "--n-boot", zero: str | None = None) -> int:
    """``value`` when it is at least :data:`MIN_BOOT` (or 0 with ``zero``, what 0 means); else SystemExit with the
    fix."""
    try:
        return resamples(value, option, zero=zero)  # the one rule, shared with the run configs
    except ValueError:
        raise SystemExit(
            f"{option} {value!r} is too few bootstrap resamples: intervals from fewer than {MIN_BOOT} are too coarse "
            f"to trust (a percentile interval can even miss its own estimate). Fix: give "
            f"{'0 (' + zero + ') or ' if zero is not None else ''}at least {MIN_BOOT}, e.g. 200 for a quick look, "
            "1000 for a paper."
        ) from None


def for_command_line(message: str, options: Mapping[str, str]) -> str:
    """``message`` with each key of ``options`` replaced by its value: a phrase literally, a Python name
    (``n_folds``, ``max_examples``) only as a whole word, so ``n_folds`` does not touch ``inner_n_folds``."""
    for spelling in sorted(options, key=len, reverse=True):
        if spelling.isidentifier():
            message = re.sub(rf"(?<![\w.-]){re.escape(spelling)}(?!\w)", options[spelling], message)
        else:
            message = message.replace(spelling, options[spelling])
    return message


def settings_error(err: ValidationError, fields: Mapping[str, str]) -> SystemExit:
    """A settings validation error as one command-line message: each problem names the option and the value."""
    parts = []
    for problem in err.errors():
        field = str(problem["loc"][0]) if problem["loc"] else ""
        text = for_command_line(problem["msg"].removeprefix("Value error, "), fields)
        parts.append(f"{fields.get(field, field)} {problem['input']!r}: {text}" if field else text)
    return SystemExit("; ".join(parts))


def parse_label_map(text: str | None) -> dict[str, str] | None:
    """``--label-map HEAD=DATA,...`` as ``{head class: data class}`` (None when not given); SystemExit on bad
    syntax or a head class named twice."""
    if text is None:
        return None
    pairs = [part.partition("=") for part in text.split(",") if part.strip()]
    bad = [head + eq + data for head, eq, data in pairs if not (eq and head.strip() and data.strip())]
    heads = [head.strip() for head, _, _ in pairs]
    if not pairs or bad or len(set(heads)) != len(heads):
        raise SystemExit(
            f"--label-map {text!r}: give HEAD=DATA pairs separated by commas, each head class once "
            "(e.g. --label-map LABEL_0=nurse,LABEL_1=pilot)."
        )
    return {head.strip(): data.strip() for head, _, data in pairs}
