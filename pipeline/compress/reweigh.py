"""Reweighing (Kamiran & Calders 2012): instance weights that make class and gender independent.

Kamiran and Calders (2012), "Data preprocessing techniques for classification without discrimination", Knowledge
and Information Systems 33(1), section 4.2: every example of class ``c`` and group ``g`` gets the weight

    w(c, g) = P(c) P(g) / P(c, g)       (empirical frequencies of the training set)

so the weighted share of each (class, group) cell, ``n(c, g) w(c, g) / sum(w)``, equals ``P(c) P(g)``: under the
weighted distribution class and group are independent, and the weights sum to ``n``. A cell with no example (a
class never seen with one group) has no finite weight and is refused.
"""

from __future__ import annotations

import numpy as np
from jaxtyping import Float, Int

__all__ = ["EmptyCellError", "cell_weights", "reweighing_weights"]


class EmptyCellError(ValueError):
    """A (class, group) cell of the training set has no example, so its reweighing weight is undefined."""


def cell_weights(labels: Int[np.ndarray, " n"], groups: Int[np.ndarray, " n"]) -> dict[tuple[int, int], float]:
    """``w(c, g) = P(c) P(g) / P(c, g)`` for every class ``c`` and group ``g`` present in the data.

    Raises:
        ValueError: ``labels`` and ``groups`` differ in length or are empty, or fewer than two groups are present.
        EmptyCellError: some class has no example of some group (the message names the cells).
    """
    labels, groups = np.asarray(labels), np.asarray(groups)
    if labels.shape != groups.shape or labels.ndim != 1 or not len(labels):
        raise ValueError(
            f"labels {labels.shape} and groups {groups.shape} must be non-empty 1-D arrays of the same length"
        )
    classes, group_ids = np.unique(labels), np.unique(groups)
    if len(group_ids) < 2:
        raise ValueError(f"reweighing needs at least two groups, got {group_ids.tolist()}")
    n = len(labels)
    counts = {(int(c), int(g)): int(((labels == c) & (groups == g)).sum()) for c in classes for g in group_ids}
    empty = sorted(cell for cell, k in counts.items() if k == 0)
    if empty:
        raise EmptyCellError(
            f"reweighing: the (class, group) cells {empty} have no training example, so P(c, g) = 0 and the "
            "weight P(c)P(g)/P(c, g) is undefined; add examples of those cells (e.g. a counterfactually augmented "
            "training set) or drop the classes"
        )
    n_class = {int(c): int((labels == c).sum()) for c in classes}
    n_group = {int(g): int((groups == g).sum()) for g in group_ids}
    return {(c, g): n_class[c] * n_group[g] / (n * k) for (c, g), k in counts.items()}


def reweighing_weights(labels: Int[np.ndarray, " n"], groups: Int[np.ndarray, " n"]) -> Float[np.ndarray, " n"]:
    """Each example's weight ``w(label, group)`` (:func:`cell_weights`); they sum to ``n``."""
    weights = cell_weights(labels, groups)
    return np.array([weights[int(c), int(g)] for c, g in zip(labels, groups)], dtype=np.float64)
