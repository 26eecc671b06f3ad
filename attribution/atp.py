"""Attribution patching: a first-order estimate of every head's and FFN neuron's ablation or patching effect from
one forward and one backward pass per example, then exact confirmation of the units that matter.

Nanda (2023), "Attribution Patching"; Kramár et al. (2024), "AtP*: An efficient and scalable method for localizing
LLM behaviour to components". Every unit u sits behind a gate (:mod:`pipeline.gates`): ``z_u -> g_u z_u + (1 - g_u)
b_u`` with baseline ``b_u`` (zero, the mean activation, or the activation on the gender-swapped twin: patching).
Closing the gate (``g_u: 1 -> 0``) is the exact intervention of the ablation sweep and of activation patching; its
first-order estimate is

    S(g_u = 0) - S(1)  ~=  -dS/dg_u |_{g = 1}  =  <dS/dz_u, b_u - z_u>,

and per-example gates (one row of gates per example, all requiring grad) give it for every head and neuron of every
layer and every example from one backward pass of the summed score; the twin's activations need one more forward.

Where first-order estimates fail, and what is done about it:

- AtP*'s query/key fix is about patching a head's *attention pattern*, whose effect passes through that head's own
  softmax, which saturates. The gate here acts on the head's output after its softmax, so that softmax is not
  between the gate and the score and the fix has nothing to correct; the estimate is exact when the score is linear
  in the gates (a test checks it on such a model).
- What remains is downstream curvature: later attention softmaxes, LayerNorm, GELU and a saturated output
  probability (a true-class probability near 0 or 1 has a small gradient but can move a lot). AtP*'s GradDrop (for
  cancellation between paths) is not implemented. Large interventions (a twin whose activations differ much from
  the original's) are the usual failure; hence *screen, then confirm*: the ``confirm_top`` units with the largest
  estimates are re-measured exactly with the grid engine (:func:`attribution.engine.evaluate`), and both numbers
  are stored (``value`` = estimate, ``exact``), so the table shows how good the screen was on this model.
- Screen and confirmation use disjoint halves of the examples (a seeded split, :func:`attribution.data.split_rows`):
  a unit picked for its large estimate on some examples is re-measured on others, so its exact interval and p-value
  are not inflated by the selection. Since a screen can miss a unit of the true top k, confirm about 2k
  (docs/ATTRIBUTION.md gives the measured recall).
- Patching from twins reads the twin position by position: pairs whose twin has another token length are left out
  and counted (row ``pairs_dropped``) by the same path as :class:`~attribution.patching.ActivationPatching`.

Intervals: head estimates get a percentile bootstrap over examples and the p-value of every per-unit table
(:func:`attribution.effect_rows.mean_ci_p`); neuron estimates (tens of thousands of units) get a t interval and
t-test p-value from running sums, so memory stays flat in the number of examples. q-values are per unit kind.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from typing import Literal

import numpy as np
import pandas as pd
import torch
from scipy import stats
from torch import Tensor
from tqdm.auto import tqdm

from attribution.baselines import Baseline, make_baseline
from attribution.batching import check_batch_size, example_chunks
from attribution.data import AttributionData, aligned_pairs, split_rows
from attribution.effect_rows import head_unit, mean_ci_p, rows, with_q
from attribution.engine import evaluate
from attribution.errors import check_depends_on_gates
from attribution.scores import Score
from pipeline.data import FEMALE
from pipeline.gates import HeadGates, NeuronGates, ones_gates
from pipeline.models import LoadedModel
from pipeline.schema import tidy
from pipeline.stats import bh_qvalues

__all__ = ["AttributionPatching"]

Kind = Literal["head", "neuron"]
BaselineName = Literal["zero", "mean", "counterfactual"]


class _Moments:
    """Running sum and sum of squares of per-example values, (layer, width), in float64."""

    def __init__(self) -> None:
        self.n, self.sum, self.sumsq = 0, None, None

    def add(self, values: Tensor) -> None:  # (batch, layer, width)
        v = values.double()
        self.sum = v.sum(0) if self.sum is None else self.sum + v.sum(0)
        self.sumsq = (v**2).sum(0) if self.sumsq is None else self.sumsq + (v**2).sum(0)
        self.n += v.shape[0]

    def mean_ci_p(self) -> tuple[np.ndarray, ...]:
        """Mean, 95% t interval and two-sided t-test p of the mean being 0, per unit (flattened)."""
        n = self.n
        mean = (self.sum / n).flatten().numpy()
        var = ((self.sumsq / n).flatten().numpy() - mean**2) * n / max(n - 1, 1)
        se = np.sqrt(np.clip(var, 0, None) / n)
        half = stats.t.ppf(0.975, max(n - 1, 1)) * se
        with np.errstate(divide="ignore", invalid="ignore"):
            p = np.where(se > 0, 2 * stats.t.sf(np.abs(mean / se), max(n - 1, 1)), np.where(mean == 0, 1.0, 0.0))
        return mean, mean - half, mean + half, p


class AttributionPatching:
    """First-order ablation / patching effects of every head and FFN neuron, confirmed exactly on the top units.

    Args:
        loaded: the model (needs gradients: not an int8 model).
        score: a per-example score; with ``baseline="counterfactual"`` it must read the original text alone (e.g.
            :class:`~attribution.scores.TrueClassProb`, whose total effect under the swap is the counterfactual gap).
        baseline: what a closed gate substitutes: ``zero``, ``mean`` (over the data) or ``counterfactual``.
    """

    def __init__(self, loaded: LoadedModel, score: Score, *, baseline: BaselineName = "zero") -> None:
        self.loaded, self.score, self.baseline = loaded, score, baseline

    def _check(self, data: AttributionData, units: Sequence[Kind]) -> None:
        self.score.check(self.loaded, data)
        if not self.score.per_example:
            raise ValueError(
                f"attribution patching needs a per-example score; {self.score!r} scores whole sets "
                "(SEAT). Use HeadAblation / HeadIntegratedGradients for it."
            )
        if self.baseline == "counterfactual" and (self.score.views != ("orig",) or not data.has_counterfactual):
            raise ValueError(
                f"baseline='counterfactual' patches the twin's activations into the original run: it "
                f"needs a score of the original text alone and data with twins; got {self.score!r} on "
                f"{data.name!r}. Use TrueClassProb (the counterfactual gap's total effect)."
            )
        bad = sorted(set(units) - {"head", "neuron"})
        if bad or not units:
            raise ValueError(f"units={list(units)!r}: give 'head' and/or 'neuron'.")

    def _check_aligned(self, data: AttributionData) -> None:
        if self.baseline != "counterfactual":
            return
        same = data.attention_mask.sum(1) == data.cf_attention_mask.sum(1)
        if not bool(same.all()):
            raise ValueError(
                f"{int((~same).sum())} pairs of {data.name!r} change token length under the swap, so the twin's "
                "activations would be patched into shifted positions; pass aligned_pairs(data)[0] (attribute() does)."
            )

    def _baselines(self, data: AttributionData, batch_size: int) -> dict[str, Baseline]:
        return {k: make_baseline(self.baseline, self.loaded, data, kind=k, batch_size=batch_size)
                for k in ("head", "neuron")}  # fmt: skip

    def estimates(
        self,
        data: AttributionData,
        *,
        units: Sequence[Kind] = ("head", "neuron"),
        batch_size: int = 32,
        per_example: Sequence[Kind] = ("head", "neuron"),
        progress: bool = True,
        baselines: dict[str, Baseline] | None = None,
    ) -> dict[str, Tensor | _Moments]:
        """Estimated effects ``-dS/dg`` per unit: a (n_ex, layer, width) tensor for the kinds in ``per_example``,
        running moments for the others (memory flat in the number of examples)."""
        self._check(data, units)
        self._check_aligned(data)
        check_batch_size(batch_size)
        loaded, anatomy = self.loaded, self.loaded.anatomy
        baselines = baselines or self._baselines(data, batch_size)
        found: dict[str, list[Tensor] | _Moments] = {k: [] if k in per_example else _Moments() for k in units}
        for ex in tqdm(list(example_chunks(len(data), batch_size)), desc="attribution patching", disable=not progress,
                       leave=False):  # fmt: skip
            batch = data.batch(ex, loaded.device)
            gates = {
                k: ones_gates(anatomy, batch=len(ex), neurons=k == "neuron", requires_grad=True, device=loaded.device)
                for k in units
            }  # (batch, layer, head | d_ff)
            hooks = [cls(anatomy, gates[k], baseline=baselines[k](loaded, batch))
                     for k, cls in (("head", HeadGates), ("neuron", NeuronGates)) if k in units]  # fmt: skip
            with ExitStack() as stack, torch.enable_grad():
                for hook in hooks:
                    stack.enter_context(hook)
                total = self.score(loaded, batch).sum()
            grads = torch.autograd.grad(total, [gates[k] for k in units], allow_unused=True)
            sign = self._orientation(data, ex)[:, None, None]  # (batch, 1, 1)
            for k, grad in zip(units, grads, strict=True):
                effect = -(torch.zeros_like(gates[k]) if grad is None else grad).detach().cpu() * sign  # (b, layer, w)
                found[k].append(effect) if k in per_example else found[k].add(effect)
        return {k: torch.cat(v) if k in per_example else v for k, v in found.items()}

    def exact(
        self,
        data: AttributionData,
        kind: Kind,
        units: Sequence[tuple[int, int]],
        *,
        batch_size: int = 32,
        baseline: Baseline | None = None,
    ) -> Tensor:
        """Exact per-example effects ``S(unit closed) - S(intact)`` of ``units`` (layer, local index): (k, n_ex),
        oriented by gender when patching from twins (see :meth:`_orientation`)."""
        self._check_aligned(data)
        anatomy = self.loaded.anatomy
        width = anatomy.n_heads if kind == "head" else anatomy.d_ff
        gates = torch.ones(len(units) + 1, anatomy.n_layers, width)  # condition 0: intact
        for c, (layer, index) in enumerate(units, start=1):
            gates[c, layer, index] = 0.0
        base = baseline or make_baseline(self.baseline, self.loaded, data, kind=kind, batch_size=batch_size)
        result = evaluate(self.loaded, self.score, data, gates, kind=kind, baseline=base, batch_size=batch_size)
        sign = self._orientation(data, torch.arange(len(data)))[None, :]  # (1, n_ex)
        return (result.values[1:] - result.values[:1]).detach().cpu().float() * sign

    def _orientation(self, data: AttributionData, ex: Tensor) -> Tensor:
        """+1, or -1 for female originals when patching from twins, so every patching effect reads "towards the
        female version" as in :class:`~attribution.patching.ActivationPatching` (zero and mean: +1)."""
        if self.baseline != "counterfactual":
            return torch.ones(len(ex))
        return torch.where(data.genders[ex].cpu() == FEMALE, -1.0, 1.0)

    def attribute(
        self,
        data: AttributionData,
        *,
        units: Sequence[Kind] = ("head", "neuron"),
        confirm_top: int = 20,
        batch_size: int = 32,
        n_boot: int = 1000,
        seed: int = 0,
        progress: bool = True,
    ) -> pd.DataFrame:
        """The ``atp_estimate`` of every head and neuron, with its interval, ``p`` and ``q`` (Benjamini-Hochberg within
        heads, within neurons), and for the ``confirm_top`` units of each kind with the largest |estimate| the exact
        effect (``exact``, ``exact_ci_low``, ``exact_ci_high``, ``exact_p``, ``exact_q``; NaN elsewhere) and
        ``confirmed`` = 1.

        With ``confirm_top`` > 0 the examples are split in two with ``seed`` (:func:`attribution.data.split_rows`):
        the estimates (column ``n``) come from one part, the exact effects (column ``exact_n``) from the other.
        Patching from twins first leaves out the pairs whose twin changes token length (model row
        ``pairs_dropped``), as :class:`~attribution.patching.ActivationPatching` does.

        Raises:
            GateIndependentScoreError: the score does not depend on any gate.
            ValueError: fewer than 2 examples to split (with ``confirm_top`` > 0).
        """
        self._check(data, units)
        dropped, model_rows = 0, []
        if self.baseline == "counterfactual":
            data, dropped = aligned_pairs(data, "attribution patching")
            model_rows = rows(
                [{"unit": "model"}], "pairs_dropped", ([dropped], [np.nan], [np.nan]), len(data) + dropped
            )
        screen_rows, confirm_rows = split_rows(len(data), seed) if confirm_top else (np.arange(len(data)), None)
        baselines = self._baselines(data, batch_size)  # the mean baseline: over all examples (it defines the gate)
        screen = data.subset(screen_rows)
        confirm = None if confirm_rows is None else data.subset(confirm_rows)
        # heads are few: per-example values, for the bootstrap interval and p of every table; neurons: running moments
        found = self.estimates(screen, units=units, batch_size=batch_size, progress=progress, baselines=baselines,
                               per_example=("head",))  # fmt: skip
        anatomy, frames = self.loaded.anatomy, [pd.DataFrame(model_rows)] if model_rows else []
        for kind, got in found.items():
            check_depends_on_gates(got if kind == "head" else got.sumsq, score=self.score.name,
                                   what="AttributionPatching")  # fmt: skip
            width = anatomy.n_heads if kind == "head" else anatomy.d_ff
            keys = [(l, i) for l in range(anatomy.n_layers)
                    for i in range(anatomy.heads_per_layer[l] if kind == "head" else width)]  # fmt: skip
            if kind == "head":
                estimate = mean_ci_p(torch.stack([got[:, l, h] for l, h in keys]), n_boot=n_boot, seed=seed)
            else:
                estimate = tuple(a[[l * width + i for l, i in keys]] for a in got.mean_ci_p())
            unit = (
                (lambda l, i: head_unit(anatomy, l, i))
                if kind == "head"
                else (lambda l, i: {"unit": "neuron", "layer": l, "head": i})
            )
            frame = pd.DataFrame(rows([unit(l, i) for l, i in keys], "atp_estimate", estimate, len(screen)))
            frames.append(self._confirm(frame, confirm, kind, keys, confirm_top, batch_size, baselines[kind], n_boot,
                                        seed))  # fmt: skip
        out = tidy(pd.concat(frames, ignore_index=True), variant="")
        out["score"], out["baseline"], out["oriented"] = (
            self.score.name,
            self.baseline,
            self.baseline == "counterfactual",
        )
        return with_q(out)

    def _confirm(self, frame, data, kind, keys, k, batch_size, baseline, n_boot, seed) -> pd.DataFrame:
        """Exact effects, on ``data`` (the confirmation part), of the ``k`` units of ``frame`` with the largest
        |estimate|; q-values over those ``k`` units."""
        for column in ("exact", "exact_ci_low", "exact_ci_high", "exact_p", "exact_q", "confirmed", "exact_n"):
            frame[column] = 0.0 if column in ("confirmed", "exact_n") else np.nan
        if not k:
            return frame
        top = np.argsort(-np.abs(frame["value"].to_numpy()), kind="stable")[:k]
        exact = self.exact(data, kind, [keys[i] for i in top], batch_size=batch_size, baseline=baseline)
        value, low, high, p = mean_ci_p(exact, n_boot=n_boot, seed=seed)
        frame.loc[top, ["exact", "exact_ci_low", "exact_ci_high", "exact_p"]] = np.stack([value, low, high, p], axis=1)
        frame.loc[top, "exact_q"] = bh_qvalues(p)
        frame.loc[top, ["confirmed", "exact_n"]] = 1.0, float(len(data))
        return frame
