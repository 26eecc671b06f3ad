"""Linear probes: how well is a property (gender, the task label) linearly decodable from each layer and head?

A probe is an L2-regularised logistic regression on standardised features, its strength chosen by inner
cross-validation (:class:`LinearProbe`, an sklearn estimator). :func:`probe_layers` and :func:`probe_heads` run it
under outer cross-validation (stratified, or stratified-grouped when ``groups`` are given) on every layer or head
of a :class:`~probes.extract.Representations` and report accuracy, balanced accuracy and AUC as the mean over folds
with a percentile bootstrap interval over test examples that stays inside [0, 1] (:mod:`probes.intervals` says
why). Duplicate texts must not sit in both the train and the test rows of a fold: pass ``groups`` (e.g.
:func:`text_groups` of the texts) and every copy of a text lands in the same fold. Probing classifiers as an
analysis tool:
Conneau et al. (2018), Tenney et al. (2019), Belinkov (2022, "Probing Classifiers: Promises, Shortcomings, and
Advances"); gender in BERT layers and heads: Leteno et al. (2023).

Table conventions: ``unit="layer"`` rows index hidden states (0 = embeddings, ``k`` = output of block ``k - 1``);
``unit="head"`` rows carry the block index in ``layer`` and the head's original id in ``head``. ``subset`` is the
target (``gender`` or ``label``); extra columns ``pooling`` and ``chance`` (majority share for accuracy, 1/K for
balanced accuracy, 0.5 for AUC).

Probes fit with one BLAS thread: the problems are small (n in the thousands, d <= 1024), and multi-threaded BLAS
spends more time synchronising than computing; on a loaded 2-core machine a 300 x 16 fit took 1.0 s with two
threads and 0.04 s with one.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.base import clone
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
from tqdm.auto import tqdm

from pipeline.schema import tidy
from probes.config import DEFAULT_CS
from probes.estimator import LinearProbe, _auc, _balanced_accuracy, check_split
from probes.extract import Representations
from probes.intervals import N_BOOT, fold_metrics, resample_weights, summarised_row

__all__ = [
    "DEFAULT_CS",
    "METRICS",
    "LinearProbe",
    "check_split",
    "check_target",
    "fold_predictions",
    "fold_scores",
    "interval",
    "make_splits",
    "probe_heads",
    "probe_layers",
    "resolve_poolings",
    "text_groups",
]

METRICS: tuple[str, ...] = ("probe_accuracy", "probe_balanced_accuracy", "probe_auc")


def make_splits(
    y: np.ndarray,
    *,
    groups: np.ndarray | None = None,
    n_folds: int = 5,
    seed: int = 0,
    inner_cv: int = 3,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Outer cross-validation folds, checked so that every train and test split can be probed.

    Stratified k-fold on ``y``; with ``groups`` (n,), stratified group k-fold (no group in two folds).

    Raises:
        ValueError: fewer than two classes, a class smaller than ``n_folds``, fewer groups than folds, or a fold
            whose train split cannot feed ``inner_cv`` inner folds or whose test split has one class only.
    """
    y = np.asarray(y)
    if isinstance(n_folds, bool) or not isinstance(n_folds, Integral) or n_folds < 2:
        raise ValueError(f"n_folds={n_folds!r}: give an integer >= 2 (5 is usual).")
    check_split(
        y,
        "all data",
        min_per_class=n_folds,
        fix=f"Fix: use n_folds <= {np.unique(y, return_counts=True)[1].min()}, add examples, or drop the "
        "rare classes (ProbeConfig.min_class_size).",
    )
    if groups is None:
        splitter = StratifiedKFold(n_folds, shuffle=True, random_state=seed)
    else:
        groups = np.asarray(groups)
        if len(groups) != len(y):
            raise ValueError(f"groups has {len(groups)} entries but y has {len(y)}; give one group per example.")
        if len(np.unique(groups)) < n_folds:
            raise ValueError(
                f"only {len(np.unique(groups))} groups for n_folds={n_folds}; a grouped split needs at "
                "least one group per fold. Fix: lower n_folds or pass groups=None."
            )
        splitter = StratifiedGroupKFold(n_folds, shuffle=True, random_state=seed)
    folds = list(splitter.split(np.zeros(len(y)), y, groups))
    grouped = (
        ""
        if groups is None
        else (
            f" (folds keep each group, e.g. the copies of one text, together: "
            f"{len(np.unique(groups))} groups for {len(y)} examples)"
        )
    )
    for i, (train, test) in enumerate(folds):
        check_split(
            y[train],
            f"fold {i} train",
            min_per_class=inner_cv,
            fix=f"Fix: lower n_folds or the probe's inner cv ({inner_cv}), or add examples{grouped}.",
        )
        check_split(
            y[test],
            f"fold {i} test",
            fix=f"Fix: lower n_folds, use groups=None, or add examples of the missing class{grouped}.",
        )
    return folds


