"""WinoBias: Winograd-style sentences pairing an occupation with a gendered pronoun.

Zhao et al. (2018), "Gender Bias in Coreference Resolution: Evaluation and Debiasing Methods", NAACL. Each of the
eight files ``{pro,anti}_stereotyped_type{1,2}.txt.{dev,test}`` has 396 lines ``<n> <sentence>`` in which the
occupation the pronoun refers to and the pronoun are bracketed, e.g.
``1 [The developer] argued with the designer because [he] did not like the design.`` Type 1 needs world knowledge,
type 2 is resolvable by syntax. Pro and anti files are parallel: line n of both is the same template with the
pronoun's gender swapped, so the pronoun agrees with the occupation's majority gender in "pro" and not in "anti".
Some sentences hold a further gendered pronoun ("because [she] needed to cut [her] hair", "by [himself]"); items
record them (``bracketed_others``, ``other_pronouns``) so that a masked-pronoun metric can leave out the templates
where the unmasked one gives the answer away.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pipeline.data._io import read_text
from pipeline.data.paths import data_root
from pipeline.data.task import FEMALE, MALE

__all__ = ["PRONOUN_GENDER", "WinoBiasItem", "load_winobias", "load_winobias_all"]

PRONOUN_GENDER = {
    "he": MALE, "him": MALE, "his": MALE, "himself": MALE,
    "she": FEMALE, "her": FEMALE, "hers": FEMALE, "herself": FEMALE,
}  # fmt: skip
_LINE = re.compile(r"(\d+) (.*)")
_BRACKET = re.compile(r"\[([^\]]*)\]")
_WORD = re.compile(r"[A-Za-z]+")


@dataclass(frozen=True)
class WinoBiasItem:
    """One WinoBias sentence.

    Offsets are character offsets into ``text`` (the sentence without brackets): ``text[start:end]``.

    Attributes:
        text: The sentence with the brackets removed.
        pronoun: The first bracketed pronoun, as written (e.g. ``"he"``).
        pronoun_start, pronoun_end: Its offsets.
        referent: The bracketed occupation mention the pronoun refers to (e.g. ``"The developer"``).
        gender: The pronoun's gender, ``MALE`` (0) or ``FEMALE`` (1).
        stereotype: ``"pro"`` or ``"anti"``.
        type: 1 or 2.
        split: ``"dev"`` or ``"test"``.
        line: The line number (1..396); the pro and anti items with the same line are one template.
        referent_start, referent_end: The referent's offsets.
        bracketed_others: The bracketed mentions after the pronoun that are gendered pronouns, as written
            (``("her",)`` for "... [she] needed to cut [her] hair").
        other_pronouns: Every gendered pronoun word of ``text`` other than the first bracketed one, bracketed or
            not, reflexives included, as written.
    """

    text: str
    pronoun: str
    pronoun_start: int
    pronoun_end: int
    referent: str
    gender: int
    stereotype: str
    type: int
    split: str
    line: int
    referent_start: int
    referent_end: int
    bracketed_others: tuple[str, ...] = ()
    other_pronouns: tuple[str, ...] = ()


def _parse_line(raw: str, where: str) -> tuple[int, str, list[tuple[str, int, int]]]:
    """Split ``<n> <sentence>`` into the number, the unbracketed text and the bracketed (mention, start, end)."""
    match = _LINE.fullmatch(raw.strip())
    if match is None:
        raise ValueError(f"{where}: expected '<n> <sentence>', got {raw!r}.")
    sentence, text, spans, pos = match.group(2), "", [], 0
    for bracket in _BRACKET.finditer(sentence):
        mention = bracket.group(1).strip()  # one line has "[ physician]"
        text += sentence[pos : bracket.start()]
        spans.append((mention, len(text), len(text) + len(mention)))
        text += mention
        pos = bracket.end()
    return int(match.group(1)), text + sentence[pos:], spans


def _read_file(path: Path, stereotype: str, kind: int, split: str) -> tuple[WinoBiasItem, ...]:
    items = []
    for number, raw in enumerate(read_text(path).splitlines(), start=1):
        if not raw.strip():
            continue
        where = f"{path}:{number}"
        line, text, spans = _parse_line(raw, where)
        if len(spans) < 2 or spans[1][0].lower() not in PRONOUN_GENDER:
            raise ValueError(
                f"{where}: expected '[referent] ... [pronoun]' with a gendered pronoun, got {raw!r}. "
                "Fix: restore the file from the WinoBias release."
            )
        (referent, r_start, r_end), (pronoun, p_start, p_end) = spans[0], spans[1]
        bracketed = tuple(m for m, _, _ in spans[2:] if m.lower() in PRONOUN_GENDER)
        others = tuple(w.group() for w in _WORD.finditer(text) if w.group().lower() in PRONOUN_GENDER
                       and w.start() != p_start)  # fmt: skip
        items.append(
            WinoBiasItem(text, pronoun, p_start, p_end, referent, PRONOUN_GENDER[pronoun.lower()],
                         stereotype, kind, split, line, r_start, r_end, bracketed, others)
        )  # fmt: skip
    return tuple(items)


def load_winobias(
    type: Literal[1, 2] = 1,  # the dataset's own name for the sentence type
    stereo: Literal["pro", "anti"] = "pro",
    split: Literal["dev", "test"] = "dev",
    *,
    root: str | Path | None = None,
) -> tuple[WinoBiasItem, ...]:
    """Load one WinoBias file (396 sentences).

    Some lines bracket further mentions of the pronoun (``"... [she] needed to cut [her] hair."``); the item
    keeps the first pronoun and the brackets of the others are removed. Typos of the release are kept for
    comparability.

    Args:
        type: Sentence type, 1 or 2.
        stereo: ``"pro"`` or ``"anti"`` stereotypical.
        split: ``"dev"`` or ``"test"``.
        root: Data root; default :func:`pipeline.data.paths.data_root`.

    Returns:
        The items in file order.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: Bad argument, or a line without a bracketed referent and pronoun.
    """
    if type not in (1, 2) or stereo not in ("pro", "anti") or split not in ("dev", "test"):
        raise ValueError(
            f"type={type!r}, stereo={stereo!r}, split={split!r}: choose type 1 or 2, 'pro' or 'anti', 'dev' or 'test'."
        )
    path = data_root(root) / "winobias" / f"{stereo}_stereotyped_type{type}.txt.{split}"
    return _read_file(path, stereo, type, split)


def load_winobias_all(root: str | Path | None = None) -> tuple[WinoBiasItem, ...]:
    """Load all eight files (3,168 items), ordered by type, split, then pro before anti."""
    return tuple(
        item
        for kind in (1, 2)
        for split in ("dev", "test")
        for stereo in ("pro", "anti")
        for item in load_winobias(kind, stereo, split, root=root)  # type: ignore[arg-type]
    )
