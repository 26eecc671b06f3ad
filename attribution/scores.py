"""Scores: the differentiable scalars that attribution explains.

A score maps a model's outputs on a :class:`~attribution.data.Batch` to one number per example (or, for SEAT, one
number per whole set of items), differentiably, so the same object serves ablation, gradients, integrated
gradients and patching. It runs the model on one or two *views* of the batch (the original texts, and their
gender-swapped twins for the counterfactual gap), under whatever gates or prefix cache are active, reads the
features it needs from the task head (:class:`~attribution.task_head.TaskHead`) and combines them:

- :class:`TaskLoss`: cross-entropy of the true class (the loss of Michel et al. 2019's head importance).
- :class:`TrueClassProb`: ``softmax(logits)[y]``.
- :class:`CounterfactualGap`: the true-class probability change under the gender swap, oriented as
  ``P(y | female version) - P(y | male version)`` (:func:`pipeline.metrics.counterfactual.true_class_prob_change`
  with genders; Garg et al. 2019). Its mean over examples cancels across classes skewed towards either gender.
- :class:`SkewGap`: that gap times the gender skew of the example's class in the training data
  (:func:`pipeline.metrics.counterfactual.skew_orientation`): a bias target whose mean does not cancel, 0 in
  expectation for a model whose output ignores gender (docs/FINDINGS.md). :class:`SkewedClassProb` is its
  single-view form for activation patching (``orientation[y] * P(y | text)``: its total effect is the skew gap).
- :class:`PronounGap`: ``log P(male form) - log P(female form)`` at the masked pronoun (``he``/``she``, matched
  to the pronoun's case), WinoBias / Winogender style (Zhao et al. 2018; Rudinger et al. 2018).
- :class:`SeatEffect`: the SEAT effect size d of the pooled embeddings of the four sets (May et al. 2019), via
  :func:`pipeline.metrics.seat.effect_size`; a whole-set score, not a per-example one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor
from torch.nn import functional as F

from attribution.data import AttributionData, Batch, View, ViewName
from attribution.task_head import TaskHead, check_head
from pipeline.anatomy import Pooling, pool
from pipeline.data import MALE
from pipeline.metrics.counterfactual import true_class_prob_change
from pipeline.metrics.seat import effect_size
from pipeline.models import LoadedModel

__all__ = [
    "SCORES",
    "CounterfactualGap",
    "PronounGap",
    "Score",
    "SeatEffect",
    "SkewGap",
    "SkewedClassProb",
    "TaskLoss",
    "TrueClassProb",
    "final_hidden",
    "make_score",
    "view_features",
]


def final_hidden(loaded: LoadedModel, view: View) -> Float[Tensor, "batch seq d_model"]:
    """The last hidden state of ``view`` (runs the encoder body under the active hooks / prefix cache)."""
    out = loaded.anatomy.base(input_ids=view.input_ids, attention_mask=view.attention_mask)
    return out.last_hidden_state


class Score(ABC):
    """Base class: ``features`` reads what the score needs from one view, ``combine`` makes the number.

    Attributes:
        name: metric stem used in table rows (``ablation_delta_<name>``...).
        needs: the head the model must have: ``classifier``, ``mlm`` or ``encoder`` (any).
        views: which inputs are run: ``("orig",)`` or ``("orig", "cf")``.
        per_example: True when ``combine`` returns one value per example; False for whole-set scores.
    """

    name: ClassVar[str]
    needs: ClassVar[str]
    views: ClassVar[tuple[ViewName, ...]] = ("orig",)
    per_example: ClassVar[bool] = True

    def check(self, loaded: LoadedModel, data: AttributionData) -> None:
        """Raise ``ValueError`` if the model lacks the head or the data lacks the fields this score reads."""
        check_head(loaded, self.needs, type(self).__name__)
        if len(data) == 0:
            raise ValueError(f"data {data.name!r} is empty; attribution needs at least one example.")
        if "cf" in self.views and not data.has_counterfactual:
            raise ValueError(f"{type(self).__name__} needs gender-swapped twins; build the data with twins.")

    @abstractmethod
    def features(self, head: TaskHead, hidden: Float[Tensor, "batch seq d_model"], view: View) -> Tensor:
        """Per-row features of one view, shape (batch, k): small enough to keep for many gate settings."""

    @abstractmethod
    def combine(self, feats: dict[str, Tensor], batch: Batch) -> Tensor:
        """The score from the features of every view: shape (batch,) if ``per_example`` else ()."""

    def correct(self, feats: dict[str, Tensor], batch: Batch) -> Tensor | None:
        """Per-example task correctness (1.0 / 0.0, NaN when undefined), or None when the score has no task."""
        return None

    def __call__(self, loaded: LoadedModel, batch: Batch) -> Tensor:
        """Run every view of ``batch`` and combine: the score under the currently active hooks."""
        return self.combine({v: view_features(loaded, self, batch.view(v)) for v in self.views}, batch)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def view_features(loaded: LoadedModel, score: Score, view: View) -> Tensor:
    """Run the model on one view and return ``score.features`` (the one place a score runs the model)."""
    return score.features(TaskHead(loaded), final_hidden(loaded, view), view)


class _ClassifierScore(Score):
    needs = "classifier"

    def check(self, loaded: LoadedModel, data: AttributionData) -> None:
        super().check(loaded, data)
        if (data.labels < 0).any():
            raise ValueError(
                f"{type(self).__name__} needs a class label for every example; {data.name!r} has none. "
                "Build the data with AttributionData.from_task."
            )
        n_classes = loaded.model.config.num_labels
        if int(data.labels.max()) >= n_classes:
            raise ValueError(
                f"data {data.name!r} has label {int(data.labels.max())} but the classifier has "
                f"{n_classes} classes; load it with num_labels={len(data.label_names) or n_classes}."
            )

    def features(self, head: TaskHead, hidden: Tensor, view: View) -> Float[Tensor, "batch n_classes"]:
        return head.classify(hidden)

    def correct(self, feats: dict[str, Tensor], batch: Batch) -> Tensor:
        return (feats["orig"].argmax(-1) == batch.labels).to(feats["orig"].dtype)


class TaskLoss(_ClassifierScore):
    """Cross-entropy of the true class, per example."""

    name = "loss"

    def combine(self, feats: dict[str, Tensor], batch: Batch) -> Tensor:
        return F.cross_entropy(feats["orig"], batch.labels, reduction="none")


class TrueClassProb(_ClassifierScore):
    """Probability of the true class, per example."""

    name = "true_class_prob"

    def combine(self, feats: dict[str, Tensor], batch: Batch) -> Tensor:
        return feats["orig"].softmax(-1).gather(1, batch.labels[:, None]).squeeze(1)


class CounterfactualGap(_ClassifierScore):
    """``P(y | female version) - P(y | male version)`` per example (the oriented counterfactual gap).

    Without genders in the data the raw change ``p(y | twin) - p(y | original)`` is used.
    """

    name = "cf_gap"
    views = ("orig", "cf")

    def combine(self, feats: dict[str, Tensor], batch: Batch) -> Tensor:
        genders = batch.genders if bool((batch.genders >= 0).all()) else None
        return true_class_prob_change(feats["orig"], feats["cf"], batch.labels, genders)


class PronounGap(Score):
    """``log P(male form) - log P(female form)`` at the masked pronoun, per example."""

    name = "pronoun_gap"
    needs = "mlm"

    def check(self, loaded: LoadedModel, data: AttributionData) -> None:
        super().check(loaded, data)
        if (data.target_pos < 0).any() or (data.pronoun_ids < 0).any():
            raise ValueError(
                f"PronounGap needs a masked pronoun in every example; {data.name!r} has none. "
                "Build the data with AttributionData.from_pronouns (WinoBias / Winogender items)."
            )

    def features(self, head: TaskHead, hidden: Tensor, view: View) -> Float[Tensor, "batch 2"]:
        logp = head.mlm_at(hidden, view.target_pos)  # (batch, vocab)
        return logp.gather(1, view.pronoun_ids)  # (batch, 2): log P(male form), log P(female form)

    def combine(self, feats: dict[str, Tensor], batch: Batch) -> Tensor:
        return feats["orig"][:, 0] - feats["orig"][:, 1]

    def correct(self, feats: dict[str, Tensor], batch: Batch) -> Tensor:
        """1 when the model prefers the pronoun of the item's own gender; NaN for neutral items."""
        gap = self.combine(feats, batch)
        right = ((gap > 0) == (batch.genders == MALE)).to(gap.dtype)
        return torch.where(batch.genders >= 0, right, torch.full_like(gap, float("nan")))


