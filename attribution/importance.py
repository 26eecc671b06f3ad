"""Gradient head importance from gates (Michel et al. 2019).

Michel, Levy & Neubig (2019), "Are Sixteen Heads Really Better than One?", NeurIPS, section 4.1: with a gate
``xi_h`` multiplying every head's output, the importance of head h is the expected sensitivity of the score at
``xi = 1``::

    I_h = E_x | d S(x) / d xi_h |

Here every example gets its own copy of the gates (per-example gates of :class:`pipeline.gates.HeadGates`, all
ones and requiring grad), so one backward pass of the summed score over a batch gives every example's gradient at
once: the rows of the gate gradient are independent because the gates of row i touch only row i. For whole-set
scores (SEAT) the gates are global and the gradient is that of the set's score. A score whose gradient is zero
for every head is reported with :class:`attribution.errors.GateIndependentScoreError`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from attribution.batching import check_batch_size, example_chunks
from attribution.data import AttributionData
from attribution.effect_rows import head_unit, mean_ci, mean_ci_p, rows, with_q
from attribution.engine import Collector
from attribution.errors import check_depends_on_gates
from attribution.scores import Score, view_features
from attribution.sweep import sweep_heads
from pipeline.gates import HeadGates, ones_gates
from pipeline.models import LoadedModel
from pipeline.schema import tidy

__all__ = ["GradientHeadImportance"]


def _grad(output: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
    """d output / d gates without touching any parameter's ``.grad``; zeros when the gates were never used."""
    if not output.requires_grad:
        return torch.zeros_like(gates)
    (grad,) = torch.autograd.grad(output, gates, allow_unused=True)
    return torch.zeros_like(gates) if grad is None else grad


class GradientHeadImportance:
    """``I_h = E |dS/dg_h|`` at all-ones gates, one backward pass per batch.

    Args:
        loaded: the model (needs gradients: not an int8 model).
        score: the score to differentiate.
    """

    def __init__(self, loaded: LoadedModel, score: Score) -> None:
        self.loaded = loaded
        self.score = score

    def gradients(self, data: AttributionData, *, batch_size: int = 32, progress: bool = True) -> torch.Tensor:
        """Raw gate gradients: (n_ex, layer, head) per example, or (1, layer, head) for a whole-set score."""
        loaded, score, anatomy = self.loaded, self.score, self.loaded.anatomy
        score.check(loaded, data)
        check_batch_size(batch_size)
        chunks = list(example_chunks(len(data), batch_size))
        if not score.per_example:  # one global gate tensor; the set's score needs every item's features
            gates = ones_gates(anatomy, requires_grad=True, device=loaded.device)  # (layer, head)
            collector = Collector(score, 1, len(data))
            with HeadGates(anatomy, gates):
                for ex in tqdm(chunks, desc="gradient importance", disable=not progress, leave=False):
                    batch = data.batch(ex, loaded.device)
                    collector.add(torch.tensor([0]), ex, {v: view_features(loaded, score, batch.view(v))
                                                          for v in score.views})  # fmt: skip
            return _grad(collector.finish(data, loaded.device).values.sum(), gates).unsqueeze(0).cpu()
        grads = []
        for ex in tqdm(chunks, desc="gradient importance", disable=not progress, leave=False):
            batch = data.batch(ex, loaded.device)
            gates = ones_gates(anatomy, batch=len(ex), requires_grad=True, device=loaded.device)  # (b, layer, head)
            with HeadGates(anatomy, gates):
                grads.append(_grad(score(loaded, batch).sum(), gates).cpu())
        return torch.cat(grads)

    def attribute(
        self, data: AttributionData, *, batch_size: int = 32, n_boot: int = 1000, seed: int = 0, progress: bool = True
    ) -> pd.DataFrame:
        """Importance of every head: metric ``grad_importance`` (mean |gradient|, bootstrap interval over examples)
        and ``grad`` (mean signed gradient: minus the first-order effect of closing the gate); column ``score``.
        ``grad`` rows carry ``p`` (sign-flip test of the mean gradient being 0) and ``q`` (Benjamini-Hochberg over
        the heads); ``grad_importance`` is a mean magnitude, which has no zero-centred null, so its ``p`` is NaN.

        Raises:
            GateIndependentScoreError: the gradient is zero for every head and example.
        """
        grads = self.gradients(data, batch_size=batch_size, progress=progress)
        name = self.score.name
        check_depends_on_gates(grads, score=name, what="GradientHeadImportance")
        heads = sweep_heads(self.loaded)
        per_head = torch.stack([grads[:, l, h] for l, h in heads])  # (n_heads, n_ex)
        units = [head_unit(self.loaded.anatomy, l, h) for l, h in heads]
        n = len(data)
        if self.score.per_example:
            magnitude = mean_ci(per_head.abs(), n_boot=n_boot, seed=seed)
            signed = mean_ci_p(per_head, n_boot=n_boot, seed=seed)
        else:  # one gradient of the whole set: no resampling of examples here
            value = per_head[:, 0].double().numpy()
            nan = np.full_like(value, np.nan)
            magnitude, signed = (np.abs(value), nan, nan), (value, nan, nan)
        table = rows(units, "grad_importance", magnitude, n) + rows(units, "grad", signed, n)
        return with_q(tidy(table, variant="", score=name))
