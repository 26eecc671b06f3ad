"""The bias-axis registry: one record per axis (gender, race, religion), carrying its groups, its swap lists, the
training / held-out split of those lists and the intrinsic benchmark subsets that measure it (bias-atlas issue #30).

Gender swaps the WinoBias lists of the shared data plus the built-in list
(:meth:`pipeline.data.counterfactual.GenderSwapper.from_winobias`); race and religion swap the group lists shipped in
``pipeline/data/lists/`` (:mod:`pipeline.data.group_swap`; each file's header gives the source of every row, and
``pipeline/data/lists/PROVENANCE.md`` sums them up). An axis of three groups (religion) is swapped pairwise:
:meth:`BiasAxis.pairs`. A new axis is one record: :func:`register_axis`.
"""

from __future__ import annotations

import difflib
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipeline.data import STEREOSET_BIAS_TYPES, GenderSwapper, TaskData
from pipeline.data.axis_twins import AxisTwins, Swapper, axis_twins
from pipeline.data.group_swap import LISTS, GroupSwapper, read_group_list
from pipeline.data.seat import GENDER_SEAT_TESTS
from pipeline.data.swap_split import SwapPart
from pipeline.metrics.registry import FAMILIES

__all__ = ["AXES", "BiasAxis", "axis", "gender_swapper", "list_swapper", "register_axis"]


@dataclass(frozen=True)
class BiasAxis:
    """One bias axis.

    Attributes:
        name: the axis's name (``[run] axes``).
        groups: its groups; twins swap two of them at a time.
        what: one line for readers.
        lists: where its swap lists are: paths under the data root (gender) or files of ``pipeline/data/lists``.
        swapper: ``(axis, pair, data root) -> swapper`` of one pair of groups (with its held-out words).
        crows: its CrowS-Pairs bias types.
        stereoset: its StereoSet intrasentence domains.
        seat: its SEAT tests (file stems under ``seat/``; the ``sent-`` forms are the sentence versions).
    """

    name: str
    groups: tuple[str, ...]
    what: str
    lists: tuple[str, ...]
    swapper: Callable[[BiasAxis, tuple[str, str], str | Path | None], Swapper]
    crows: tuple[str, ...] = ()
    stereoset: tuple[str, ...] = ()
    seat: tuple[str, ...] = ()

    def pairs(self) -> tuple[tuple[str, str], ...]:
        """Every pair of its groups, in list order (gender, race: one; religion: three)."""
        return tuple(itertools.combinations(self.groups, 2))

    def swap(
        self, pair: tuple[str, str] | None = None, *, part: SwapPart = "all", root: str | Path | None = None
    ) -> Swapper:
        """The swapper of ``pair`` (default the first pair) restricted to ``part`` of the split.

        Raises:
            ValueError: a pair that is not two of the axis's groups, or an unknown part.
        """
        pair = pair or self.pairs()[0]
        if pair not in self.pairs() and pair[::-1] not in self.pairs():
            raise ValueError(f"{self.name}: {pair!r} is not a pair of its groups {self.groups}.")
        return self.swapper(self, pair, root).part(part)

    def twins(
        self,
        data: TaskData,
        pair: tuple[str, str] | None = None,
        *,
        part: SwapPart = "all",
        root: str | Path | None = None,
    ) -> AxisTwins:
        """Counterfactual twins of ``data`` for ``pair`` (:func:`pipeline.data.axis_twins.axis_twins`)."""
        pair = pair or self.pairs()[0]
        return axis_twins(data, self.swap(pair, part=part, root=root), axis=self.name, groups=pair)


def gender_swapper(axis: BiasAxis, pair: tuple[str, str], root: str | Path | None) -> GenderSwapper:
    """The gender swapper: the WinoBias lists under the data root plus the built-in list."""
    return GenderSwapper.from_winobias(root)


def list_swapper(axis: BiasAxis, pair: tuple[str, str], root: str | Path | None) -> GroupSwapper:
    """The swapper of two groups of the axis's shipped group list (``pipeline/data/lists/<file>``)."""
    return GroupSwapper.from_list(read_group_list(LISTS / axis.lists[0]), *pair)


AXES: dict[str, BiasAxis] = {
    a.name: a
    for a in (
        BiasAxis("gender", ("female", "male"), "women and men: pronouns, titles, gendered nouns, first names",
                 ("winobias/generalized_swaps.txt", "winobias/extra_gendered_words.txt"), gender_swapper,
                 crows=("gender",), stereoset=("gender",), seat=GENDER_SEAT_TESTS),
        BiasAxis("race", ("european_american", "african_american"),
                 "European- and African-American first names and terms (SEAT's names and terms, CrowS-Pairs' terms)",
                 ("race.tsv",), list_swapper, crows=("race-color",), stereoset=("race",),
                 seat=("weat3", "weat3b", "weat4", "weat5", "weat5b", "angry_black_woman_stereotype",
                       "angry_black_woman_stereotype_b")),
        BiasAxis("religion", ("christian", "muslim", "jewish"), "Christian, Muslim and Jewish terms, pairwise",
                 ("religion.tsv",), list_swapper, crows=("religion",), stereoset=("religion",)),
    )
}  # fmt: skip


def register_axis(spec: BiasAxis) -> BiasAxis:
    """Add ``spec`` to :data:`AXES`; the same record twice is a no-op.

    Raises:
        ValueError: another axis has that name, fewer than two groups, or a benchmark subset the benchmark lacks.
    """
    if AXES.get(spec.name, spec) != spec:
        raise ValueError(f"a bias axis named {spec.name!r} is already registered; choose another name.")
    if len(set(spec.groups)) < 2:
        raise ValueError(f"bias axis {spec.name!r}: give two or more distinct groups, not {spec.groups}.")
    for given, known, what in ((spec.crows, FAMILIES["crows"].subsets, "CrowS-Pairs bias type"),
                               (spec.stereoset, STEREOSET_BIAS_TYPES, "StereoSet domain")):  # fmt: skip
        bad = [s for s in given if s not in known]
        if bad:
            raise ValueError(f"bias axis {spec.name!r}: unknown {what} {bad}; choose from {', '.join(known)}.")
    AXES[spec.name] = spec
    return spec


def axis(name: str) -> BiasAxis:
    """The registered axis called ``name``.

    Raises:
        ValueError: no such axis (with the closest name, if any).
    """
    if name not in AXES:
        close = difflib.get_close_matches(name, AXES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown bias axis {name!r}{hint}; registered: {', '.join(AXES)}.")
    return AXES[name]
