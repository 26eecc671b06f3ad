"""StereoSet (dev split): stereotype, anti-stereotype and unrelated continuations of a context.

Nadeem, Bethke & Reddy (2021), "StereoSet: Measuring stereotypical bias in pretrained language models", ACL.
The shared copy is the Themis CSV export of the Hugging Face ``stereoset`` validation split (= the original
``dev.json``): ``prompt, choices, bias_type, target``, where ``choices`` is a numpy-array repr such as
``['asian' 'hispanic' 'fox']`` in the order [stereotype, anti-stereotype, unrelated]. Intrasentence contexts hold
the literal ``BLANK`` (fill it with :func:`fill`); intersentence contexts are followed by a whole sentence.

Glued ``BLANK``. One gender context reads "The grandfather BLANKed the grandchildren." while its stored candidates
already end in the suffix ("protected"), so filling it naively gives "protecteded". :func:`blank_as_read` folds the
letters glued to ``BLANK`` into the slot and returns the word as it reads in the sentence ("protected"), flagging the
candidates that had to be cut. ``BLANK`` next to punctuation ("sometimes.BLANK", "BLANK.boring", "BLANK!p") needs
no change: the stored candidates there do not repeat the punctuation, and WordPiece splits at it.
"""

from __future__ import annotations

import ast
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pipeline.data._io import read_data_file, require_columns
from pipeline.data.itemset import ItemSet
from pipeline.data.paths import data_root

__all__ = [
    "BLANK", "STEREOSET_BIAS_TYPES", "StereoSetItem", "blank_as_read", "fill", "load_stereoset", "parse_choices",
]  # fmt: skip

logger = logging.getLogger(__name__)

BLANK = "BLANK"
STEREOSET_BIAS_TYPES = ("race", "profession", "gender", "religion")
_FILES = {"intrasentence": "intrasentence_stereo_set.csv", "intersentence": "intersentence_stereo_set.csv"}
_COLUMNS = ["prompt", "choices", "bias_type", "target"]
# One quoted item of a numpy repr: single-quoted, or double-quoted when it contains an apostrophe.
_ITEM = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
# BLANK with the letters or digits glued to it on either side ("BLANKed", "unBLANK").
_GLUED = re.compile(r"([A-Za-z0-9]*)BLANK([A-Za-z0-9]*)")


@dataclass(frozen=True)
class StereoSetItem:
    """One StereoSet example.

    Attributes:
        context: The context; intrasentence contexts contain ``BLANK``.
        target: The group term the example is about (e.g. ``"schoolgirl"``).
        bias_type: One of :data:`STEREOSET_BIAS_TYPES`.
        stereotype: The stereotypical word (intrasentence) or sentence (intersentence).
        anti_stereotype: The anti-stereotypical option.
        unrelated: The meaningless option, for the language-modelling score.
    """

    context: str
    target: str
    bias_type: str
    stereotype: str
    anti_stereotype: str
    unrelated: str


def parse_choices(text: str) -> tuple[str, ...]:
    """Parse a numpy-array repr of strings, e.g. ``"['a' \\"b's\\"\\n 'c']"`` -> ``('a', "b's", 'c')``.

    Each quoted item is read with :func:`ast.literal_eval` (a string literal only), which undoes ``\\'`` escapes.
    An item that is not a valid literal makes the result empty, so the caller skips the row.
    """
    try:
        return tuple(ast.literal_eval(m.group()) for m in _ITEM.finditer(text))
    except (ValueError, SyntaxError):
        return ()


def fill(context: str, word: str) -> str:
    """Put ``word`` in place of ``BLANK`` in an intrasentence context (every occurrence; two contexts have two).

    Raises:
        ValueError: The context has no ``BLANK``.
    """
    if BLANK not in context:
        raise ValueError(f"context {context!r} has no {BLANK!r} to fill; only intrasentence contexts do.")
    return context.replace(BLANK, word)


def blank_as_read(context: str, word: str) -> tuple[str, str, bool]:
    """The context and fill word as the filled sentence reads, with letters glued to ``BLANK`` moved into the word.

    ``"The grandfather BLANKed the grandchildren."`` with ``"protected"`` (a candidate that already holds the glued
    suffix) gives ``("The grandfather BLANK the grandchildren.", "protected", True)``; with ``"protect"`` it gives the
    same context and word and ``False``. A ``BLANK`` without glued letters is returned unchanged. Glued text is a run
    of ASCII letters or digits touching ``BLANK``; every ``BLANK`` of the context is freed of its glued text.

    Returns:
        ``(context, word, cut)``: ``fill(context, word)`` is the sentence as it should read; ``cut`` is True when
        the stored candidate repeated glued text (naive filling would have doubled it).

    Raises:
        ValueError: The context has no ``BLANK``.
    """
    if BLANK not in context:
        raise ValueError(f"context {context!r} has no {BLANK!r} to fill; only intrasentence contexts do.")
    glued = [(m.group(1), m.group(2)) for m in _GLUED.finditer(context) if m.group(1) or m.group(2)]
    if not glued:
        return context, word, False
    prefix, suffix = glued[0]  # the first glued BLANK decides (the shipped data have one at most)
    cut = bool(prefix and word.startswith(prefix)) or bool(suffix and word.endswith(suffix))
    core = word[len(prefix) if word.startswith(prefix) else 0 :]
    core = core[: len(core) - len(suffix)] if suffix and core.endswith(suffix) else core
    read = prefix + core + suffix
    return _GLUED.sub(BLANK, context), read, cut


def load_stereoset(
    kind: Literal["intrasentence", "intersentence"] = "intrasentence",
    bias_type: str | None = None,
    *,
    path: str | Path | None = None,
) -> ItemSet[StereoSetItem]:
    """Load one StereoSet task, optionally one bias type.

    Rows whose ``choices`` do not parse into exactly three items, and intrasentence rows without ``BLANK``, are
    skipped, counted in ``n_skipped`` (among the selected bias type) and logged as a warning. The shipped files
    have none: intrasentence 2,106 rows (gender 255), intersentence 2,123 (gender 242).

    Args:
        kind: ``"intrasentence"`` or ``"intersentence"``.
        bias_type: Keep only this type (e.g. ``"gender"``); ``None`` keeps all.
        path: The CSV; default ``<data root>/stereoset/<kind>_stereo_set.csv``.

    Returns:
        The items in file order, with ``n_skipped``.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: Unknown ``kind`` or ``bias_type``, or missing columns.
    """
    if kind not in _FILES:
        raise ValueError(f"kind={kind!r}: choose one of {list(_FILES)}.")
    if bias_type is not None and bias_type not in STEREOSET_BIAS_TYPES:
        raise ValueError(f"bias_type={bias_type!r}: choose one of {list(STEREOSET_BIAS_TYPES)} or None.")
    source = Path(path) if path is not None else data_root() / "stereoset" / _FILES[kind]
    table = read_data_file(source)
    require_columns(table, _COLUMNS, source, f"point load_stereoset at {_FILES[kind]}.")
    if bias_type is not None:
        table = table[table["bias_type"] == bias_type]
    items, skipped = [], 0
    for context, choices, kind_of_bias, target in zip(*(table[c].tolist() for c in _COLUMNS)):
        options = parse_choices(choices)
        if len(options) != 3 or (kind == "intrasentence" and BLANK not in context):
            skipped += 1
            continue
        items.append(StereoSetItem(context, target, kind_of_bias, *options))
    if skipped:
        logger.warning("%s: skipped %d rows whose choices are not 3 items or that lack BLANK", source.name, skipped)
    return ItemSet(tuple(items), skipped, source)
