"""Multiclass equal opportunity by post-processing: a group-specific randomised relabelling fitted by a linear program.

Hardt, Price and Srebro (2016), "Equality of Opportunity in Supervised Learning", NeurIPS, section 4: a *derived
predictor* ``Y~`` depends only on the trained model's prediction ``Y^`` and the group ``A``; the one with equal
true-positive rates in every group and the least loss is the solution of a linear program. Their program is written
for a binary ``Y^``; the same construction for ``K`` classes (as in Putzel and Lee 2022, "Blackbox Post-Processing
for Multiclass Fairness") takes, per group ``g``, a row-stochastic ``K x K`` matrix

    M[g, i, j] = P(Y~ = j | Y^ = i, A = g)

so each rate is linear in ``M``: ``TPR(g, k) = sum_i C[g, k, i] M[g, i, k]`` with ``C[g, k, i] = P(Y^ = i | Y = k,
A = g)`` on the dev split. The program maximises dev accuracy, ``sum_{g,k} P(Y = k, A = g) TPR(g, k)``, subject to
``|TPR(g, k) - TPR(h, k)| <= tol`` for every class and pair of groups (``tol = 0``: equality) and rows of ``M``
summing to 1 (scipy's HiGHS solver). At prediction time each example's label is drawn from its group's row (seeded).
The rule needs each input's group at prediction time: a real limitation of the method, stated where it is used.
"""

from __future__ import annotations

import numpy as np
from jaxtyping import Float, Int
from scipy.optimize import linprog

__all__ = ["apply_rule", "expected_tprs", "fit_rule", "tpr_gaps", "tprs"]


def _check(pred: np.ndarray, labels: np.ndarray | None, groups: np.ndarray, n_classes: int) -> None:
    if pred.ndim != 1 or groups.shape != pred.shape or (labels is not None and labels.shape != pred.shape):
        raise ValueError(f"predictions {pred.shape}, labels and groups must be 1-D with one entry per example")
    if n_classes < 2:
        raise ValueError(f"n_classes = {n_classes}; equal opportunity needs at least 2 classes")
    for name, values, top in (("predictions", pred, n_classes), ("labels", labels, n_classes)):
        if values is not None and len(values) and (values.min() < 0 or values.max() >= top):
            raise ValueError(f"{name} must be class indices in [0, {top}), got [{values.min()}, {values.max()}]")
    if len(groups) and groups.min() < 0:
        raise ValueError("groups must be integer indices 0, 1, ...")


def _confusion(pred: np.ndarray, labels: np.ndarray, groups: np.ndarray, n_groups: int, k: int) -> np.ndarray:
    """``C[g, y, i] = P(pred = i | label = y, group = g)``; rows of empty cells are NaN."""
    counts = np.zeros((n_groups, k, k))
    np.add.at(counts, (groups, labels, pred), 1)
    with np.errstate(invalid="ignore"):
        return counts / counts.sum(2, keepdims=True)


def tprs(
    pred: Int[np.ndarray, " n"], labels: Int[np.ndarray, " n"], groups: Int[np.ndarray, " n"], n_classes: int
) -> Float[np.ndarray, "g k"]:
    """TPR of every (group, class), ``P(pred = k | y = k, group = g)``; NaN where the cell is empty."""
    pred, labels, groups = np.asarray(pred), np.asarray(labels), np.asarray(groups)
    _check(pred, labels, groups, n_classes)
    confusion = _confusion(pred, labels, groups, int(groups.max()) + 1, n_classes)
    return np.einsum("gkk->gk", confusion)


def expected_tprs(
    pred: Int[np.ndarray, " n"],
    labels: Int[np.ndarray, " n"],
    groups: Int[np.ndarray, " n"],
    rule: Float[np.ndarray, "g k k"],
) -> Float[np.ndarray, "g k"]:
    """TPR of every (group, class) of the randomised rule, in expectation over its draws (no sampling noise)."""
    pred, labels, groups = np.asarray(pred), np.asarray(labels), np.asarray(groups)
    n_classes = rule.shape[1]
    _check(pred, labels, groups, n_classes)
    confusion = _confusion(pred, labels, groups, int(groups.max()) + 1, n_classes)
    return np.einsum("gki,gik->gk", confusion, rule[: len(confusion)])


