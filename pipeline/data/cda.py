"""Counterfactual data augmentation (CDA): a training set with the gender-swapped twin of every text.

Zmigrod et al. (2019), "Counterfactual Data Augmentation for Mitigating Gender Stereotypes in Languages with Rich
Morphology", ACL; Webster et al. (2020), "Measuring and Reducing Gendered Correlations in Pre-trained Models".
The twin of a text is :func:`pipeline.data.counterfactual` with the *training part* of the swap lists
(:mod:`pipeline.data.swap_split`): the gendered words of that part swapped, the gender flipped, the label kept. The
held-out part is never used here, so the counterfactual metrics on the held-out words score a remedy on edits it did
not train on. *Two-sided* CDA trains on every text and its twin; *one-sided* CDA replaces each
text by its twin. A text without a gendered word is its own twin: it appears once either way.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np

from pipeline.data.counterfactual import GenderSwapper, counterfactual
from pipeline.data.swap_split import SwapPart
from pipeline.data.task import TaskData

__all__ = ["CDA_MODES", "CdaMode", "counterfactual_augment"]

log = logging.getLogger(__name__)

CdaMode = Literal["two_sided", "one_sided"]
CDA_MODES: tuple[str, ...] = ("two_sided", "one_sided")


def counterfactual_augment(
    data: TaskData, swapper: GenderSwapper, *, mode: CdaMode = "two_sided", part: SwapPart = "train"
) -> TaskData:
    """The CDA training set of ``data``, named ``"<name>-cda"``, swapped with ``swapper.part(part)`` (default the
    training part; ``"all"`` is the earlier procedure that also trains on the held-out words).

    Two-sided: each row of ``data`` once, each followed by its twin when the swap changed the text (so every text
    and its twin appear exactly once). One-sided: the twin in place of each row (same size and order).

    Raises:
        ValueError: an unknown ``mode``, or no text of ``data`` has a gendered word to swap (CDA would add nothing).
    """
    if mode not in CDA_MODES:
        raise ValueError(f"CDA mode {mode!r} is not known; use one of {', '.join(CDA_MODES)}.")
    twins = counterfactual(data, swapper.part(part))
    changed = np.array([a != b for a, b in zip(data.texts, twins.texts)], dtype=bool)  # (n,)
    if not changed.any():
        raise ValueError(
            f"no text of the training set {data.name!r} ({len(data)} rows) has a gendered word the "
            "swap lists know (pronouns, titles, gendered nouns, first names), so counterfactual data "
            "augmentation would add nothing. Fix: drop 'cda' from task.training_sets, or use data "
            "whose texts mention gender."
        )
    if changed.mean() < 0.1:
        log.warning("CDA: only %d of %d training texts have a gendered word to swap.", changed.sum(), len(data))
    if mode == "one_sided":
        texts = tuple(t if c else o for o, t, c in zip(data.texts, twins.texts, changed))
        genders = np.where(changed, twins.genders, data.genders)
        return TaskData(f"{data.name}-cda", texts, data.labels, genders, data.label_names)
    rows = np.arange(len(data))
    order = np.concatenate([rows, rows[changed]])  # originals, then the twins of the changed ones
    twin = np.concatenate([np.zeros(len(data), bool), np.ones(int(changed.sum()), bool)])
    order_key = np.argsort(order, kind="stable")  # each twin right after its original
    order, twin = order[order_key], twin[order_key]
    texts = tuple(twins.texts[i] if t else data.texts[i] for i, t in zip(order, twin))
    genders = np.where(twin, twins.genders[order], data.genders[order])
    return TaskData(f"{data.name}-cda", texts, data.labels[order], genders, data.label_names)
