"""Training data whose examples carry instance weights, e.g. the Kamiran & Calders (2012) reweighing weights of the
``reweighed`` training set: every training loss on it weighs each example's term by its weight."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.data.task import TaskData

__all__ = ["WeightedTaskData"]


@dataclass(frozen=True, eq=False)
class WeightedTaskData(TaskData):
    """:class:`TaskData` with one positive, finite weight per row (float64, read-only; mean 1 by convention).

    Derived data (:meth:`subset`, :meth:`relabel`) is plain :class:`TaskData`: the weights belong to the training
    set as a whole.
    """

    weights: np.ndarray = None  # type: ignore[assignment]  # required; a default only because TaskData has none

    def __post_init__(self) -> None:
        super().__post_init__()
        w = np.array(self.weights, dtype=np.float64)
        if w.shape != (len(self),) or not np.isfinite(w).all() or (w <= 0).any():
            raise ValueError(
                f"WeightedTaskData {self.name!r}: weights must be {len(self)} positive finite numbers, one per "
                f"text, got shape {w.shape}"
            )
        w.setflags(write=False)
        object.__setattr__(self, "weights", w)

    @classmethod
    def of(cls, data: TaskData, weights: np.ndarray) -> WeightedTaskData:
        """``data``'s rows with ``weights``."""
        return cls(data.name, data.texts, data.labels, data.genders, data.label_names, weights)
