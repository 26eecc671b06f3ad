"""Attribution data along one bias axis (gender, race, religion; bias-atlas issue #30).

:func:`from_axis` builds :class:`~attribution.data.AttributionData` from the twins of two groups of an axis
(:meth:`pipeline.axes.BiasAxis.twins`) and orients the counterfactual gap by group. The orientation lives in the
``genders`` field that :class:`~attribution.scores.CounterfactualGap` reads: the pair's *first* group takes the role
of ``FEMALE`` (1) and the second that of ``MALE`` (0), so the gap is ``P(y | first-group version) - P(y |
second-group version)``. For gender the default pair is ``("female", "male")``, so the gap is unchanged.

A text's group:

* gender: the task's own gender id (``TaskData.genders``, as :meth:`AttributionData.from_task` uses it; the gender
  swap lists are not split by side, so words cannot say it); with the pair reversed, ``("male", "female")``, the
  ids are flipped;
* an axis swapped by a :class:`~pipeline.data.group_swap.GroupSwapper` (race, religion): the group whose swap-list
  words the text mentions (:meth:`GroupSwapper.sides_in`). A text that mentions words of both groups is ambiguous:
  it is left out and counted, as are texts with nothing to swap (:func:`pipeline.data.axis_twins.axis_twins`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from attribution.data import AttributionData
from pipeline.axes import axis as get_axis
from pipeline.data import FEMALE, MALE, TaskData
from pipeline.data.group_swap import GroupSwapper
from pipeline.data.swap_split import SwapPart
from pipeline.models import LoadedModel

__all__ = ["AxisData", "from_axis"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AxisData:
    """Attribution data of one pair of an axis and what was left out.

    Attributes:
        data: the texts kept and their twins; ``genders`` = ``FEMALE`` (1) for texts of ``pair[0]``, ``MALE`` (0)
            for texts of ``pair[1]``.
        axis: the axis name.
        pair: (first group, second group): the gap is P(y | first-group version) - P(y | second-group version).
        n_no_mention: texts with nothing of the pair to swap.
        n_ambiguous: texts that mention words of both groups (list axes only).
    """

    data: AttributionData
    axis: str
    pair: tuple[str, str]
    n_no_mention: int
    n_ambiguous: int


def from_axis(
    loaded: LoadedModel,
    task: TaskData,
    axis: str,
    pair: tuple[str, str] | None = None,
    *,
    part: SwapPart = "all",
    max_length: int = 128,
    root=None,
) -> AxisData:
    """The twins of ``pair`` (default the axis's first pair) of ``task``, oriented by group (module docstring).

    Raises:
        ValueError: an unknown axis or pair; no text mentions the pair; every text that does mentions both groups;
            an axis whose swapper cannot say a text's group.
    """
    spec = get_axis(axis)
    pair = tuple(pair or spec.pairs()[0])
    twins = spec.twins(task, pair, part=part, root=root)  # raises when no text mentions the pair
    swapper = spec.swap(pair, part=part, root=root)
    if spec.name == "gender":
        if set(pair) != {"female", "male"}:
            raise ValueError(f"gender pair {pair!r}: give ('female', 'male') or ('male', 'female').")
        ids = np.asarray(twins.originals.genders)
        groups = ids if pair[0] == "female" else np.where(ids >= 0, 1 - ids, ids)
        keep = np.arange(len(ids))
    elif isinstance(swapper, GroupSwapper):
        sides = [swapper.sides_in(t) for t in twins.originals.texts]
        keep = np.flatnonzero([len(s) == 1 for s in sides])
        groups = np.array([FEMALE if 0 in s else MALE for s in sides], dtype=np.int64)[keep]
    else:
        raise ValueError(
            f"axis {spec.name!r}: its swapper {type(swapper).__name__} cannot say which group a text mentions. "
            "Fix: build it with GroupSwapper.from_list (pipeline.axes.list_swapper)."
        )
    n_ambiguous = len(twins.originals) - len(keep)
    if not len(keep):
        raise ValueError(
            f"every text of {task.name!r} that mentions the {spec.name} pair {pair!r} mentions both groups, so no "
            "text has one group to orient the gap. Fix: use texts that mention one group each."
        )
    if n_ambiguous:
        log.warning("%s %s of %s: %d of %d texts mention both groups; left out.", spec.name, pair, task.name,
                    n_ambiguous, len(twins.originals))  # fmt: skip
    originals, cf = twins.originals.subset(keep), twins.twins.subset(keep)
    data = AttributionData.from_texts(
        loaded,
        originals.texts,
        cf_texts=cf.texts,
        labels=originals.labels,
        genders=groups,
        label_names=originals.label_names,
        name=task.name if spec.name == "gender" else f"{task.name}-{spec.name}",
        max_length=max_length,
    )
    return AxisData(data, spec.name, pair, twins.n_left_out, n_ambiguous)
