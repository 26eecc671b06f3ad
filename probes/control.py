"""Control tasks and selectivity (Hewitt & Liang 2019, "Designing and Interpreting Probes with Control Tasks").

A control task gives every word *type* a random label, drawn so that the label proportions match the real
task's; a probe that reaches high accuracy on it does so by memorising types, not by reading the property off the
representation. Selectivity = probe accuracy - control accuracy, measured with the same probe and the same folds.
For BUG the type is the (masked) profession word; without types every example is its own type, i.e. the labels
are permuted.

The control probe deliberately uses the real task's folds, not folds grouped by type: as in Hewitt & Liang, types
recur between train and test, which is what lets an expressive probe memorise them. Copies of one *text* are
another matter: with ``groups`` (e.g. :func:`probes.linear.text_groups`) they stay inside one fold. Intervals are
percentile bootstrap intervals over test examples (:mod:`probes.intervals`); selectivity is bootstrapped paired,
on the same resamples as both accuracies.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from pipeline.schema import tidy
from probes.extract import Representations
from probes.intervals import N_BOOT, fold_metrics, resample_weights, summarised_row
from probes.linear import LinearProbe, check_split, check_target, fold_predictions, make_splits, resolve_poolings

__all__ = ["control_labels", "control_task"]


def _midpoint_labels(classes: np.ndarray, bounds: np.ndarray, sizes: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Class of each type when the types, in ``order``, are laid end to end by size: the class in whose share of
    the cumulative distribution (upper edges ``bounds``) the type's midpoint falls."""
    mid = (np.cumsum(sizes[order]) - sizes[order] / 2) / sizes.sum()  # midpoint of each type, in order
    label_of = np.empty(len(sizes), dtype=classes.dtype)
    label_of[order] = classes[np.minimum(np.searchsorted(bounds, mid), len(classes) - 1)]
    return label_of


def control_labels(y: np.ndarray, *, types: np.ndarray | None = None, seed: int = 0, tries: int = 1000) -> np.ndarray:
    """Random labels assigned per type, keeping the class proportions of ``y``.

    A random assignment shuffles the types and lays them end to end by their example counts; a type takes the class
    in whose share of ``y``'s cumulative distribution its midpoint falls. With a few large types (BUG's biggest
    profession holds 16% of the rows) one shuffle can miss the shares by a whole type, so ``tries`` shuffles are
    drawn and the one whose class counts are closest to ``y``'s (L1) is kept. Without ``types``, ``y`` is permuted
    (exact proportions).

    Args:
        y: the real labels, shape (n,).
        types: the type of each example (e.g. the profession word), shape (n,); all examples of a type get one label.
        seed: seed of the shuffles.
        tries: random assignments to choose from.

    Returns:
        Control labels, shape (n,), same dtype as ``y``.
    """
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    if types is None:
        return rng.permutation(y)
    types = np.asarray(types)
    if types.shape != y.shape:
        raise ValueError(f"types has shape {types.shape} but y has {y.shape}; give one type per example.")
    classes, counts = np.unique(y, return_counts=True)
    bounds = np.cumsum(counts) / counts.sum()  # upper edge of each class's share
    _, inverse, sizes = np.unique(types, return_inverse=True, return_counts=True)
    best, best_miss = None, np.inf
    for _ in range(tries):
        label_of = _midpoint_labels(classes, bounds, sizes, rng.permutation(len(sizes)))
        got = np.array([sizes[label_of == c].sum() for c in classes])
        miss = np.abs(got - counts).sum()
        if miss < best_miss:
            best, best_miss = label_of, miss
    return best[inverse]


def control_task(
    reps: Representations,
    y: np.ndarray,
    *,
    types: np.ndarray | None = None,
    target: str = "gender",
    poolings: Sequence[str] | None = None,
    n_folds: int = 5,
    seed: int = 0,
    probe: LinearProbe | None = None,
    groups: np.ndarray | None = None,
    n_boot: int = N_BOOT,
) -> pd.DataFrame:
    """Probe accuracy, control accuracy and selectivity for every layer, on one shared set of folds.

    Args:
        reps: the representations.
        y: the real labels, shape (n,).
        types: the word type per example for :func:`control_labels` (default: per example).
        target: the real task's name, written to ``subset``.
        poolings: which poolings of ``reps`` (default: all).
        n_folds: outer folds.
        seed: seed of the folds and of the control labels.
        probe: the probe (default ``LinearProbe(seed=seed)``).
        groups: optional group per example (n,), e.g. :func:`probes.linear.text_groups`: copies of a text share
            a fold.
        n_boot: bootstrap resamples behind each interval (0: none).

    Returns:
        Tidy rows (``unit="layer"``), metrics ``probe_accuracy``, ``control_accuracy`` and ``selectivity``
        (mean over folds with a percentile bootstrap interval over test examples; selectivity is the per-fold
        difference, bootstrapped paired), extra columns ``pooling`` and ``chance`` (the majority share of the
        real or the control labels; 0 for selectivity).

    Raises:
        ValueError: as for :func:`probes.linear.make_splits`, for the real or the control labels.
    """
    y = check_target(y, reps.n)
    control = control_labels(y, types=types, seed=seed)
    probe = probe if probe is not None else LinearProbe(seed=seed)
    folds = make_splits(y, groups=groups, n_folds=n_folds, seed=seed, inner_cv=probe.cv)
    weights = resample_weights(folds, n_boot=n_boot, seed=seed)
    fix = "Fix: give more word types (or types=None), or lower n_folds."
    for i, (train, test) in enumerate(folds):  # the control labels must be probe-able on the same folds
        check_split(control[train], f"fold {i} train (control labels)", min_per_class=probe.cv, fix=fix)
        check_split(control[test], f"fold {i} test (control labels)", fix=fix)
    chance = {
        "probe_accuracy": np.unique(y, return_counts=True)[1].max() / len(y),
        "control_accuracy": np.unique(control, return_counts=True)[1].max() / len(y),
        "selectivity": 0.0,
    }
    rows = []
    for p in resolve_poolings(reps.layers, poolings):
        for layer in range(reps.n_layers + 1):
            X = reps.layers[p][layer]
            real, ctrl = [], []
            for (tr, te), w in zip(folds, weights):
                for labels, out in ((y, real), (control, ctrl)):
                    proba, classes = fold_predictions(probe, X, labels, tr, te, groups)
                    out.append(fold_metrics(labels[te], proba, classes, w, ("probe_accuracy",))["probe_accuracy"])
            selectivity = [r - c for r, c in zip(real, ctrl)]
            keys = {"unit": "layer", "layer": layer, "pooling": p}
            for metric, values in (("probe_accuracy", real), ("control_accuracy", ctrl), ("selectivity", selectivity)):
                rows.append(summarised_row(keys, metric, target, values, len(y), chance[metric]))
    return tidy(rows, variant="")
