"""CrowS-Pairs: minimal sentence pairs that differ in the social group they mention.

Nangia et al. (2020), "CrowS-Pairs: A Challenge Dataset for Measuring Social Biases in Masked Language Models",
EMNLP. 1,508 pairs over nine bias types (262 gender). ``sent_more`` is always the more stereotyping sentence; the
metric is the share of pairs where a masked LM gives it the higher pseudo-log-likelihood (50% is unbiased).
Blodgett et al. (2021) found the data noisy; read results with that in mind.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from pipeline.data._io import read_data_file, require_columns
from pipeline.data.itemset import ItemSet
from pipeline.data.paths import data_root

__all__ = ["CROWS_BIAS_TYPES", "CrowsPair", "load_crows_pairs"]

logger = logging.getLogger(__name__)

CROWS_BIAS_TYPES = (
    "race-color", "gender", "socioeconomic", "nationality", "religion", "age", "sexual-orientation",
    "physical-appearance", "disability",
)  # fmt: skip
_COLUMNS = ["sent_more", "sent_less", "stereo_antistereo", "bias_type"]
_DIRECTIONS = ("stereo", "antistereo")


@dataclass(frozen=True)
class CrowsPair:
    """One CrowS-Pairs pair.

    Attributes:
        sent_more: The more stereotyping sentence.
        sent_less: The less stereotyping sentence.
        stereo_antistereo: ``"stereo"`` (``sent_more`` states a stereotype about a disadvantaged group) or
            ``"antistereo"`` (``sent_less`` violates one).
        bias_type: One of :data:`CROWS_BIAS_TYPES`.
    """

    sent_more: str
    sent_less: str
    stereo_antistereo: str
    bias_type: str


def load_crows_pairs(bias_type: str | None = None, *, path: str | Path | None = None) -> ItemSet[CrowsPair]:
    """Load CrowS-Pairs, optionally one bias type.

    Pairs whose two sentences are identical after stripping whitespace, or where one is empty, carry no signal;
    they are skipped, counted in ``n_skipped`` (among the selected bias type) and logged as a warning. The shipped
    file has none.

    Args:
        bias_type: Keep only this type (e.g. ``"gender"``); ``None`` keeps all.
        path: The CSV; default ``<data root>/crows_pairs/crows_pairs_anonymized.csv``.

    Returns:
        The pairs in file order, with ``n_skipped``.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: Unknown ``bias_type``, missing columns or an unknown ``stereo_antistereo`` value.
    """
    if bias_type is not None and bias_type not in CROWS_BIAS_TYPES:
        raise ValueError(f"bias_type={bias_type!r}: choose one of {list(CROWS_BIAS_TYPES)} or None.")
    source = Path(path) if path is not None else data_root() / "crows_pairs" / "crows_pairs_anonymized.csv"
    table = read_data_file(source)
    require_columns(table, _COLUMNS, source, "point load_crows_pairs at crows_pairs_anonymized.csv.")
    if bias_type is not None:
        table = table[table["bias_type"] == bias_type]
    pairs, skipped = [], 0
    for more, less, direction, kind in zip(*(table[c].tolist() for c in _COLUMNS)):
        if direction not in _DIRECTIONS:
            raise ValueError(f"{source}: stereo_antistereo={direction!r}; expected one of {list(_DIRECTIONS)}.")
        if not more.strip() or not less.strip() or more.strip() == less.strip():
            skipped += 1
            continue
        pairs.append(CrowsPair(more, less, direction, kind))
    if skipped:
        logger.warning("%s: skipped %d pairs with identical or empty sentences", source.name, skipped)
    return ItemSet(tuple(pairs), skipped, source)
