"""Minimum description length probing with the online code (Voita & Titov 2020, "Information-Theoretic Probing
with Minimum Description Length", EMNLP).

Instead of a probe's accuracy, measure how many bits it takes to transmit the labels given the representations.
The data are sent in blocks ``t_0 = 0 < t_1 < ... < t_S = n``: the first block with the uniform code
(``t_1 * log2 K`` bits for K classes), every later block with a probe trained on all earlier blocks:

    codelength = t_1 log2 K - sum_{i=1}^{S-1} sum_{j = t_i + 1}^{t_{i+1}} log2 p_{theta_i}(y_j | x_j)

Compression = ``n log2 K / codelength``. Information that is easy to extract gives a short code even for a weak
probe, so MDL accounts for the probe's complexity as well as its accuracy. The probe here is an L2 logistic
regression with a fixed strength on standardised features; examples are ordered so that every prefix keeps the
class proportions (each class's examples spread evenly over the order), and the block schedule doubles.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from pipeline.schema import tidy
from probes.extract import Representations
from probes.linear import check_target, resolve_poolings

__all__ = ["BLOCK_FRACTIONS", "mdl_layers", "online_codelength"]

BLOCK_FRACTIONS: tuple[float, ...] = tuple(2.0**-k for k in range(6, -1, -1))  # 1/64, 1/32, ..., 1/2, 1


def _stratified_order(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A shuffle in which every prefix keeps the class proportions of ``y`` (up to one example per class)."""
    key = np.empty(len(y))
    for c in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == c))
        key[rows] = (np.arange(len(rows)) + rng.random(len(rows))) / len(rows)  # evenly spread in [0, 1)
    return np.argsort(key, kind="stable")


def online_codelength(
    X: np.ndarray,
    y: np.ndarray,
    *,
    fractions: Sequence[float] = BLOCK_FRACTIONS,
    C: float = 0.1,
    seed: int = 0,
    max_iter: int = 1000,
) -> tuple[float, float]:
    """Online codelength of ``y`` given ``X`` (Voita & Titov 2020) and the uniform codelength, in bits.

    Args:
        X: features, shape (n, d).
        y: labels, shape (n,).
        fractions: increasing block ends as shares of n, the last 1.0.
        C: inverse L2 strength of the logistic-regression probe.
        seed: seed of the example order.
        max_iter: lbfgs iteration limit.

    Returns:
        ``(online_bits, uniform_bits)``.

    Raises:
        ValueError: a bad schedule, or a first block that misses a class (give a larger first fraction).

    Block ends with fewer than two examples per class are skipped, so the first block can be larger than
    ``fractions[0] * n`` on small data.
    """
    y = np.asarray(y)
    f = np.asarray(fractions, dtype=float)
    if f.ndim != 1 or len(f) < 2 or f[-1] != 1.0 or (np.diff(f) <= 0).any() or f[0] <= 0:
        raise ValueError(
            f"fractions={tuple(fractions)!r}: give increasing shares in (0, 1] ending at 1.0, e.g. {BLOCK_FRACTIONS}."
        )
    classes = np.unique(y)
    order = _stratified_order(y, np.random.default_rng(seed))
    ends = np.unique(np.round(f * len(y)).astype(int))
    ends = ends[ends >= min(2 * len(classes), len(y))]  # a first block needs two examples per class
    if len(np.unique(y[order[: ends[0]]])) < len(classes):
        raise ValueError(
            f"the first block ({ends[0]} examples, fraction {f[0]}) misses a class of {len(classes)}; "
            "the probe must see every class before it codes. Fix: a larger first fraction or more data."
        )
    uniform = len(y) * np.log2(len(classes))
    bits = ends[0] * np.log2(len(classes))
    for start, stop in itertools.pairwise(ends):
        train, block = order[:start], order[start:stop]
        scaler = StandardScaler().fit(X[train])
        with threadpool_limits(limits=1, user_api="blas"):  # small problems: one thread (see probes.linear)
            clf = LogisticRegression(C=C, max_iter=max_iter).fit(scaler.transform(X[train]), y[train])
        proba = clf.predict_proba(scaler.transform(X[block]))  # (block, K), columns = classes
        p_true = proba[np.arange(len(block)), np.searchsorted(clf.classes_, y[block])]
        bits -= np.log2(np.clip(p_true, 1e-12, 1.0)).sum()
    return float(bits), float(uniform)


def mdl_layers(
    reps: Representations,
    y: np.ndarray,
    *,
    target: str = "gender",
    poolings: Sequence[str] | None = None,
    fractions: Sequence[float] = BLOCK_FRACTIONS,
    C: float = 0.1,
    seed: int = 0,
) -> pd.DataFrame:
    """Online codelength and compression of ``y`` for every layer of ``reps``.

    Returns:
        Tidy rows (``unit="layer"``, ``subset=target``): ``mdl_codelength`` (bits; lower = more extractable) and
        ``mdl_compression`` (uniform / online; 1 = nothing learnt), extra column ``pooling``.
    """
    y = check_target(y, reps.n)
    rows = []
    for p in resolve_poolings(reps.layers, poolings):
        for layer in range(reps.n_layers + 1):
            bits, uniform = online_codelength(reps.layers[p][layer], y, fractions=fractions, C=C, seed=seed)
            for metric, value in (("mdl_codelength", bits), ("mdl_compression", uniform / bits)):
                rows.append(
                    {
                        "unit": "layer",
                        "layer": layer,
                        "metric": metric,
                        "subset": target,
                        "value": value,
                        "n": len(y),
                        "pooling": p,
                    }
                )
    return tidy(rows, variant="")