class SeatEffect(Score):
    """SEAT effect size d of the pooled last-layer embeddings of the sets X, Y, A, B (one value per set).

    Args:
        pooling: ``mean`` (the default; sentence encoders such as MiniLM are trained with it) or ``cls``.
    """

    name = "seat_effect"
    needs = "encoder"
    per_example = False

    def __init__(self, pooling: Pooling = "mean") -> None:
        if pooling not in ("mean", "cls"):
            raise ValueError(f"pooling={pooling!r} is not supported; use 'mean' or 'cls'.")
        self.pooling = pooling

    def check(self, loaded: LoadedModel, data: AttributionData) -> None:
        super().check(loaded, data)
        present = set(data.groups.tolist())
        if not {0, 1, 2, 3} <= present:
            raise ValueError(
                f"SeatEffect needs items of all four sets X, Y, A, B; {data.name!r} has sets "
                f"{sorted(present)}. Build the data with AttributionData.from_seat."
            )

    def features(self, head: TaskHead, hidden: Tensor, view: View) -> Float[Tensor, "batch d_model"]:
        return pool(hidden, view.attention_mask, self.pooling)

    def combine(self, feats: dict[str, Tensor], batch: Batch) -> Tensor:
        emb = feats["orig"]
        return effect_size(*(emb[batch.groups == g] for g in range(4)))

    def __repr__(self) -> str:
        return f"SeatEffect(pooling={self.pooling!r})"


