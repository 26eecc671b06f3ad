"""Winogender schemas: occupation/participant sentences with a male, female or neutral pronoun.

Rudinger et al. (2018), "Gender Bias in Coreference Resolution", NAACL. 120 templates x {male, female, neutral}
pronoun x {named participant, "someone"} = 720 sentences in ``all_sentences.tsv``, whose ``sentid`` reads
``<occupation>.<participant>.<answer>.<gender>.txt``; ``answer`` 0 means the pronoun refers to the occupation,
1 to the participant. ``occupations-stats.tsv`` gives each occupation's share of women (Bergsma & Lin text
statistics and the 2015 US Bureau of Labor Statistics).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pipeline.data._io import read_data_file, require_columns
from pipeline.data.paths import data_root

__all__ = ["WINOGENDER_PRONOUNS", "WinogenderItem", "load_winogender", "occupation_stats"]

WINOGENDER_PRONOUNS = {
    "male": ("he", "his", "him"),
    "female": ("she", "her"),
    "neutral": ("they", "their", "them"),
}
_WORD = re.compile(r"[A-Za-z]+")


@dataclass(frozen=True)
class WinogenderItem:
    """One Winogender sentence.

    Attributes:
        sentid: The id, e.g. ``"technician.customer.1.male.txt"``.
        sentence: The sentence.
        occupation: The occupation (e.g. ``"technician"``).
        participant: The other participant, or ``"someone"``.
        answer: 0 if the pronoun refers to the occupation, 1 if to the participant.
        gender: ``"male"``, ``"female"`` or ``"neutral"`` (not binary, unlike the task data).
        pronoun: The pronoun as written.
        pronoun_start, pronoun_end: Its character offsets: ``sentence[start:end] == pronoun``.
    """

    sentid: str
    sentence: str
    occupation: str
    participant: str
    answer: int
    gender: str
    pronoun: str
    pronoun_start: int
    pronoun_end: int


def _parse(sentid: str, sentence: str, source: Path) -> WinogenderItem:
    parts = sentid.split(".")
    if len(parts) != 5 or parts[2] not in ("0", "1") or parts[3] not in WINOGENDER_PRONOUNS:
        raise ValueError(
            f"{source}: sentid {sentid!r} is not '<occupation>.<participant>.<0|1>.<male|female|neutral>.txt'. "
            "Fix: restore the file from the Winogender release."
        )
    occupation, participant, answer, gender = parts[:4]
    hits = [m for m in _WORD.finditer(sentence) if m.group().lower() in WINOGENDER_PRONOUNS[gender]]
    if len(hits) != 1:
        raise ValueError(f"{source}: {sentid}: expected one {gender} pronoun in {sentence!r}, found {len(hits)}.")
    hit = hits[0]
    return WinogenderItem(sentid, sentence, occupation, participant, int(answer), gender, hit.group(),
                          hit.start(), hit.end())  # fmt: skip


def load_winogender(root: str | Path | None = None) -> tuple[WinogenderItem, ...]:
    """Load the 720 Winogender sentences with their pronoun located.

    Args:
        root: Data root; default :func:`pipeline.data.paths.data_root`.

    Returns:
        The items in file order.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: A malformed ``sentid`` or a sentence without exactly one pronoun of its gender.
    """
    source = data_root(root) / "winogender" / "all_sentences.tsv"
    table = read_data_file(source)
    require_columns(table, ["sentid", "sentence"], source, "point at Winogender's all_sentences.tsv.")
    return tuple(_parse(i, s, source) for i, s in zip(table["sentid"].tolist(), table["sentence"].tolist()))


def occupation_stats(root: str | Path | None = None) -> pd.DataFrame:
    """The 60 occupations' share of women, in percent.

    Returns:
        DataFrame with columns ``occupation`` (str), ``bergsma_pct_female``, ``bls_pct_female`` (float) and
        ``bls_year`` (int).
    """
    source = data_root(root) / "winogender" / "occupations-stats.tsv"
    table = read_data_file(source)
    columns = ["occupation", "bergsma_pct_female", "bls_pct_female", "bls_year"]
    require_columns(table, columns, source, "point at Winogender's occupations-stats.tsv.")
    return (
        table[columns]
        .astype({"occupation": str, "bergsma_pct_female": float, "bls_pct_female": float, "bls_year": int})
        .reset_index(drop=True)
    )
