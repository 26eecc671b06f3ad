"""Activation patching / causal mediation analysis of gender (Vig et al. 2020).

Vig, Gehrmann, Belinkov, Qian, Nevo, Singer & Shieber (2020), "Investigating Gender Bias in Language Models
Using Causal Mediation Analysis", NeurIPS. With x an original text and x' its gender-swapped twin (same token
length, so positions align), and S a per-example score (true-class probability, loss, pronoun gap):

- total effect ``TE = S(x') - S(x)``: what the whole intervention does;
- indirect effect of head h ``NIE_h = S(x | z_h <- z_h(x')) - S(x)``: the original run with only head h's context
  vector taken from the twin's run, at every position; it measures how much of the gender effect is mediated by h.
  Optionally the same for chosen FFN neurons (unit ``neuron``).

Both are oriented by gender, like the counterfactual gap of :mod:`pipeline.metrics.counterfactual`: for a female
original the sign is flipped, so every effect reads "towards the female version" (a head that moves male texts
towards the female score and female texts towards the male one has a consistent, not a cancelling, mean). Pass
``orient=False`` for the raw ``S(patched) - S(x)``; examples of unknown gender are never flipped.

Patching head h is a closed gate whose baseline is the twin's activation (:class:`pipeline.gates.HeadGates` with
:class:`attribution.baselines.CounterfactualBaseline`), so the gate engine reuses the prefix-cached sweep of
:mod:`attribution.sweep`. ``engine="lens"`` computes the same effects with TransformerLens hooks
(:mod:`attribution.lens`); both agree to float precision. Pairs whose twin has another token length are left out
and counted (row ``pairs_dropped``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from attribution.baselines import CounterfactualBaseline
from attribution.data import AttributionData, aligned_pairs
from attribution.effect_rows import example_rows, head_unit, mean_ci, mean_ci_p, rows, with_q
from attribution.engine import evaluate
from attribution.lens import lens_patching, to_lens
from attribution.scores import Score
from attribution.sweep import fast_sweep, sweep_heads
from pipeline.data import FEMALE
from pipeline.gates import ones_gates
from pipeline.models import LoadedModel
from pipeline.schema import tidy

__all__ = ["ActivationPatching", "PatchingEffects"]

log = logging.getLogger(__name__)

Engine = Literal["gates", "lens"]


@dataclass(frozen=True)
class PatchingEffects:
    """Per-example results of patching, example axis first (sign-flipped for female originals when oriented).

    Attributes:
        original: the score of each original text, (n_ex,).
        total: the total effect of the gender swap, (n_ex,).
        indirect: the indirect effect of every head (sweep order), then of every chosen neuron, (n_ex, n_units).
    """

    original: Float[Tensor, " n_ex"]
    total: Float[Tensor, " n_ex"]
    indirect: Float[Tensor, "n_ex n_units"]


class ActivationPatching:
    """Indirect effect of every head (and chosen neurons) and the total effect of the gender swap.

    Args:
        loaded: the model.
        score: a single-view per-example score (e.g. :class:`attribution.scores.TrueClassProb`: then the total
            effect is the counterfactual gap).
        engine: ``gates`` (hooks of :mod:`pipeline.gates`, prefix-cached) or ``lens`` (TransformerLens hooks on the
            converted model).
    """

    example_effects_: pd.DataFrame | None = None  # set by attribute(): per-example head effects (head_examples)

    def __init__(self, loaded: LoadedModel, score: Score, *, engine: Engine = "gates") -> None:
        if engine not in ("gates", "lens"):
            raise ValueError(f"engine={engine!r} is not supported; use 'gates' or 'lens'.")
        if score.views != ("orig",) or not score.per_example:
            raise ValueError(
                f"ActivationPatching needs a per-example score of the original text alone; {score!r} "
                "already contrasts the twins or scores a whole set. Fix: use TrueClassProb() (its total "
                "effect is the counterfactual gap), TaskLoss() or PronounGap()."
            )
        self.loaded = loaded
        self.score = score
        self.engine = engine

    def pairs(self, data: AttributionData) -> tuple[AttributionData, int]:
        """The pairs whose twin keeps the token length (positions align), and the number left out (logged)."""
        self.score.check(self.loaded, data)
        return aligned_pairs(data, "patching")

    def _neuron_gates(self, neurons: Sequence[tuple[int, int]]) -> Tensor:
        """One condition per neuron, (n_neurons, layer, d_ff): all gates 1 except that neuron's."""
        anatomy = self.loaded.anatomy
        gates = ones_gates(anatomy, batch=len(neurons), neurons=True)
        for c, (layer, index) in enumerate(neurons):
            anatomy.check_layer(layer)
            if not 0 <= index < anatomy.d_ff:
                raise IndexError(f"neuron {index} is out of range for layer {layer}: 0..{anatomy.d_ff - 1}.")
            gates[c, layer, index] = 0.0
        return gates

    def effects(
        self,
        data: AttributionData,
        *,
        neurons: Sequence[tuple[int, int]] | None = None,
        orient: bool = True,
        batch_size: int = 64,
        examples: Sequence[int] | None = None,
        progress: bool = True,
    ) -> PatchingEffects:
        """Per-example effects of ``data`` (aligned pairs from :meth:`pairs`), or of its rows ``examples`` only.

        Raises:
            ValueError: some pair of ``data`` changes token length (call :meth:`pairs` first).
        """
        loaded, score = self.loaded, self.score
        score.check(loaded, data)
        if not bool((data.attention_mask.sum(1) == data.cf_attention_mask.sum(1)).all()):
            raise ValueError("effects() needs pairs of equal token length; pass the data from pairs(data)[0].")
        neuron_gates = self._neuron_gates(neurons) if neurons else None
        if examples is not None:
            data = data.subset(examples)
        ones = ones_gates(loaded.anatomy, batch=1)
        original = evaluate(loaded, score, data, ones, batch_size=batch_size).values[0]  # (n_ex,)
        swapped = evaluate(loaded, score, data.swapped(), ones, batch_size=batch_size).values[0]
        if self.engine == "lens":
            patched, _ = lens_patching(to_lens(loaded), score, data, batch_size=batch_size, progress=progress)
        else:
            patched, _ = fast_sweep(loaded, score, data, baseline=CounterfactualBaseline("head"),
                                    batch_size=batch_size, progress=progress)  # fmt: skip
        values = patched.values  # (n_heads, n_ex)
        if neuron_gates is not None:
            desc = "neuron patching" if progress else None
            base = CounterfactualBaseline("neuron")
            result = evaluate(loaded, score, data, neuron_gates, kind="neuron", baseline=base, batch_size=batch_size,
                              desc=desc)  # fmt: skip
            values = torch.cat([values, result.values])  # (n_units, n_ex)
        sign = torch.ones(len(data)) if not orient else torch.where(data.genders == FEMALE, -1.0, 1.0)
        sign = sign.to(original.device, original.dtype)  # (n_ex,)
        return PatchingEffects(original.cpu(), (sign * (swapped - original)).cpu(),
                               (sign * (values - original)).T.cpu())  # fmt: skip

    def tabulate(
        self,
        effects: PatchingEffects,
        *,
        neurons: Sequence[tuple[int, int]] | None = None,
        dropped: int = 0,
        orient: bool = True,
        n_boot: int = 1000,
        seed: int = 0,
    ) -> pd.DataFrame:
        """The table of :meth:`attribute` from the per-example effects of all examples (in data order)."""
        n = effects.original.shape[0]
        model = [{"unit": "model"}]
        table = rows(model, "intact_score", mean_ci(effects.original[None], n_boot=n_boot, seed=seed), n)
        table += rows(model, "total_effect", mean_ci_p(effects.total[None], n_boot=n_boot, seed=seed), n)
        table += rows(model, "pairs_dropped", ([dropped], [float("nan")], [float("nan")]), n + dropped)
        units = [head_unit(self.loaded.anatomy, l, h) for l, h in sweep_heads(self.loaded)]
        units += [{"unit": "neuron", "layer": l, "head": i} for l, i in neurons or ()]
        table += rows(units, "indirect_effect", mean_ci_p(effects.indirect.T, n_boot=n_boot, seed=seed), n)
        return with_q(tidy(table, variant="", score=self.score.name, engine=self.engine, oriented=orient))

    def attribute(
        self,
        data: AttributionData,
        *,
        neurons: Sequence[tuple[int, int]] | None = None,
        orient: bool = True,
        batch_size: int = 64,
        n_boot: int = 1000,
        seed: int = 0,
        progress: bool = True,
    ) -> pd.DataFrame:
        """Patch every head (and ``neurons``, as (layer, index) pairs) from the twins into the originals.

        With ``orient`` (default) effects of female originals are sign-flipped (see the module docstring).

        Returns:
            Rows: unit ``model`` with ``intact_score`` (the originals), ``total_effect`` and ``pairs_dropped``;
            unit ``head`` (and ``neuron``) with ``indirect_effect``; extra columns ``score`` and ``engine``. Effects
            carry ``p`` (sign-flip test of the mean effect over pairs) and ``q`` (Benjamini-Hochberg over all
            patched units, heads and neurons together).
        """
        pairs, dropped = self.pairs(data)
        effects = self.effects(pairs, neurons=neurons, orient=orient, batch_size=batch_size, progress=progress)
        self.example_effects_ = self.head_examples(effects, data.aligned_rows())
        return self.tabulate(effects, neurons=neurons, dropped=dropped, orient=orient, n_boot=n_boot, seed=seed)

    def head_examples(self, effects: PatchingEffects, examples: np.ndarray) -> pd.DataFrame:
        """The per-example indirect effects of every head, long (``example``: the row of each pair in the data the
        pairs came from, ``examples``), so the findings resample statistics over heads by example (RQ3, RQ4)."""
        units = [head_unit(self.loaded.anatomy, l, h) for l, h in sweep_heads(self.loaded)]
        frame = example_rows(units, "indirect_effect", effects.indirect[:, : len(units)].T)
        frame["example"] = np.asarray(examples)[frame["example"].to_numpy()]
        return tidy(frame, variant="", score=self.score.name, engine=self.engine)
