"""Integrated gradients with captum: over input tokens, over heads, over FFN neurons.

Sundararajan, Taly & Yan (2017), "Axiomatic Attribution for Deep Networks", ICML: for a path from a baseline x'
to the input x, ``IG_i = (x_i - x'_i) * integral_0^1 dF(x' + a (x - x')) / dx_i da``, and completeness holds:
``sum_i IG_i = F(x) - F(x')``. captum's ``IntegratedGradients`` / ``LayerIntegratedGradients`` compute it and
return the convergence delta ``sum_i IG_i - (F(x) - F(x'))`` per example; every row here carries it (column
``delta``, mean |delta| over the examples behind the row; ``delta_rel``, the largest |delta| / |F(x) - F(x')|),
and a warning is raised when some example's |delta| exceeds 1% of its |F(x) - F(x')| (raise ``n_steps``).

- :class:`TokenIntegratedGradients` (:mod:`attribution.token_ig`): over the word embeddings. Baseline
  ``twin`` (the default): the gender-swapped twin's embeddings (same token length; other pairs are left out and
  counted), so the attributions of an example sum to ``S(text) - S(twin)``: for the counterfactual gap (twin held
  fixed, ``S(twin) = 0``) its *bias*, carried by the gendered words. Baseline ``padding``: special tokens ([CLS],
  [SEP], [MASK]) kept, every other token [PAD]: the attributions sum to ``S(text) - S(padding)``, which explains
  the *prediction* (mostly ``P(y | text) - P(y | empty)``), not the bias.
- :class:`HeadIntegratedGradients`: over the head gates, scaled 0 -> 1 (Hao, Dong, Wei & Xu 2021, "Self-Attention
  Attribution", AAAI): at 0 a head outputs its baseline (zero or its mean), at 1 its real output.
- :class:`NeuronIntegratedGradients`: over the FFN neuron gates of all layers at once; ``act * g`` with g: 0 -> 1 is
  exactly the path "intermediate activations 0 -> observed" of Knowledge Neurons (Dai et al. 2022, ACL).

Per-example gates make each example's path independent, so several examples share one captum call, and a sharded
run (:mod:`attribution.shard`) can integrate a share of the examples per process (``examples=``) and tabulate the
concatenated per-example attributions once (:meth:`~_GateIntegratedGradients.tabulate`).
``batch_size`` is the number of rows (example x integration step) in one forward pass, as everywhere here:
``batch_size // n_steps`` examples go into one captum call, whose steps captum cuts into forward passes of
``batch_size`` rows (``internal_batch_size``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd
import torch
from captum.attr import IntegratedGradients
from torch import Tensor
from tqdm.auto import tqdm

from attribution.baselines import make_baseline
from attribution.batching import check_batch_size
from attribution.data import AttributionData, Batch
from attribution.effect_rows import head_unit, mean_ci_p, rows, with_q
from attribution.engine import evaluate, gate_context
from attribution.errors import check_depends_on_gates
from attribution.ig_common import check_delta as _check_delta
from attribution.ig_common import example_blocks as _example_chunks
from attribution.ig_common import frozen_parameters as _frozen_parameters
from attribution.scores import Score
from attribution.sweep import sweep_heads
from attribution.token_ig import TokenIntegratedGradients
from pipeline.models import LoadedModel
from pipeline.schema import tidy

__all__ = ["HeadIntegratedGradients", "NeuronIntegratedGradients", "TokenIntegratedGradients"]


def _nanmax(values: np.ndarray) -> float:
    """Largest finite value, NaN when there is none (every F(x) equal to its F(baseline))."""
    finite = values[np.isfinite(values)]
    return float(finite.max()) if finite.size else float("nan")


class _GateIntegratedGradients(ABC):
    """IG over one gate tensor per example: heads (layer, head) or neurons (layer, d_ff).

    Args:
        loaded: the model (needs gradients).
        score: the score to explain.
        layers: integrate over the gates of these layers only (default all); the other layers keep their real
            output and are not hooked, so gradients stop at the lowest chosen layer.
    """

    kind: Literal["head", "neuron"]

    def __init__(self, loaded: LoadedModel, score: Score, *, layers: Sequence[int] | None = None) -> None:
        self.loaded = loaded
        self.score = score
        self.layers = layers

    def _layers(self) -> list[int]:
        anatomy = self.loaded.anatomy
        chosen = list(range(anatomy.n_layers)) if self.layers is None else [int(x) for x in self.layers]
        for layer in chosen:
            anatomy.check_layer(layer)
        return chosen

    def _width(self) -> int:
        return self.loaded.anatomy.n_heads if self.kind == "head" else self.loaded.anatomy.d_ff

    @_frozen_parameters
    def integrate(
        self,
        data: AttributionData,
        *,
        n_steps: int = 50,
        method: str = "gausslegendre",
        baseline: Literal["zero", "mean"] = "zero",
        batch_size: int = 64,
        examples: Sequence[int] | None = None,
        progress: bool = True,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """``(attributions, delta, F(x) - F(baseline))``: (n_ex, layer, width), (n_ex,), (n_ex,); one row per
        example (of ``examples`` only, when given: the mean baseline still comes from all of ``data``), or a single
        row for a whole-set score."""
        loaded, score, anatomy = self.loaded, self.score, self.loaded.anatomy
        score.check(loaded, data)
        check_batch_size(batch_size)
        layers = self._layers()
        if examples is not None and not score.per_example:
            raise ValueError(
                f"{score!r} scores the whole set at once, so its examples cannot be split (examples=); "
                "integrate all of them in one process."
            )
        base = make_baseline(baseline, loaded, data, kind=self.kind, batch_size=batch_size)
        width, device = self._width(), loaded.device
        name = type(self).__name__
        if not score.per_example:  # gates shared by all items: F(g) scores the whole set under gates g

            def whole_set(gates: Tensor) -> Tensor:
                return evaluate(loaded, score, data, gates, kind=self.kind, baseline=base, batch_size=batch_size,
                                layers=layers).values  # fmt: skip

            ones = torch.ones(1, anatomy.n_layers, width, device=device)
            attr, delta = IntegratedGradients(whole_set).attribute(
                ones, torch.zeros_like(ones), n_steps=n_steps, method=method, return_convergence_delta=True,
                internal_batch_size=max(1, batch_size // len(data)))  # fmt: skip
            with torch.no_grad():
                diff = whole_set(ones) - whole_set(torch.zeros_like(ones))
            return attr.detach().cpu(), delta.detach().cpu(), diff.cpu()
        attrs, deltas, diffs = [], [], []
        per_call = max(1, batch_size // n_steps)  # examples per captum call; each forward has ~batch_size rows
        for ex in tqdm(_example_chunks(len(data), examples, per_call), desc=name, disable=not progress, leave=False):
            batch = data.batch(ex, device)
            static = base(loaded, batch)

            def forward(gates: Tensor, rows: Tensor, batch: Batch = batch, static=static) -> Tensor:
                with gate_context(loaded, gates, kind=self.kind, baseline=static, layers=layers):
                    return score(loaded, batch.rows(rows))

            ones = torch.ones(len(ex), anatomy.n_layers, width, device=device)
            rows_arg = torch.arange(len(ex), device=device)
            attr, delta = IntegratedGradients(forward).attribute(
                ones, torch.zeros_like(ones), additional_forward_args=(rows_arg,), n_steps=n_steps, method=method,
                internal_batch_size=batch_size, return_convergence_delta=True)  # fmt: skip
            with torch.no_grad():
                diff = forward(ones, rows_arg) - forward(torch.zeros_like(ones), rows_arg)
            attrs.append(attr.detach().cpu())
            deltas.append(delta.detach().cpu())
            diffs.append(diff.cpu())
        return torch.cat(attrs), torch.cat(deltas), torch.cat(diffs)

    @abstractmethod
    def _units(self) -> tuple[list[dict], list[tuple[int, int]]]:
        """Row keys of every unit and its (layer, index) in the gate tensor."""

    def tabulate(
        self,
        attr: Tensor,
        delta: Tensor,
        diff: Tensor,
        *,
        n: int,
        n_steps: int,
        baseline: str,
        n_boot: int = 1000,
        seed: int = 0,
    ) -> pd.DataFrame:
        """The table of :meth:`attribute` from the output of :meth:`integrate` over all ``n`` examples.

        Raises:
            GateIndependentScoreError: every attribution is exactly zero.
        """
        check_depends_on_gates(attr, score=self.score.name, what=type(self).__name__)
        rel = _check_delta(delta, diff, type(self).__name__, n_steps)
        units, index = self._units()
        layer, unit = torch.tensor(index).T  # (n_units,) each
        per_unit = attr[:, layer, unit].T  # (n_units, n_rows)
        if self.score.per_example:
            estimate = mean_ci_p(per_unit, n_boot=n_boot, seed=seed)
            total = mean_ci_p(diff[None], n_boot=n_boot, seed=seed)
        else:
            nan = np.full(len(units), np.nan)
            estimate, total = (per_unit[:, 0].double().numpy(), nan, nan), (diff.double().numpy(), [np.nan], [np.nan])
        extra = {"delta": float(delta.abs().mean()), "delta_rel": _nanmax(rel)}
        table = rows([{"unit": "model"}], "ig_total", total, n, **extra)
        table += rows(units, "ig", estimate, n, **extra)
        return with_q(tidy(table, variant="", score=self.score.name, baseline=baseline, n_steps=n_steps))

    def attribute(
        self,
        data: AttributionData,
        *,
        n_steps: int = 50,
        method: str = "gausslegendre",
        baseline: Literal["zero", "mean"] = "zero",
        batch_size: int = 64,
        n_boot: int = 1000,
        seed: int = 0,
        progress: bool = True,
    ) -> pd.DataFrame:
        """Mean attribution per unit over examples (metric ``ig``, bootstrap interval), with the convergence
        columns ``delta`` and ``delta_rel``, and a ``model`` row ``ig_total`` with the mean ``F(x) - F(baseline)``
        that the attributions of each example sum to; column ``score`` names the score. Per-example scores add
        ``p`` (sign-flip test of the mean attribution being 0) and ``q`` (Benjamini-Hochberg over the units).

        Raises:
            GateIndependentScoreError: every attribution is exactly zero.
        """
        attr, delta, diff = self.integrate(data, n_steps=n_steps, method=method, baseline=baseline,
                                           batch_size=batch_size, progress=progress)  # fmt: skip
        return self.tabulate(attr, delta, diff, n=len(data), n_steps=n_steps, baseline=baseline, n_boot=n_boot,
                             seed=seed)  # fmt: skip


class HeadIntegratedGradients(_GateIntegratedGradients):
    """Integrated gradients over head gates 0 -> 1 (Hao et al. 2021), all heads at once, per example.

    Args:
        loaded: the model (needs gradients).
        score: the score to explain.
        layers: only the heads of these layers (default all).
    """

    kind = "head"

    def _units(self) -> tuple[list[dict], list[tuple[int, int]]]:
        heads = sweep_heads(self.loaded, self._layers())
        return [head_unit(self.loaded.anatomy, l, h) for l, h in heads], heads


class NeuronIntegratedGradients(_GateIntegratedGradients):
    """Integrated gradients over the FFN activations of all layers, 0 -> observed (Dai et al. 2022).

    Rows have unit ``neuron`` with ``layer`` and ``head`` = the neuron's index in the layer. ``layers=`` keeps the
    neurons of those layers only (Dai et al. integrate one layer at a time; all at once costs one backward pass).
    """

    kind = "neuron"

    def _units(self) -> tuple[list[dict], list[tuple[int, int]]]:
        index = [(l, i) for l in self._layers() for i in range(self.loaded.anatomy.d_ff)]
        return [{"unit": "neuron", "layer": l, "head": i} for l, i in index], index
