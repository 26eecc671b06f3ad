"""Head ablation: switch heads off and measure the score and the task accuracy.

Michel, Levy & Neubig (2019), "Are Sixteen Heads Really Better than One?", NeurIPS: heads are masked one at a
time, a layer at a time, or all but one per layer (leave-one-in), and pruned cumulatively in order of an
importance score. Here every mode reports, per condition, the mean score with the heads off
(``ablated_score``), its change from the intact model (``delta_score``) and, for scores with a task, the accuracy
and its change (``ablated_accuracy``, ``delta_accuracy``), each with a bootstrap interval over examples, and for
the changes a p-value and a Benjamini-Hochberg q-value over the units (:mod:`attribution.effect_rows`). A
switched-off head outputs zero or its mean context vector over the data (mean ablation keeps later layers in
distribution).

The single-head mode runs on the prefix-cached sweep of :mod:`attribution.sweep`; the other modes on the grid
engine of :mod:`attribution.engine`. Both batch (condition x example) rows with per-example gates.
"""

from __future__ import annotations

from typing import Literal

import pandas as pd

from attribution.baselines import make_baseline
from attribution.data import AttributionData
from attribution.effect_rows import (
    example_rows,
    head_unit,
    local_head,
    mean_ci,
    mean_ci_p,
    rows,
    set_ci,
    set_ci_p,
    with_q,
)
from attribution.engine import GridResult, evaluate
from attribution.scores import Score
from attribution.sweep import fast_sweep, single_head_gates, sweep_heads
from pipeline.gates import ones_gates
from pipeline.models import LoadedModel
from pipeline.schema import tidy

__all__ = ["MODES", "HeadAblation"]

Mode = Literal["single", "layer", "leave_one_in", "cumulative"]
MODES: tuple[str, ...] = ("single", "layer", "leave_one_in", "cumulative")


def _importance_order(loaded: LoadedModel, order: pd.DataFrame, most_first: bool) -> list[tuple[int, int]]:
    """Heads (layer, local index) sorted by |value| of an importance table (one metric, unit ``head``)."""
    heads = order[order["unit"] == "head"] if "unit" in order else order
    missing = {"layer", "head", "value"} - set(heads.columns)
    if missing or heads.empty:
        raise ValueError(
            f"order must be a table of head rows with columns layer, head, value (missing "
            f"{sorted(missing)}{', no head rows' if heads.empty else ''}); pass e.g. "
            "GradientHeadImportance output."
        )
    if "metric" in heads and heads["metric"].nunique() > 1:
        raise ValueError(f"order has several metrics {sorted(heads['metric'].unique())}; filter it to one.")
    if heads.duplicated(["layer", "head"]).any():
        raise ValueError("order lists a head twice; give one row per (layer, head).")
    ranked = heads.assign(key=heads["value"].abs()).sort_values("key", ascending=not most_first, kind="stable")
    return [(int(l), local_head(loaded.anatomy, int(l), int(h))) for l, h in zip(ranked["layer"], ranked["head"])]