def fold_predictions(
    probe: LinearProbe,
    X: np.ndarray,
    y: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
    groups: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Fit a clone of ``probe`` on the train rows; return its class probabilities on the test rows, shape
    (n_test, n_classes), and its classes, shape (n_classes,). ``groups`` keep a group inside one inner fold."""
    fitted = clone(probe).fit(X[train], y[train], None if groups is None else groups[train])
    return fitted.predict_proba(X[test]), fitted.classes_


def fold_scores(
    probe: LinearProbe,
    X: np.ndarray,
    y: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
    groups: np.ndarray | None = None,
) -> dict[str, float]:
    """Fit ``probe`` on the train rows and score the test rows: accuracy, balanced accuracy, macro one-vs-rest AUC.

    The AUC averages over classes that have both positives and negatives in the test rows (for two classes both
    one-vs-rest AUCs are the usual AUC). ``probe`` is cloned, so the caller's instance stays unfitted.
    """
    proba, classes = fold_predictions(probe, X, y, train, test, groups)  # (n_test, n_classes)
    pred = classes[proba.argmax(1)]
    aucs = [_auc(y[test] == c, proba[:, j]) for j, c in enumerate(classes) if 0 < (y[test] == c).sum() < len(test)]
    return {
        "probe_accuracy": float(np.mean(pred == y[test])),
        "probe_balanced_accuracy": _balanced_accuracy(y[test], pred),
        "probe_auc": float(np.mean(aucs)),
    }


def interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean and t confidence interval over folds: ``mean +- t_{k-1, (1+level)/2} * sd / sqrt(k)``.

    Not used for probe rows: with few folds it leaves [0, 1] (see :mod:`probes.intervals`).
    """
    v = np.asarray(values, dtype=float)
    mean = float(v.mean())
    if len(v) < 2:
        return mean, np.nan, np.nan
    half = float(stats.t.ppf((1 + level) / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))
    return mean, mean - half, mean + half


def _chance(y: np.ndarray) -> dict[str, float]:
    counts = np.unique(y, return_counts=True)[1]
    return {"probe_accuracy": counts.max() / counts.sum(), "probe_balanced_accuracy": 1 / len(counts), "probe_auc": 0.5}


def check_target(y: np.ndarray, n: int) -> np.ndarray:
    """``y`` as an array, checked to hold one label per example (shape (n,))."""
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != n:
        raise ValueError(f"y has shape {y.shape}; give one label per example, shape ({n},).")
    return y


def text_groups(texts: Sequence[str]) -> np.ndarray | None:
    """One group id per text, equal for equal texts, shape (n,); None when every text is distinct (plain
    stratified folds then suffice, and the folds stay those of earlier runs)."""
    _, ids = np.unique(np.asarray(texts, dtype=object).astype(str), return_inverse=True)
    return None if len(np.unique(ids)) == len(ids) else ids.astype(np.int64)


def _rows(
    features: list[tuple[dict, np.ndarray]],
    y: np.ndarray,
    target: str,
    groups: np.ndarray | None,
    n_folds: int,
    seed: int,
    probe: LinearProbe,
    desc: str,
    progress: bool,
    n_boot: int,
) -> list[dict]:
    """Cross-validated scores of ``probe`` on each (row keys, X) in ``features`` with one shared set of folds and
    one shared set of bootstrap resamples (:mod:`probes.intervals`)."""
    folds = make_splits(y, groups=groups, n_folds=n_folds, seed=seed, inner_cv=probe.cv)
    weights = resample_weights(folds, n_boot=n_boot, seed=seed)
    chance, rows = _chance(y), []
    for keys, X in tqdm(features, desc=desc, disable=not progress):
        per_fold = [
            fold_metrics(y[te], *fold_predictions(probe, X, y, tr, te, groups), w)
            for (tr, te), w in zip(folds, weights)
        ]
        for metric in METRICS:
            rows.append(summarised_row(keys, metric, target, [f[metric] for f in per_fold], len(y), chance[metric]))
    return rows


def resolve_poolings(arrays: dict, poolings: Sequence[str] | None) -> list[str]:
    """The requested poolings (default: all keys of ``arrays``), each checked to be present."""
    chosen = list(arrays) if poolings is None else list(poolings)
    bad = [p for p in chosen if p not in arrays]
    if bad:
        raise ValueError(
            f"pooling(s) {bad} were not extracted; available: {list(arrays)}. Fix: extract them "
            "(extract(..., poolings=...)) or pick from the available ones."
        )
    return chosen


def probe_layers(
    reps: Representations,
    y: np.ndarray,
    *,
    target: str = "gender",
    poolings: Sequence[str] | None = None,
    layers: Sequence[int] | None = None,
    groups: np.ndarray | None = None,
    n_folds: int = 5,
    seed: int = 0,
    probe: LinearProbe | None = None,
    progress: bool = False,
    n_boot: int = N_BOOT,
) -> pd.DataFrame:
    """Probe every layer (hidden-state index 0..n_layers) of ``reps`` for ``y`` under outer cross-validation.

    Args:
        reps: the representations.
        y: the target per example, shape (n,), e.g. ``TaskData.genders`` or ``TaskData.labels``.
        target: name written to ``subset`` (``gender``, ``label``, ``control``...).
        poolings: which poolings of ``reps`` (default: all).
        layers: hidden-state indices to probe (default: all).
        groups: optional group per example (n,) for grouped folds, e.g. :func:`text_groups` of the texts, so that
            copies of a text never sit in both the train and the test rows of a fold.
        n_folds: outer folds; every class needs at least ``n_folds`` examples.
        seed: seed of the fold shuffles and of the bootstrap resamples.
        probe: the probe to clone per fold (default ``LinearProbe(seed=seed)``).
        progress: show a progress bar.
        n_boot: bootstrap resamples behind each interval (0: no interval).

    Returns:
        Tidy rows (``unit="layer"``) with the metrics of :data:`METRICS` (mean over folds, 95% percentile
        bootstrap interval over test examples); extra columns ``pooling``, ``chance``.

    Raises:
        ValueError: bad ``y``, unknown pooling, or splits that cannot be probed (see :func:`make_splits`).
        IndexError: a layer outside 0..n_layers.
    """
    y = check_target(y, reps.n)
    probe = probe if probe is not None else LinearProbe(seed=seed)
    chosen = list(range(reps.n_layers + 1)) if layers is None else list(layers)
    for layer in chosen:
        if not isinstance(layer, Integral) or not 0 <= layer <= reps.n_layers:
            raise IndexError(
                f"layer {layer!r} is out of range: probe layers are hidden-state indices "
                f"0..{reps.n_layers} (0 = embeddings)."
            )
    features = [
        ({"unit": "layer", "layer": layer, "pooling": p}, reps.layers[p][layer])
        for p in resolve_poolings(reps.layers, poolings)
        for layer in chosen
    ]
    rows = _rows(features, y, target, groups, n_folds, seed, probe, f"probe layers ({target})", progress, n_boot)
    return tidy(rows, variant="")


def probe_heads(
    reps: Representations,
    y: np.ndarray,
    *,
    target: str = "gender",
    poolings: Sequence[str] | None = None,
    groups: np.ndarray | None = None,
    n_folds: int = 5,
    seed: int = 0,
    probe: LinearProbe | None = None,
    progress: bool = False,
    n_boot: int = N_BOOT,
) -> pd.DataFrame:
    """Probe every head's pooled context vector; rows have ``unit="head"``, block ``layer`` and original ``head`` id.

    Arguments and errors as for :func:`probe_layers`; ``reps`` must hold heads (``extract(..., heads=True)``).
    """
    y = check_target(y, reps.n)
    if not reps.heads:
        raise ValueError("these representations have no heads; extract them with extract(..., heads=True).")
    probe = probe if probe is not None else LinearProbe(seed=seed)
    features = [
        ({"unit": "head", "layer": layer, "head": reps.head_ids[layer][h], "pooling": p}, reps.heads[p][layer, h])
        for p in resolve_poolings(reps.heads, poolings)
        for layer in range(reps.n_layers)
        for h in range(len(reps.head_ids[layer]))
    ]
    rows = _rows(features, y, target, groups, n_folds, seed, probe, f"probe heads ({target})", progress, n_boot)
    return tidy(rows, variant="")
