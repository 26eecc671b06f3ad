"""Gender-neutral control edits: the same texts with non-gendered words replaced by near synonyms.

A classifier near a tie flips its prediction under almost any small edit, so the share of predictions that flip
when gendered words are swapped (the counterfactual flip rate) means little alone. The control edit changes a text
as little but says nothing about gender: every word of ``pipeline/data/lists/neutral_synonyms.tsv`` (hand-written
for this tool; its header gives the provenance and the rules the pairs follow) is replaced by its near synonym,
case kept, all at once, as :class:`~pipeline.data.counterfactual.GenderSwapper` swaps gendered words. The flip
rate under this edit is the control beside the gender flip rate (:mod:`pipeline.metrics.counterfactual`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from pipeline.data._io import read_text

__all__ = ["NEUTRAL_LIST", "NeutralEditor"]

NEUTRAL_LIST = Path(__file__).parent / "lists" / "neutral_synonyms.tsv"
_WORD = re.compile(r"[^\W\d_]+")


def _match_case(source: str, target: str) -> str:
    if len(source) > 1 and source.isupper():
        return target.upper()
    return target[0].upper() + target[1:] if source[0].isupper() else target


class NeutralEditor:
    """Replace listed non-gendered words by their near synonyms (one way, every occurrence, case kept).

    Args:
        pairs: ``word -> replacement`` (lower case).
    """

    def __init__(self, pairs: Mapping[str, str]) -> None:
        self.pairs = {k.lower(): v.lower() for k, v in pairs.items()}

    @classmethod
    def default(cls, path: str | Path = NEUTRAL_LIST) -> NeutralEditor:
        """The editor of the tool's list (``#`` lines are its provenance header).

        Raises:
            ValueError: a line is not ``word<TAB>replacement``; the message names the file and line.
        """
        pairs = {}
        for number, line in enumerate(read_text(path).splitlines(), start=1):
            if not line.strip() or line.startswith("#"):
                continue
            fields = [f.strip() for f in line.split("\t")]
            if len(fields) != 2 or not all(fields):
                raise ValueError(f"{path}:{number}: expected 'word<TAB>replacement', got {line!r}. Fix that line.")
            pairs[fields[0].lower()] = fields[1].lower()
        return cls(pairs)

    def edit(self, text: str) -> str:
        """``text`` with every listed word replaced; unchanged when it holds none."""

        def replace(match: re.Match) -> str:
            target = self.pairs.get(match.group().lower())
            return match.group() if target is None else _match_case(match.group(), target)

        return _WORD.sub(replace, text)