class _Oriented:
    """Mixin: the per-example score times ``orientation[y]`` (one value per class, +-1 or 0)."""

    def __init__(self, orientation: Sequence[float]) -> None:
        self.orientation = torch.as_tensor(np.asarray(orientation, dtype=np.float32))
        if self.orientation.ndim != 1 or not bool(torch.isfinite(self.orientation).all()):
            raise ValueError(f"orientation must be one finite value per class; got {list(np.ravel(orientation))}.")

    def check(self, loaded: LoadedModel, data: AttributionData) -> None:
        super().check(loaded, data)
        if len(self.orientation) != loaded.model.config.num_labels:
            raise ValueError(
                f"orientation has {len(self.orientation)} classes but the classifier has "
                f"{loaded.model.config.num_labels}; compute it with skew_orientation(training data of this task)."
            )

    def combine(self, feats: dict[str, Tensor], batch: Batch) -> Tensor:
        value = super().combine(feats, batch)
        return self.orientation.to(value.device, value.dtype)[batch.labels] * value

    def __repr__(self) -> str:
        return f"{type(self).__name__}(orientation={self.orientation.tolist()})"


class SkewGap(_Oriented, CounterfactualGap):
    """``orientation[y] * (P(y | female version) - P(y | male version))`` per example (module docstring)."""

    name = "cf_skew_gap"


class SkewedClassProb(_Oriented, TrueClassProb):
    """``orientation[y] * P(y | text)`` per example: what patching measures for :class:`SkewGap`."""

    name = "skew_class_prob"


SCORES: dict[str, type[Score]] = {"loss": TaskLoss, "prob": TrueClassProb, "cf_gap": CounterfactualGap,
                                  "cf_skew_gap": SkewGap, "pronoun_gap": PronounGap, "seat": SeatEffect}  # fmt: skip


def make_score(name: str, **kwargs) -> Score:
    """A score by its CLI name: ``loss``, ``prob``, ``cf_gap``, ``cf_skew_gap`` (``orientation=``), ``pronoun_gap``
    or ``seat``."""
    if name not in SCORES:
        raise ValueError(f"score={name!r} is not known; choose one of {', '.join(SCORES)}.")
    return SCORES[name](**kwargs)
