"""Evaluate a score under many gate settings: the grid engine behind ablation, patching and the sweeps.

A *condition* is one setting of all head (or neuron) gates, shape (layer, head) (or (layer, d_ff)): a single
head switched off, a whole layer, all but one head, the first k heads of a ranking. :func:`evaluate` runs every
(condition, example) pair, batching them with :func:`attribution.batching.grid_chunks` and per-example gates, so
one forward pass serves many conditions. A :class:`Collector` keeps the score's small per-row features and
combines them per condition at the end: per-example scores give a (condition, example) matrix, whole-set scores
(SEAT) one value per condition, and :meth:`GridResult.on` recombines a resample of the examples for bootstrap
intervals of whole-set scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from attribution.baselines import ZERO, Baseline, expand_baseline
from attribution.batching import grid_chunks, rows_of
from attribution.data import AttributionData, Batch
from attribution.scores import Score, view_features
from pipeline.gates import HeadGates, NeuronGates
from pipeline.models import LoadedModel

__all__ = ["Collector", "GridResult", "evaluate", "gate_context"]


@dataclass
class GridResult:
    """Scores of every condition.

    Attributes:
        score: the score that was evaluated.
        feats: per view, the features of every (condition, example) pair, (n_cond, n_ex, k).
        meta: all examples as one batch (labels, genders, sets), for recombining features.
        values: (n_cond, n_ex) for per-example scores, (n_cond,) for whole-set scores.
        correct: (n_cond, n_ex) task correctness (NaN where undefined), or None when the score has no task.
    """

    score: Score
    feats: dict[str, Tensor]
    meta: Batch
    values: Tensor
    correct: Tensor | None

    def on(self, idx: Int[Tensor, " m"]) -> Tensor:
        """The score of every condition recombined on the examples ``idx`` (a bootstrap resample): (n_cond, m)
        for per-example scores, (n_cond,) for whole-set scores."""
        idx = torch.as_tensor(idx).to(self.meta.index.device)
        values, _ = _combine(self.score, {v: f[:, idx] for v, f in self.feats.items()}, self.meta.rows(idx))
        return values


def _combine(score: Score, feats: dict[str, Tensor], meta: Batch) -> tuple[Tensor, Tensor | None]:
    """Score and correctness of every condition from (n_cond, n_ex, k) features, one condition at a time."""
    n_cond = next(iter(feats.values())).shape[0]
    per_cond = [{v: f[c] for v, f in feats.items()} for c in range(n_cond)]
    values = torch.stack([score.combine(f, meta) for f in per_cond])  # (n_cond, n_ex) or (n_cond,)
    correct = [score.correct(f, meta) for f in per_cond]
    return values, None if correct[0] is None else torch.stack(correct)


class Collector:
    """Writes the features of (condition, example) blocks into one (n_cond, n_ex, k) tensor per view as they come,
    then combines them per condition. Nothing is kept per block: a long sweep holds only the result."""

    def __init__(self, score: Score, n_cond: int, n_ex: int) -> None:
        self.score, self.n_cond, self.n_ex = score, n_cond, n_ex
        self._feats: dict[str, Tensor] = {}

    def add(self, cond: Int[Tensor, " c"], ex: Int[Tensor, " e"], feats: dict[str, Tensor]) -> None:
        """Features of a copy-major block: ``feats[v]`` has ``len(cond) * len(ex)`` rows."""
        for view in self.score.views:
            block = feats[view]  # (c * e, *k)
            if view not in self._feats:
                self._feats[view] = block.new_zeros(self.n_cond, self.n_ex, *block.shape[1:])  # (n_cond, n_ex, *k)
            cells = cond.to(block.device)[:, None], ex.to(block.device)[None, :]
            self._feats[view][cells] = block.view(len(cond), len(ex), *block.shape[1:])

    def finish(self, data: AttributionData, device: torch.device) -> GridResult:
        """Combine the collected features per condition."""
        meta = data.batch(torch.arange(self.n_ex), device)
        values, correct = _combine(self.score, self._feats, meta)
        return GridResult(self.score, self._feats, meta, values, correct)


def gate_context(
    loaded: LoadedModel,
    gates: Float[Tensor, "rows layer width"],
    *,
    kind: Literal["head", "neuron"] = "head",
    baseline=None,
    layers: Sequence[int] | None = None,
) -> HeadGates | NeuronGates:
    """Per-row gates as a context manager on ``layers``; by default all layers with gradients, and only the layers
    with a closed gate without."""
    if layers is None and not gates.requires_grad:
        layers = (gates != 1).any(0).any(-1).nonzero().flatten().tolist()
    cls = HeadGates if kind == "head" else NeuronGates
    return cls(loaded.anatomy, gates, baseline=baseline, layers=layers)


def evaluate(
    loaded: LoadedModel,
    score: Score,
    data: AttributionData,
    gates: Float[Tensor, "n_cond layer width"],
    *,
    kind: Literal["head", "neuron"] = "head",
    baseline: Baseline = ZERO,
    batch_size: int = 64,
    layers: Sequence[int] | None = None,
    desc: str | None = None,
) -> GridResult:
    """Evaluate ``score`` on every example under every condition ``gates[c]``.

    Gradients flow to ``gates`` when it requires grad (used for integrated gradients of whole-set scores);
    otherwise everything runs under ``no_grad``.

    Args:
        loaded: the model.
        score: the score (checked against model and data).
        data: the examples.
        gates: one gate setting per condition, (n_cond, layer, head) or (n_cond, layer, d_ff) for neurons.
        kind: ``head`` or ``neuron`` gates.
        baseline: what closed gates substitute (zero, mean, counterfactual).
        batch_size: rows (condition x example pairs) per forward pass.
        layers: hook only these layers' gates (default: see :func:`gate_context`).
        desc: progress-bar label; None hides the bar.
    """
    score.check(loaded, data)
    device = loaded.device
    n_cond, n_ex = gates.shape[0], len(data)
    collector = Collector(score, n_cond, n_ex)
    blocks = list(grid_chunks(n_cond, n_ex, batch_size))
    with torch.set_grad_enabled(gates.requires_grad):
        last_ex, base = None, None
        for ex, cond in tqdm(blocks, desc=desc, disable=desc is None, leave=False):
            if last_ex is None or not torch.equal(ex, last_ex):
                batch = data.batch(ex, device)
                base, last_ex = baseline(loaded, batch), ex
            rows = batch.repeat(len(cond))
            row_gates = gates[rows_of(cond, len(ex)).to(gates.device)].to(device)  # (c * e, layer, width)
            with gate_context(
                loaded, row_gates, kind=kind, baseline=expand_baseline(baseline, base, len(cond)), layers=layers
            ):
                feats = {v: view_features(loaded, score, rows.view(v)) for v in score.views}
            collector.add(cond, ex, feats)
    return collector.finish(data, device)
