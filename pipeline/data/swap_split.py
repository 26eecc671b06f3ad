"""The split of the gender-swap lists into a training part (CDA trains on it) and a held-out part (the
counterfactual metrics are also reported on it), so that a remedy trained on swaps is not scored on its own
transformation (issue #26).

The unit of the split is a *word group*: the connected component of the swap graph (``man`` - ``woman``,
``bride`` - ``bridegroom`` - ``groom``), with a final plural ``s`` folded (``boys`` joins ``boy``) and ``men``
joined to ``man``, so that no word, and no inflection of one, is on both sides. Each group goes to the held-out part
when the SHA-256 of its alphabetically first word is odd: a fixed rule, independent of the data, about half of the
groups each way. The pronouns are split by hand because every text has them and they are linked through ``her``:
the object/possessive pronouns ``him, her, his, hers`` (with the ``his``/``her`` rule of
:class:`~pipeline.data.counterfactual.GenderSwapper`) are in the training part, the subject and reflexive pronouns
``he, she, himself, herself`` are held out. So the two parts share no word (tests/pipeline/data/test_swap_split.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Literal

__all__ = ["HELDOUT_PRONOUNS", "SWAP_PARTS", "TRAIN_PRONOUNS", "SwapPart", "heldout_words", "word_groups"]

SwapPart = Literal["all", "train", "heldout"]
SWAP_PARTS: tuple[str, ...] = ("all", "train", "heldout")
TRAIN_PRONOUNS = frozenset({"him", "her", "his", "hers"})  # object / possessive: CDA swaps them
HELDOUT_PRONOUNS = frozenset({"he", "she", "himself", "herself"})  # subject / reflexive: only the evaluation


def _stem(word: str) -> str:
    """Fold a plural and the ``men`` ending: ``boys`` -> ``boy``, ``chairmen`` -> ``chairman``."""
    if word.endswith("men"):
        return word[:-3] + "man"
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def word_groups(mapping: Mapping[str, str]) -> dict[str, str]:
    """Each word of ``mapping`` (keys and values, pronouns excluded) -> its group's name (its first word)."""
    parent: dict[str, str] = {}

    def root(word: str) -> str:
        parent.setdefault(word, word)
        while parent[word] != word:
            parent[word] = parent[parent[word]]
            word = parent[word]
        return word

    pronouns = TRAIN_PRONOUNS | HELDOUT_PRONOUNS
    for source, target in mapping.items():
        if source in pronouns or target in pronouns:
            continue
        for word in (source, target):
            parent[root(word)] = root(_stem(word))
        parent[root(source)] = root(target)
    members: dict[str, list[str]] = {}
    for word in parent:
        members.setdefault(root(word), []).append(word)
    return {word: min(group) for group in members.values() for word in group}


def _held_out(group: str) -> bool:
    return int(hashlib.sha256(group.encode()).hexdigest(), 16) % 2 == 1


def heldout_words(mapping: Mapping[str, str]) -> frozenset[str]:
    """The words of ``mapping`` in the held-out part: the held-out pronouns and every word of a held-out group."""
    groups = word_groups(mapping)
    return frozenset(HELDOUT_PRONOUNS | {word for word, group in groups.items() if _held_out(group)})
