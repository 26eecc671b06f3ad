"""Gender-swapped counterfactual texts.

Swaps gendered words both ways (he <-> she, actor <-> actress, Mr <-> Mrs, John <-> Mary) to build the
counterfactual inputs of the counterfactual gap and of activation patching. The word lists are the WinoBias swap
lists (Zhao et al. 2018, "Gender Bias in Coreference Resolution: Evaluation and Debiasing Methods", NAACL;
``generalized_swaps.txt`` and ``extra_gendered_words.txt``) plus a built-in list of pronouns, titles, common nouns
and first names that also fixes the lists' typos. Pronoun case is resolved by a small rule on the next word.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from pipeline.data._io import read_text
from pipeline.data.paths import data_root
from pipeline.data.swap_split import SWAP_PARTS, SwapPart, heldout_words
from pipeline.data.task import TaskData

__all__ = ["GenderSwapper", "counterfactual", "read_swap_list"]

# (male, female) pairs swapped both ways; they override the WinoBias lists. Pronouns "his" and "her" are not
# here: their target depends on the next word (see GenderSwapper.swap).
_BUILTIN_PAIRS = (
    ("he", "she"), ("him", "her"), ("himself", "herself"),
    ("mr", "mrs"), ("sir", "ma'am"),
    ("man", "woman"), ("men", "women"), ("boy", "girl"), ("boys", "girls"), ("guy", "gal"), ("guys", "gals"),
    ("gentleman", "lady"), ("gentlemen", "ladies"), ("father", "mother"), ("fathers", "mothers"),
    ("son", "daughter"), ("sons", "daughters"), ("brother", "sister"), ("brothers", "sisters"),
    ("husband", "wife"), ("husbands", "wives"), ("boyfriend", "girlfriend"), ("boyfriends", "girlfriends"),
    ("uncle", "aunt"), ("uncles", "aunts"), ("nephew", "niece"), ("nephews", "nieces"), ("king", "queen"),
    ("kings", "queens"), ("chairmen", "chairwomen"), ("god", "goddess"), ("gods", "goddesses"),
    ("baron", "baroness"), ("barons", "baronesses"), ("priest", "priestess"), ("priests", "priestesses"),
    ("monk", "nun"), ("monks", "nuns"),
    ("john", "mary"), ("paul", "lisa"), ("michael", "sarah"), ("david", "emily"), ("james", "anna"),
    ("robert", "susan"), ("kevin", "karen"), ("steve", "kate"),
)  # fmt: skip
_BUILTIN_ONE_WAY = {"ms": "mr", "hers": "his", "madam": "sir"}

# Never swapped from the WinoBias lists: words whose common sense is not gendered ("miss the bus", "master's
# degree", "bachelor's degree", "host a show", "state governor"), the occupation "tailor" (a WinoBias occupation,
# so swapping it would change the entity), and misspelt entries of the lists.
_EXCLUDED = frozenset(
    {"miss", "master", "masters", "bachelor", "bachelors", "host", "hosts", "governor", "governors", "tailor",
     "tailors", "mentleman", "adultor", "adultors", "heros", "his", "her"}
)  # fmt: skip

# Words after "her"/"his" that show the pronoun does not start a noun phrase ("asked her to", "told her that",
# "the book is his and"): prepositions and particles, determiners, conjunctions and wh-words, pronouns, auxiliaries
# and a few adverbs. Any other word is taken as the start of a noun phrase ("her idea" -> "his idea").
_NOT_NOMINAL = frozenset(
    [
        "about", "above", "across", "after", "against", "along", "among", "around", "as", "at", "before", "behind",
        "below", "beneath", "beside", "besides", "between", "beyond", "by", "down", "during", "except", "for",
        "from", "in", "inside", "into", "like", "near", "of", "off", "on", "onto", "out", "outside", "over", "past",
        "since", "through", "throughout", "till", "to", "toward", "towards", "under", "until", "up", "upon", "via",
        "with", "within", "without", "a", "an", "the", "this", "that", "these", "those", "my", "your", "his", "her",
        "its", "our", "their", "some", "any", "no", "every", "each", "all", "both", "either", "neither", "another",
        "such", "and", "or", "but", "nor", "so", "yet", "because", "if", "when", "whenever", "while", "although",
        "though", "than", "whether", "where", "who", "whom", "whose", "which", "what", "why", "how", "once",
        "unless", "i", "me", "you", "he", "him", "she", "it", "we", "us", "they", "them", "himself", "herself",
        "itself", "myself", "yourself", "ourselves", "themselves", "is", "am", "are", "was", "were", "be", "been",
        "being", "has", "have", "had", "do", "does", "did", "will", "would", "shall", "should", "can", "could",
        "may", "might", "must", "again", "away", "yesterday", "today", "tomorrow", "now", "then", "there", "here",
        "too", "also", "not", "never"
    ]
)  # fmt: skip

_WORD = re.compile(r"(?i:ma'am)|[^\W\d_]+")


def read_swap_list(path: str | Path) -> list[tuple[str, str]]:
    """Read a WinoBias swap list: one ``word<TAB>word`` pair per line, fields stripped and lower-cased.

    Raises:
        ValueError: A non-empty line has no tab; the message names the file and line.
    """
    pairs = []
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        fields = [f.strip().lower() for f in line.split("\t")]
        if len(fields) != 2 or not all(fields):
            raise ValueError(f"{path}:{number}: expected 'word<TAB>word', got {line!r}. Fix: repair that line.")
        pairs.append((fields[0], fields[1]))
    return pairs


def _match_case(source: str, target: str) -> str:
    """Give ``target`` the capitalisation of ``source``: HE -> SHE, He -> She, he -> she."""
    if len(source) > 1 and source.isupper():
        return target.upper()
    if source[0].isupper():
        return target[0].upper() + target[1:]
    return target


class GenderSwapper:
    """Swap gendered words in English text, both directions at once.

    Words are maximal runs of letters (plus ``ma'am``), so punctuation and clitics stay in place: ``"her."`` ->
    ``"him."``, ``"John's"`` -> ``"Mary's"``, ``"Mr."`` -> ``"Mrs."``. Capitalisation is kept per word.

    The possessive/object ambiguity is resolved by the next word:

    * ``her`` -> ``his`` when the next word follows after whitespace only and is not in a closed list of
      prepositions, determiners, conjunctions, pronouns, auxiliaries and a few adverbs (``"her idea"``,
      ``"her own"``); otherwise -> ``him`` (``"her."``, ``"her to"``, ``"her that"``, ``"her the book"``).
    * ``his`` -> ``her`` under the same test (``"his key"``), else -> ``hers`` (``"the book is his."``).
    * ``hers`` -> ``his``; ``him`` -> ``her``; ``he``/``she`` and ``himself``/``herself`` swap.

    Known limits: an object ``her`` before a bare noun reads as possessive (``"wished her happy birthday"`` ->
    ``"wished his happy birthday"``), so ``swap(swap(x)) == x`` only holds where no such ``him``/``her`` occurs;
    ``Ms`` -> ``Mr`` -> ``Mrs``.

    Parts (:mod:`pipeline.data.swap_split`): :meth:`part` gives the swapper of the training part (what CDA may
    use) or of the held-out part (what the held-out counterfactual metrics swap); the two share no word.

    Args:
        pairs: Directional ``word -> replacement`` mapping (lower case); ``his`` and ``her`` keys are ignored.
        heldout: The words of the held-out part (default none: everything is training part).
        possessives: Apply the ``his``/``her`` rule (False: leave ``his``, ``her`` alone).
    """

    def __init__(self, pairs: Mapping[str, str], *, heldout: Iterable[str] = (), possessives: bool = True) -> None:
        self.pairs = {k.lower(): v.lower() for k, v in pairs.items() if k.lower() not in ("his", "her")}
        self.heldout = frozenset(w.lower() for w in heldout)
        self.possessives = possessives

    def part(self, name: SwapPart) -> GenderSwapper:
        """The swapper of one part: ``all`` (itself), ``train`` (no held-out word), ``heldout`` (only those)."""
        if name not in SWAP_PARTS:
            raise ValueError(f"swap part {name!r} is not known; use one of {', '.join(SWAP_PARTS)}.")
        if name == "all":
            return self
        keep = name == "heldout"
        pairs = {k: v for k, v in self.pairs.items() if (k in self.heldout) == keep and (v in self.heldout) == keep}
        return GenderSwapper(pairs, heldout=pairs if keep else (), possessives=self.possessives and not keep)

    def words(self) -> frozenset[str]:
        """Every word this swapper changes or writes (``his``/``her`` included when the rule is on)."""
        extra = {"his", "her", "hers", "him"} if self.possessives else set()
        return frozenset(self.pairs) | frozenset(self.pairs.values()) | extra

    @classmethod
    def from_winobias(cls, root: str | Path | None = None, *, extra: bool = True) -> GenderSwapper:
        """Build from the WinoBias lists under ``<data root>/winobias`` plus the built-in list.

        Precedence: built-in pairs, then ``generalized_swaps.txt`` (read one-way, as listed), then
        ``extra_gendered_words.txt`` (male/female pairs, read both ways). Trailing dots of titles are dropped
        (``mr.`` -> ``mr``); list entries that are ambiguous or misspelt are skipped. The held-out words are those
        of :func:`pipeline.data.swap_split.heldout_words`.

        Args:
            root: Data root; default :func:`pipeline.data.paths.data_root`.
            extra: Also read ``extra_gendered_words.txt``.
        """
        folder = data_root(root) / "winobias"

        mapping: dict[str, str] = dict(_BUILTIN_PAIRS)
        mapping.update((f, m) for m, f in _BUILTIN_PAIRS)
        mapping.update(_BUILTIN_ONE_WAY)

        def add(items: Iterable[tuple[str, str]]) -> None:
            for source, target in items:
                source, target = source.rstrip("."), target.rstrip(".")
                if source not in _EXCLUDED and target not in _EXCLUDED:
                    mapping.setdefault(source, target)

        add(read_swap_list(folder / "generalized_swaps.txt"))
        if extra:
            extra_pairs = read_swap_list(folder / "extra_gendered_words.txt")
            add(extra_pairs)
            add((f, m) for m, f in extra_pairs)
        return cls(mapping, heldout=heldout_words(mapping))

    def _target(self, word: str, next_word: str | None, gap: str) -> str | None:
        low = word.lower()
        if low in ("her", "his"):
            if not self.possessives:
                return None
            nominal = next_word is not None and not gap.strip() and next_word.lower() not in _NOT_NOMINAL
            if low == "her":
                return "his" if nominal else "him"
            return "her" if nominal else "hers"
        return self.pairs.get(low)

    def swap(self, text: str) -> str:
        """Return ``text`` with every gendered word swapped (see the class docstring for the rules)."""
        words = list(_WORD.finditer(text))
        out: list[str] = []
        pos = 0
        for i, match in enumerate(words):
            following = words[i + 1] if i + 1 < len(words) else None
            gap = text[match.end() : following.start() if following else len(text)]
            target = self._target(match.group(), following.group() if following else None, gap)
            if target is not None:
                out += [text[pos : match.start()], _match_case(match.group(), target)]
                pos = match.end()
        out.append(text[pos:])
        return "".join(out)


def counterfactual(data: TaskData, swapper: GenderSwapper | None = None) -> TaskData:
    """Gender-swap every text and flip every gender; labels and class names stay.

    Args:
        data: The task.
        swapper: The swapper; default :meth:`GenderSwapper.from_winobias` on the default data root.

    Returns:
        The counterfactual task, named ``"<name>-swapped"``, row-aligned with ``data``.
    """
    swapper = swapper or GenderSwapper.from_winobias()
    return TaskData(
        name=f"{data.name}-swapped",
        texts=tuple(swapper.swap(t) for t in data.texts),
        labels=data.labels,
        genders=1 - data.genders,
        label_names=data.label_names,
    )