class HeadAblation:
    """Head ablation (single heads, whole layers, leave-one-in, cumulative curves) of a score.

    Args:
        loaded: the model.
        score: what to measure (:mod:`attribution.scores`).

    Example:
        >>> HeadAblation(loaded, CounterfactualGap()).attribute(data, mode="single", baseline="mean")
    """

    def __init__(self, loaded: LoadedModel, score: Score) -> None:
        self.loaded = loaded
        self.score = score
        self.example_effects_: pd.DataFrame | None = None  # set by attribute(mode="single"): per-example deltas

    def attribute(
        self,
        data: AttributionData,
        *,
        mode: Mode = "single",
        baseline: Literal["zero", "mean"] = "zero",
        order: pd.DataFrame | None = None,
        most_first: bool = True,
        steps: list[int] | None = None,
        heads: list[tuple[int, int]] | None = None,
        batch_size: int = 64,
        n_boot: int = 1000,
        seed: int = 0,
        fast: bool = True,
        progress: bool = True,
    ) -> pd.DataFrame:
        """Ablate and return tidy rows (extra columns ``score``, ``mode``, ``baseline``).

        Args:
            data: the examples.
            mode: ``single`` (each head), ``layer`` (each layer's heads together), ``leave_one_in`` (each head kept
                alone in its layer) or ``cumulative`` (the first k heads of ``order`` removed, k = 0..N).
            baseline: ``zero`` or ``mean`` (mean context vector over ``data``'s non-padding tokens).
            order: cumulative mode: an importance table (head rows of one metric); heads are ranked by |value|.
            most_first: cumulative mode: remove the most important heads first (else the least).
            steps: cumulative mode: the numbers k of removed heads to evaluate (default every k).
            heads: single mode: only these (layer, local head) pairs (default all), e.g. one process's share of a
                sharded sweep (:mod:`attribution.shard`); the ``model`` rows still cover every example.
            batch_size: rows (condition x example) per forward pass.
            n_boot: bootstrap resamples of the examples for the intervals.
            seed: bootstrap seed.
            fast: single mode: use the prefix-cached sweep (same numbers, less compute).
            progress: show progress bars.

        Returns:
            Rows of unit ``model`` for the intact model (``intact_score``, ``accuracy``), then per condition
            ``ablated_score``, ``delta_score`` (and ``ablated_accuracy``, ``delta_accuracy``) of unit ``head`` or
            ``layer`` (single/layer/leave-one-in), or of unit ``model`` with extra columns ``order`` (``most`` /
            ``least``), ``step`` (heads removed), ``fraction``, ``removed_layer``, ``removed_head`` (cumulative).
            The changes ``delta_score`` and ``delta_accuracy`` carry ``p`` (mean change 0: sign-flip test over
            examples, or the bootstrap for a whole-set score) and ``q`` (Benjamini-Hochberg over this call's units).
        """
        if mode not in MODES:
            raise ValueError(f"mode={mode!r} is not supported; use one of {', '.join(MODES)}.")
        if (mode == "cumulative") != (order is not None):
            raise ValueError("order= is required for mode='cumulative' (an importance table) and only used there.")
        if heads is not None and mode != "single":
            raise ValueError(f"heads= restricts mode='single' only; mode={mode!r} uses every head.")
        loaded, score, anatomy = self.loaded, self.score, self.loaded.anatomy
        score.check(loaded, data)
        base = make_baseline(baseline, loaded, data, batch_size=batch_size)
        desc = f"ablation ({mode})" if progress else None
        reference = evaluate(loaded, score, data, ones_gates(anatomy, batch=1), batch_size=batch_size)
        if mode == "single":
            heads = sweep_heads(loaded) if heads is None else heads
            if fast:
                result, heads = fast_sweep(loaded, score, data, baseline=base, batch_size=batch_size, heads=heads,
                                           progress=progress)  # fmt: skip
            else:
                gates = single_head_gates(loaded, heads)
                result = evaluate(loaded, score, data, gates, baseline=base, batch_size=batch_size, desc=desc)
            units = [head_unit(anatomy, l, h) for l, h in heads]
        elif mode == "layer":
            gates = ones_gates(anatomy, batch=anatomy.n_layers)
            for layer in range(anatomy.n_layers):
                gates[layer, layer] = 0.0
            result = evaluate(loaded, score, data, gates, baseline=base, batch_size=batch_size, desc=desc)
            units = [{"unit": "layer", "layer": layer} for layer in range(anatomy.n_layers)]
        elif mode == "leave_one_in":
            heads = sweep_heads(loaded)
            gates = ones_gates(anatomy, batch=len(heads))
            for c, (layer, head) in enumerate(heads):
                gates[c, layer] = 0.0
                gates[c, layer, head] = 1.0
            result = evaluate(loaded, score, data, gates, baseline=base, batch_size=batch_size, desc=desc)
            units = [head_unit(anatomy, l, h) for l, h in heads]
        else:
            ranked = _importance_order(loaded, order, most_first)
            ks = list(range(len(ranked) + 1)) if steps is None else sorted(set(steps))
            if not ks or ks[0] < 0 or ks[-1] > len(ranked):
                raise ValueError(f"steps={steps!r}: give numbers of removed heads in 0..{len(ranked)}.")
            gates = ones_gates(anatomy, batch=len(ks))
            for c, k in enumerate(ks):
                for layer, head in ranked[:k]:
                    gates[c, layer, head] = 0.0
            result = evaluate(loaded, score, data, gates, baseline=base, batch_size=batch_size, desc=desc)
            units = []
            for k in ks:
                layer, head = ranked[k - 1] if k else (-1, -1)  # the head removed at this step
                units.append(
                    {
                        "unit": "model",
                        "order": "most" if most_first else "least",
                        "step": k,
                        "fraction": k / len(ranked),
                        "removed_layer": layer,
                        "removed_head": anatomy.head_ids[layer][head] if k else -1,
                    }
                )
        table = _reference_rows(reference, n_boot=n_boot, seed=seed)
        table += _condition_rows(result, reference, units, n_boot=n_boot, seed=seed)
        if mode == "single" and score.per_example:  # the per-example effects behind each head's mean
            examples = example_rows(units, "delta_score", result.values - reference.values)
            self.example_effects_ = tidy(examples, variant="", score=score.name, mode=mode, baseline=baseline)
        return with_q(tidy(table, variant="", score=score.name, mode=mode, baseline=baseline))


def _reference_rows(reference: GridResult, *, n_boot: int, seed: int) -> list[dict]:
    score = reference.score
    n = reference.meta.index.shape[0]
    value = (  # the model's bias on these examples, tested against 0 (is there a detectable bias to locate?)
        mean_ci_p(reference.values, n_boot=n_boot, seed=seed)
        if score.per_example
        else set_ci(reference, n_boot=n_boot, seed=seed)
    )
    out = rows([{"unit": "model"}], "intact_score", value, n)
    if reference.correct is not None:
        out += rows([{"unit": "model"}], "accuracy", mean_ci(reference.correct, n_boot=n_boot, seed=seed), n)
    return out


def _condition_rows(
    result: GridResult, reference: GridResult, units: list[dict], *, n_boot: int, seed: int
) -> list[dict]:
    score = result.score
    n = result.meta.index.shape[0]
    if score.per_example:
        absolute = mean_ci(result.values, n_boot=n_boot, seed=seed)
        delta = mean_ci_p(result.values - reference.values, n_boot=n_boot, seed=seed)
    else:
        absolute = set_ci(result, n_boot=n_boot, seed=seed)
        delta = set_ci_p(result, reference, n_boot=n_boot, seed=seed)
    out = rows(units, "ablated_score", absolute, n) + rows(units, "delta_score", delta, n)
    if result.correct is not None:
        acc = mean_ci(result.correct, n_boot=n_boot, seed=seed)
        acc_delta = mean_ci_p(result.correct - reference.correct, n_boot=n_boot, seed=seed)
        out += rows(units, "ablated_accuracy", acc, n) + rows(units, "delta_accuracy", acc_delta, n)
    return out
