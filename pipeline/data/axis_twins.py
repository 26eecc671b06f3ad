"""Counterfactual twins of task texts along one bias axis: every mention of the two groups swapped.

A text that mentions neither group has no twin: it is left out and counted (:attr:`AxisTwins.n_left_out`, logged),
never kept as its own twin, so that a metric on the twins reads only texts where the axis was edited. The labels are
kept; a gender swap (:class:`~pipeline.data.counterfactual.GenderSwapper`) also flips the gender ids, as
:func:`~pipeline.data.counterfactual.counterfactual` does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from pipeline.data.counterfactual import GenderSwapper
from pipeline.data.swap_split import SwapPart
from pipeline.data.task import TaskData

__all__ = ["AxisTwins", "Swapper", "axis_twins"]

log = logging.getLogger(__name__)


class Swapper(Protocol):
    """What a twin needs of a swapper (:class:`GenderSwapper`, :class:`~pipeline.data.group_swap.GroupSwapper`)."""

    def swap(self, text: str) -> str: ...

    def part(self, name: SwapPart) -> Swapper: ...


@dataclass(frozen=True)
class AxisTwins:
    """The twins of the texts that mention the axis.

    Attributes:
        axis: The axis name.
        groups: The two groups swapped.
        rows: Indices (into the source data) of the texts kept, shape (n_kept,).
        originals: Those texts as they were.
        twins: Their twins, row for row.
        n_left_out: Texts with nothing to swap.
    """

    axis: str
    groups: tuple[str, str]
    rows: np.ndarray
    originals: TaskData
    twins: TaskData
    n_left_out: int


def axis_twins(data: TaskData, swapper: Swapper, *, axis: str, groups: tuple[str, str]) -> AxisTwins:
    """The twins of ``data`` under ``swapper`` (see the module docstring).

    Raises:
        ValueError: no text of ``data`` mentions either group (there would be no twin at all).
    """
    swapped = tuple(swapper.swap(t) for t in data.texts)
    rows = np.flatnonzero([a != b for a, b in zip(data.texts, swapped)])
    left_out = len(data) - len(rows)
    if not len(rows):
        raise ValueError(
            f"no text of {data.name!r} ({len(data)} rows) mentions the {axis} groups {groups[0]!r} or {groups[1]!r} "
            "in words of the axis's swap list, so there is no twin. Fix: use texts that mention them, or a template "
            "set for this axis."
        )
    if left_out:
        log.warning(
            "%s twins of %s: %d of %d texts have nothing to swap; left out.", axis, data.name, left_out, len(data)
        )
    originals = data.subset(rows)
    genders = 1 - originals.genders if isinstance(swapper, GenderSwapper) else originals.genders
    twins = TaskData(f"{data.name}-{axis}-twins", tuple(swapped[i] for i in rows), originals.labels, genders,
                     data.label_names)  # fmt: skip
    return AxisTwins(axis, groups, rows, originals, twins, left_out)
