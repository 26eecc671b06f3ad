"""What a switched-off head or neuron is replaced by: zero, its mean activation, or a counterfactual run.

A closed gate substitutes a baseline ``b`` (``z -> g z + (1 - g) b``, :mod:`pipeline.gates`). Zero ablation is
the usual head masking of Michel et al. (2019); mean ablation replaces a head's context vector by its mean over
the data's non-padding tokens, which keeps the downstream layers in distribution; activation patching (Vig et
al. 2020) substitutes the activation the same head produced on the gender-swapped twin, position by position.

A baseline is a callable ``(loaded, batch) -> per-layer list`` evaluated once per block of examples, so the
counterfactual run is shared by every head patched on that block; :func:`expand_baseline` repeats it for the
copies of a grid block.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal, Protocol

import torch
from jaxtyping import Float
from torch import Tensor

from attribution.batching import example_chunks
from attribution.data import AttributionData, Batch
from pipeline.gates import RecordHeads, RecordNeurons
from pipeline.models import LoadedModel

__all__ = [
    "ZERO",
    "Baseline",
    "BaselineValue",
    "CounterfactualBaseline",
    "StaticBaseline",
    "ZeroBaseline",
    "expand_baseline",
    "make_baseline",
    "mean_activations",
]

Kind = Literal["head", "neuron"]
BaselineValue = list[Tensor] | None  # per layer: (head, d_head) / (d_ff) static, or (batch, seq, ...) per example


class Baseline(Protocol):
    """``baseline(loaded, batch)`` gives the per-layer substitutes for that batch; ``per_example`` says whether
    they have a batch axis (and must be repeated for the copies of a grid block)."""

    per_example: ClassVar[bool]

    def __call__(self, loaded: LoadedModel, batch: Batch) -> BaselineValue: ...


@dataclass(frozen=True)
class ZeroBaseline:
    """Zero ablation: a closed gate outputs zero."""

    per_example: ClassVar[bool] = False

    def __call__(self, loaded: LoadedModel, batch: Batch) -> None:
        return None


@dataclass(frozen=True)
class StaticBaseline:
    """The same per-layer value for every example (e.g. the mean activation)."""

    value: list[Tensor]
    per_example: ClassVar[bool] = False

    def __call__(self, loaded: LoadedModel, batch: Batch) -> list[Tensor]:
        return [v.to(batch.input_ids.device) for v in self.value]


@dataclass(frozen=True)
class CounterfactualBaseline:
    """The activations of the gender-swapped twin of each example (for activation patching).

    Args:
        kind: ``head`` (context vectors, (batch, seq, head, d_head) per layer) or ``neuron`` (FFN
            intermediate activations, (batch, seq, d_ff) per layer).
    """

    kind: Kind = "head"
    per_example: ClassVar[bool] = True

    @torch.no_grad()
    def __call__(self, loaded: LoadedModel, batch: Batch) -> list[Tensor]:
        anatomy, view = loaded.anatomy, batch.view("cf")
        recorder = RecordHeads(anatomy) if self.kind == "head" else RecordNeurons(anatomy)
        with recorder:
            anatomy.base(input_ids=view.input_ids, attention_mask=view.attention_mask)
        stored = recorder.z if self.kind == "head" else recorder.act
        return [stored[layer] for layer in range(anatomy.n_layers)]


ZERO = ZeroBaseline()  # the default baseline (a module-level singleton: a default argument must not be a call)


def expand_baseline(baseline: Baseline, value: BaselineValue, copies: int) -> BaselineValue:
    """Repeat a per-example baseline for ``copies`` copy-major copies of its batch (static ones are shared)."""
    if value is None or not baseline.per_example or copies == 1:
        return value
    return [v.repeat(copies, *[1] * (v.dim() - 1)) for v in value]


@torch.no_grad()
def mean_activations(
    loaded: LoadedModel, data: AttributionData, *, kind: Kind = "head", batch_size: int = 32
) -> list[Float[Tensor, ...]]:
    """Mean context vector of every head, (head, d_head) per layer, or mean FFN activation, (d_ff,) per layer,
    over the non-padding tokens of the original texts (recorded with :class:`pipeline.gates.RecordHeads`)."""
    anatomy = loaded.anatomy
    sums: list[Tensor] = []
    count = 0.0
    for idx in example_chunks(len(data), batch_size):
        batch = data.batch(idx, loaded.device)
        recorder = RecordHeads(anatomy) if kind == "head" else RecordNeurons(anatomy)
        with recorder:
            anatomy.base(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
        stored = recorder.z if kind == "head" else recorder.act
        keep = batch.attention_mask.bool()  # (batch, seq)
        layer_sums = [stored[layer][keep].double().sum(0) for layer in range(anatomy.n_layers)]
        sums = layer_sums if not sums else [a + b for a, b in zip(sums, layer_sums)]
        count += float(keep.sum())
    dtype = next(loaded.model.parameters()).dtype
    return [(s / count).to(dtype) for s in sums]


def make_baseline(
    how: str, loaded: LoadedModel, data: AttributionData, *, kind: Kind = "head", batch_size: int = 32
) -> Baseline:
    """The baseline named ``how``: ``zero``, ``mean`` (over ``data``) or ``counterfactual``."""
    if how == "zero":
        return ZeroBaseline()
    if how == "mean":
        return StaticBaseline(mean_activations(loaded, data, kind=kind, batch_size=batch_size))
    if how == "counterfactual":
        return CounterfactualBaseline(kind)
    raise ValueError(f"baseline={how!r} is not supported; use 'zero', 'mean' or 'counterfactual'.")
