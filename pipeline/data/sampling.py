"""Seeded subsampling: benchmark items (``max_examples``) and task rows, the same for every model variant given the
seed."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def subsample(n: int, max_examples: int | None, seed: int, *, subsets: Sequence[np.ndarray] = ()) -> list[np.ndarray]:
    """Sorted indices of at most ``max_examples`` items from ``0..n-1``, then from each subset, drawn separately.

    Drawing per subset (e.g. the gender items of a benchmark) keeps a subset metric from resting on the few items
    that fall into the global draw; the caller scores the union once and computes each metric on its own draw.
    ``max_examples=None`` keeps everything.

    Returns:
        ``[global draw, draw of subsets[0], ...]``.
    """
    if max_examples is not None and max_examples < 1:
        raise ValueError(f"max_examples={max_examples}; use a positive count or None for all items.")
    rng = np.random.default_rng(seed)
    pools = [np.arange(n), *(np.asarray(s, dtype=np.int64) for s in subsets)]
    if max_examples is None:
        return pools
    return [np.sort(p if len(p) <= max_examples else rng.choice(p, max_examples, replace=False)) for p in pools]


def seeded_rows(total: int, n: int | None, seed: int) -> np.ndarray:
    """Sorted indices of ``n`` of ``total`` rows drawn without replacement with ``seed``; every row when ``n`` is
    None, 0 or at least ``total``. The one seeded subsample of the tool (runs, analyses and command lines)."""
    if not n or n >= total:
        return np.arange(total)
    if n < 0:
        raise ValueError(f"n={n}; give a positive number of rows, or 0 / None for all.")
    return np.sort(np.random.default_rng(seed).choice(total, n, replace=False))
