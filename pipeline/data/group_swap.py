"""Swap the names and terms of two groups of a bias axis (race, religion) both ways, every occurrence, case kept.

A group list (``pipeline/data/lists/<axis>.tsv``, :func:`read_group_list`) has a ``#`` provenance header, a header
row ``kind<TAB><group>...<TAB>source`` and one row per set of corresponding words (``european american`` /
``african american``; ``church`` / ``mosque`` / ``synagogue``). :meth:`GroupSwapper.from_list` takes two of its
groups and swaps their words both ways. A ``name`` row is swapped only where the name is written capitalised
(``Ebony`` but not ``ebony``); a ``term`` row in any case. A multi-word term matches across any whitespace, and the
longest term wins (``South African American`` before ``African American``); a word joined by a hyphen to another
(``white-collar``) is not a match. Known limit: articles are kept (``a rabbi`` -> ``a imam``).

The training / held-out split (:mod:`pipeline.data.swap_split`) is made once per list, over all its groups, so a row
is wholly in one part for every pair of groups.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from pipeline.data._io import read_text
from pipeline.data.swap_split import SWAP_PARTS, SwapPart, heldout_words

__all__ = ["LISTS", "GroupList", "GroupSwapper", "read_group_list"]

LISTS = Path(__file__).parent / "lists"
_KINDS = ("name", "term")
_PIECES = re.compile(r"[\s-]+|[^\s-]+")


@dataclass(frozen=True)
class GroupList:
    """A group list as read: its groups, its rows ``(kind, words per group)`` and the held-out words."""

    groups: tuple[str, ...]
    rows: tuple[tuple[str, tuple[str, ...]], ...]

    def heldout(self) -> frozenset[str]:
        """The words of the held-out part: every word of a row whose word group is held out."""
        edges = {word: words[0] for _, words in self.rows for word in words[1:]}
        every = {word for _, words in self.rows for word in words}
        return heldout_words(edges) & every


def read_group_list(path: str | Path) -> GroupList:
    """Read a group list (see the module docstring).

    Raises:
        ValueError: no header row, fewer than two groups, a row of another width, an unknown kind, an empty word,
            or a word listed twice; the message names the file and line.
    """
    lines = [(n, line) for n, line in enumerate(read_text(path).splitlines(), 1) if line.strip() and line[0] != "#"]
    if not lines:
        raise ValueError(f"{path}: no header row 'kind<TAB>group<TAB>group...<TAB>source'. Fix: add one.")
    header = [f.strip() for f in lines[0][1].split("\t")]
    if header[0] != "kind" or header[-1] != "source" or len(header) < 4:
        raise ValueError(f"{path}:{lines[0][0]}: header {header!r}; expected kind, two or more groups, source.")
    groups, rows, seen = tuple(header[1:-1]), [], set()
    for number, line in lines[1:]:
        fields = [f.strip() for f in line.split("\t")]
        words = tuple(" ".join(w.lower().split()) for w in fields[1:-1])
        if len(fields) != len(header) or fields[0] not in _KINDS or not all(words):
            raise ValueError(
                f"{path}:{number}: expected {len(header)} tab-separated fields (kind one of {', '.join(_KINDS)}, "
                f"a word per group, source), got {line!r}. Fix that line."
            )
        again = seen.intersection(words) or (len(set(words)) < len(words) and set(words))
        if again:
            raise ValueError(f"{path}:{number}: {sorted(again)} listed twice; each word may be in one row once.")
        seen.update(words)
        rows.append((fields[0], words))
    return GroupList(groups, tuple(rows))


def _match_case(source: str, target: str) -> str:
    """``target`` cased as ``source``, piece by piece: ``African-American`` -> ``European-American``."""
    if len(source) > 1 and source.isupper():
        return target.upper()
    caps = [p[0].isupper() for p in _PIECES.findall(source) if p.strip("- \t\n")]
    out, i = [], 0
    for piece in _PIECES.findall(target):
        if piece.strip("- \t\n"):
            out.append(piece[0].upper() + piece[1:] if caps[min(i, len(caps) - 1)] else piece)
            i += 1
        else:
            out.append(piece)
    return "".join(out)


class GroupSwapper:
    """Swap the words of two groups both ways at once (an involution: ``mapping[mapping[w]] == w``).

    Args:
        mapping: ``word -> word`` in lower case, both directions present.
        names: The words swapped only where written capitalised.
        heldout: The words of the held-out part (default none).
        sides: ``word -> 0 | 1``: which of the two groups a word belongs to (:meth:`from_list` sets it; default
            unknown, and :meth:`sides_in` then finds nothing).

    Raises:
        ValueError: ``mapping`` is not symmetric.
    """

    def __init__(
        self,
        mapping: Mapping[str, str],
        *,
        names: Iterable[str] = (),
        heldout: Iterable[str] = (),
        sides: Mapping[str, int] | None = None,
    ) -> None:
        self.mapping = {k.lower(): v.lower() for k, v in mapping.items()}
        broken = sorted(k for k, v in self.mapping.items() if self.mapping.get(v) != k)
        if broken:
            raise ValueError(f"swap mapping is not symmetric at {broken[:5]}: each word must map back to itself.")
        self.names = frozenset(n.lower() for n in names) & frozenset(self.mapping)
        self.heldout = frozenset(w.lower() for w in heldout) & frozenset(self.mapping)
        self.sides = {w.lower(): side for w, side in (sides or {}).items() if w.lower() in self.mapping}
        terms = sorted(self.mapping, key=lambda t: (-len(t), t))
        alternation = "|".join(r"\s+".join(map(re.escape, t.split())) for t in terms) or r"(?!x)x"
        self._pattern = re.compile(rf"(?<![\w-])(?:{alternation})(?![\w-])", re.IGNORECASE)

    @classmethod
    def from_list(cls, groups: GroupList, first: str, second: str) -> GroupSwapper:
        """The swapper of two groups of a list, with the list's held-out words.

        Raises:
            ValueError: a group the list does not have, or the same group twice.
        """
        if first == second or not {first, second} <= set(groups.groups):
            raise ValueError(f"groups {first!r}, {second!r}: give two different groups of {groups.groups}.")
        i, j = groups.groups.index(first), groups.groups.index(second)
        mapping = {w[i]: w[j] for _, w in groups.rows} | {w[j]: w[i] for _, w in groups.rows}
        names = {w for kind, words in groups.rows if kind == "name" for w in (words[i], words[j])}
        sides = {w[i]: 0 for _, w in groups.rows} | {w[j]: 1 for _, w in groups.rows}
        return cls(mapping, names=names, heldout=groups.heldout(), sides=sides)

    def part(self, name: SwapPart) -> GroupSwapper:
        """The swapper of one part: ``all`` (itself), ``train`` (no held-out word), ``heldout`` (only those)."""
        if name not in SWAP_PARTS:
            raise ValueError(f"swap part {name!r} is not known; use one of {', '.join(SWAP_PARTS)}.")
        if name == "all":
            return self
        keep = name == "heldout"
        mapping = {k: v for k, v in self.mapping.items() if (k in self.heldout) == keep}
        return GroupSwapper(mapping, names=self.names, heldout=mapping if keep else (), sides=self.sides)

    def words(self) -> frozenset[str]:
        """Every word this swapper changes."""
        return frozenset(self.mapping)

    def sides_in(self, text: str) -> frozenset[int]:
        """The groups (0: the first of :meth:`from_list`, 1: the second) whose words :meth:`swap` finds in ``text``."""
        found = (" ".join(m.group().lower().split()) for m in self._pattern.finditer(text) if self._target(m.group()))
        return frozenset(self.sides[w] for w in found if w in self.sides)

    def _target(self, found: str) -> str | None:
        key = " ".join(found.lower().split())
        if key not in self.mapping or (key in self.names and not found[0].isupper()):
            return None  # a name in lower case; or a Unicode case match of no listed word ("İslam")
        return _match_case(found, self.mapping[key])

    def swap(self, text: str) -> str:
        """``text`` with every mention of either group replaced by its counterpart in the other."""
        return self._pattern.sub(lambda m: self._target(m.group()) or m.group(), text)