def tpr_gaps(rates: Float[np.ndarray, "g k"]) -> Float[np.ndarray, " k"]:
    """Per class, the largest TPR difference between groups (NaN where fewer than two groups have the class)."""
    present = (~np.isnan(rates)).sum(0)
    with np.errstate(all="ignore"):
        return np.where(present >= 2, np.nanmax(rates, 0) - np.nanmin(rates, 0), np.nan)


def fit_rule(
    pred: Int[np.ndarray, " n"],
    labels: Int[np.ndarray, " n"],
    groups: Int[np.ndarray, " n"],
    n_classes: int,
    *,
    tol: float = 0.0,
) -> Float[np.ndarray, "g k k"]:
    """The accuracy-optimal derived predictor with every class's TPR gap between groups at most ``tol`` on the
    given (dev) data (module docstring): ``M[g, i, j] = P(final = j | model predicted i, group g)``.

    Raises:
        ValueError: bad shapes or indices, ``tol`` outside [0, 1], fewer than two groups, or an empty (group,
            class) cell (its TPR, so the constraint, is undefined: the message names the cells).
    """
    pred, labels, groups = np.asarray(pred), np.asarray(labels), np.asarray(groups)
    _check(pred, labels, groups, n_classes)
    if not 0 <= tol <= 1:
        raise ValueError(f"tol = {tol} must lie in [0, 1]")
    n_groups = int(groups.max()) + 1 if len(groups) else 0
    if n_groups < 2:
        raise ValueError(f"equal opportunity needs at least two groups, got {n_groups}")
    confusion = _confusion(pred, labels, groups, n_groups, n_classes)
    empty = [(g, k) for g in range(n_groups) for k in range(n_classes) if np.isnan(confusion[g, k, 0])]
    if empty:
        raise ValueError(
            f"equal opportunity: the dev (group, class) cells {empty} have no example, so their TPR is undefined; "
            "use a larger dev split or drop those classes"
        )
    k, size = n_classes, n_groups * n_classes * n_classes

    def tpr_row(g: int, c: int) -> np.ndarray:  # coefficients of TPR(g, c) in the flattened M
        row = np.zeros(size)
        row[g * k * k + np.arange(k) * k + c] = confusion[g, c]
        return row

    share = np.array([[((groups == g) & (labels == c)).mean() for c in range(k)] for g in range(n_groups)])
    objective = -sum(share[g, c] * tpr_row(g, c) for g in range(n_groups) for c in range(k))
    gaps = [tpr_row(g, c) - tpr_row(h, c) for c in range(k) for g in range(n_groups) for h in range(g + 1, n_groups)]
    a_ub = np.vstack([*gaps, *(-row for row in gaps)])
    a_eq = np.kron(np.eye(n_groups * k), np.ones(k))  # every row of every M sums to 1
    result = linprog(
        objective,
        A_ub=a_ub,
        b_ub=np.full(len(a_ub), tol),
        A_eq=a_eq,
        b_eq=np.ones(n_groups * k),
        bounds=(0, 1),
        method="highs",
    )
    if not result.success:  # unreachable in theory: "always predict class c" is feasible for every group
        raise RuntimeError(f"the equal-opportunity program failed: {result.message}")
    rule = np.clip(result.x.reshape(n_groups, k, k), 0, 1)
    return rule / rule.sum(2, keepdims=True)


def apply_rule(
    pred: Int[np.ndarray, " n"], groups: Int[np.ndarray, " n"], rule: Float[np.ndarray, "g k k"], *, seed: int
) -> Int[np.ndarray, " n"]:
    """Each example's final label, drawn from ``rule[group, pred]`` with a generator seeded by ``seed``."""
    pred, groups = np.asarray(pred), np.asarray(groups)
    _check(pred, None, groups, rule.shape[1])
    if len(groups) and groups.max() >= len(rule):
        raise ValueError(f"group {groups.max()} has no rule; the rule covers {len(rule)} groups")
    cumulative = rule[groups, pred].cumsum(1)  # (n, k)
    draws = np.random.default_rng(seed).random(len(pred))[:, None]
    return np.minimum((draws > cumulative).sum(1), rule.shape[1] - 1)
