"""Seeds as the unit of inference: a two-stage (seed x example) bootstrap of a change averaged over training seeds.

A paired bootstrap over test examples (:func:`pipeline.stats.paired_bootstrap`) says how sure we are about the
change between two *trained models*. A claim about a *method* ("distillation lowers the gap") must also average over
the randomness of training: seeds are then the units, examples are nested in them. The two-stage bootstrap
(Davison & Hinkley 1997, section 3.8; "case resampling at both stages") draws k seeds with replacement from the k
observed, and for each drawn seed one of its example-level resamples; the statistic of a draw is the mean over the
drawn seeds. A change that is present in every seed keeps its sign in nearly every draw; a change carried by one
seed of five vanishes from a third of the draws ((4/5)^5 = 0.33), so it is not called a method effect.
"""

from __future__ import annotations

import warnings

import numpy as np

from pipeline.stats import PairedDelta, summarise_draws

__all__ = ["hierarchical_delta", "hierarchical_draws"]


def hierarchical_draws(per_seed_draws: np.ndarray, *, n_boot: int, seed: int = 0) -> np.ndarray:
    """Two-stage bootstrap draws of the mean over seeds.

    Args:
        per_seed_draws: example-level bootstrap draws of each seed's change, (n_seeds, n_resamples, n_stats).
        n_boot: draws to make.
        seed: seed of ``numpy.random.default_rng``.

    Returns:
        (n_boot, n_stats): per draw, the mean over ``n_seeds`` seeds drawn with replacement, each at a random one
        of its resamples (NaN entries left out of the mean).
    """
    draws = np.asarray(per_seed_draws, dtype=np.float64)
    if draws.ndim != 3 or not draws.shape[0] or not draws.shape[1]:
        raise ValueError(f"per_seed_draws has shape {draws.shape}; give (n_seeds, n_resamples, n_stats).")
    k, b, _ = draws.shape
    rng = np.random.default_rng(seed)
    seeds, resamples = rng.integers(0, k, (n_boot, k)), rng.integers(0, b, (n_boot, k))
    with warnings.catch_warnings():  # a statistic undefined in every drawn seed stays NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(draws[seeds, resamples], axis=1)


def hierarchical_delta(deltas: np.ndarray, per_seed_draws: np.ndarray, n: int, *, n_boot: int, seed: int = 0,
                       alpha: float = 0.05) -> PairedDelta:  # fmt: skip
    """The mean change over seeds (``deltas``: (n_seeds, n_stats)) with the interval and p-value of the two-stage
    bootstrap (:func:`hierarchical_draws`); ``n`` = examples per seed."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        delta = np.nanmean(np.asarray(deltas, dtype=np.float64), axis=0)
    return summarise_draws(delta, hierarchical_draws(per_seed_draws, n_boot=n_boot, seed=seed), n, alpha=alpha)
