"""SEAT tests: target and attribute word/sentence sets for association tests.

May et al. (2019), "On Measuring Social Biases in Sentence Encoders", NAACL, extend WEAT (Caliskan et al. 2017) to
sentence encoders by inserting each word into bleached templates ("This is John."). Each test file under
``<data root>/seat`` is one JSON object (despite the ``.jsonl`` suffix) with ``targ1``, ``targ2``, ``attr1``,
``attr2``, each ``{"category": str, "examples": [str, ...]}``. The gender tests are 6/6b (career vs family),
7/7b (math vs arts) and 8/8b (science vs arts), in word form (``weat6``) and sentence form (``sent-weat6``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pipeline.data._io import read_text
from pipeline.data.paths import data_root

__all__ = ["GENDER_SEAT_TESTS", "SeatTest", "load_gender_seat_tests", "load_seat"]

GENDER_SEAT_TESTS = ("weat6", "weat6b", "weat7", "weat7b", "weat8", "weat8b")
_SETS = ("targ1", "targ2", "attr1", "attr2")


@dataclass(frozen=True)
class SeatTest:
    """One association test: two target sets (X, Y) and two attribute sets (A, B).

    Attributes:
        name: The test's file stem, e.g. ``"weat6"`` or ``"sent-weat6"``.
        targ1_name, targ1: Category and items of target set X (e.g. ``MaleNames``).
        targ2_name, targ2: Category and items of target set Y.
        attr1_name, attr1: Category and items of attribute set A (e.g. ``Career``).
        attr2_name, attr2: Category and items of attribute set B.
    """

    name: str
    targ1_name: str
    targ1: tuple[str, ...]
    targ2_name: str
    targ2: tuple[str, ...]
    attr1_name: str
    attr1: tuple[str, ...]
    attr2_name: str
    attr2: tuple[str, ...]


def _read_set(obj: object, key: str, path: Path) -> tuple[str, tuple[str, ...]]:
    """The (category, items) of set ``key``; ValueError naming the file and the set if missing or empty."""
    entry = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(entry, dict) or not isinstance(entry.get("examples"), list):
        raise ValueError(  # noqa: TRY004 (a malformed data file, not a caller's type)
            f"{path}: set {key!r} is missing or lacks an 'examples' list; a SEAT file needs {list(_SETS)}, each "
            '{"category": ..., "examples": [...]}. Fix: restore the file from the SEAT release.'
        )
    items = tuple(str(x).strip() for x in entry["examples"] if str(x).strip())
    if not items:
        raise ValueError(f"{path}: set {key!r} ({entry.get('category')}) is empty. Fix: give it examples.")
    return str(entry.get("category", key)), items


def load_seat(name: str, root: str | Path | None = None) -> SeatTest:
    """Load one SEAT test by name.

    Args:
        name: File stem under ``<root>/seat``, e.g. ``"weat6"`` or ``"sent-weat8b"``.
        root: Data root; default :func:`pipeline.data.paths.data_root`.

    Returns:
        The test.

    Raises:
        FileNotFoundError: No such test; the message lists the available ones.
        ValueError: The file is not a SEAT object, or a set is missing or empty.
    """
    folder = data_root(root) / "seat"
    path = folder / f"{name}.jsonl"
    if not path.is_file():
        available = sorted(p.stem for p in folder.glob("*.jsonl"))
        raise FileNotFoundError(f"SEAT test {name!r} not found at {path}. Fix: use one of {available}.")
    try:
        obj = json.loads(read_text(path))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err}). Fix: restore the file from the SEAT release.") from err
    (t1, x), (t2, y), (a1, a), (a2, b) = (_read_set(obj, key, path) for key in _SETS)
    return SeatTest(name, t1, x, t2, y, a1, a, a2, b)


def load_gender_seat_tests(
    form: Literal["word", "sentence", "both"] = "word", root: str | Path | None = None
) -> tuple[SeatTest, ...]:
    """Load the six gender SEAT tests (6, 6b, 7, 7b, 8, 8b).

    Args:
        form: ``"word"`` (``weat6``...), ``"sentence"`` (``sent-weat6``...) or ``"both"`` (word forms first).
        root: Data root; default :func:`pipeline.data.paths.data_root`.

    Returns:
        The tests in the order of :data:`GENDER_SEAT_TESTS`.
    """
    prefixes = {"word": ("",), "sentence": ("sent-",), "both": ("", "sent-")}
    if form not in prefixes:
        raise ValueError(f"form={form!r}: choose 'word', 'sentence' or 'both'.")
    return tuple(load_seat(p + name, root) for p in prefixes[form] for name in GENDER_SEAT_TESTS)
