"""The one attribution-specific error: a score that does not depend on the gates at all.

A gradient (or integrated gradient) that is exactly zero for every head or neuron does not mean "no bias here":
it means the score never saw the gates (an untrained or constant head, a score that ignores the model output, a
model whose quantised layers carry no gradient). Gradient methods raise :class:`GateIndependentScoreError` so the
caller reports that, instead of writing a table of zeros that reads as "no unit carries bias".
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["GateIndependentScoreError", "check_depends_on_gates"]


class GateIndependentScoreError(ValueError):
    """The score has zero gradient with respect to every gate."""


def check_depends_on_gates(grads: Tensor, *, score: str, what: str) -> None:
    """Raise :class:`GateIndependentScoreError` when ``grads`` is zero (or not finite-free of signal) everywhere."""
    if not bool(torch.isfinite(grads).all()):
        raise ValueError(
            f"{what}: the gradients of score {score} are not finite; check the model and the data "
            "(a NaN in the inputs or a diverged model)."
        )
    if bool((grads == 0).all()):
        raise GateIndependentScoreError(
            f"{what}: score {score} has zero gradient with respect to every gate, so it does not depend on the "
            "heads/neurons at all. This is not evidence of 'no bias': the score is constant in the model's "
            "internals (e.g. an untrained or constant task head, a score that ignores the output, or identical "
            "original and swapped inputs). Fix: check the score, the data and that the head is trained."
        )
