"""Benchmark: can a second level of resampling bring the mean-zero test to its nominal rate in the far tail?

:func:`pipeline.mean_test.mean_zero_test` (Hall's skewness-corrected statistic, bootstrap-calibrated) rejects a
centred lognormal null (sigma 1, skewness 6.2) at n = 48 in about 2.5x the nominal 0.005 (tests/findings/
test_mean_test.py). This script measures two double bootstraps of the same statistic on the same kind of samples,
each calibrating the single bootstrap's p-value by resampling the resamples:

- the fast double bootstrap (Davidson & MacKinnon 2007, "Improving the reliability of bootstrap tests with the fast
  double bootstrap", CSDA 51, 3259-3281): one inner resample per outer resample, ``p = share(|T*| >= Q**)`` with
  ``Q**`` the ``1 - p*`` quantile of the inner ``|T**|``;
- the full double bootstrap (Beran 1988; Efron & Tibshirani 1993, ch. 16): the adjusted p-value is the share of outer
  resamples whose own bootstrap p-value is at most the sample's.

Every resample is a weight vector over the sample's indices, shared by all null samples (the moments of the resampled
samples are matrix products), so thousands of samples take seconds. It prints the rejection rates at 0.05 and 0.005
of the single, fast-double and double bootstraps per null, and the sample skewness of the samples the single
bootstrap rejects at 0.005 beside that of all samples. Written up in docs/FINDINGS.md ("Which test").

    python -m bench.calibration --sets 6 --double-sets 1
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import stats

from pipeline.mean_test import hall_statistic

N = 48


def null_samples(kind: str, draws: int, seed: int) -> np.ndarray:
    """``draws`` samples of size 48 from a mean-zero null: ``exponential`` (skewness 2) or ``lognormal`` (6.2)."""
    rng = np.random.default_rng(seed)
    if kind == "exponential":
        return rng.exponential(1.0, (draws, N)) - 1.0
    return rng.lognormal(0.0, 1.0, (draws, N)) - np.exp(0.5)


def _weights(idx: np.ndarray, n: int) -> np.ndarray:
    return np.stack([np.bincount(r, minlength=n) for r in idx]) / n


def _statistic(weights: np.ndarray, powers: list[np.ndarray], n: int, centre) -> tuple[np.ndarray, np.ndarray]:
    moments = [weights @ p.T for p in powers]  # each (k, samples)
    return np.abs(np.nan_to_num(hall_statistic(*moments, n, centre), nan=0.0)), moments[0]


def fast_double(x: np.ndarray, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(single bootstrap p, fast double bootstrap p) per sample (rows of ``x``)."""
    rng, n = np.random.default_rng(seed), x.shape[1]
    powers = [x, x**2, x**3]
    observed = np.abs(hall_statistic(*(p.mean(1) for p in powers), n, 0.0))
    idx = rng.integers(0, n, (n_boot, n))
    outer, means = _statistic(_weights(idx, n), powers, n, x.mean(1))
    inner, _ = _statistic(_weights(np.take_along_axis(idx, rng.integers(0, n, (n_boot, n)), 1), n), powers, n, means)
    single = (1 + (outer >= observed).sum(0)) / (n_boot + 1)
    cut = np.array([np.quantile(inner[:, j], 1 - single[j]) for j in range(len(x))])
    return single, (1 + (outer >= cut).sum(0)) / (n_boot + 1)


def full_double(x: np.ndarray, outer: int, inner: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(single bootstrap p, double bootstrap p) per sample, ``outer`` x ``inner`` resamples."""
    rng, n = np.random.default_rng(seed), x.shape[1]
    powers = [x, x**2, x**3]
    observed = np.abs(hall_statistic(*(p.mean(1) for p in powers), n, 0.0))
    hits, inner_p = np.zeros(len(x)), []
    for _ in range(outer):
        idx = rng.integers(0, n, n)
        t_b, mean_b = _statistic(_weights(idx[None, :], n), powers, n, x.mean(1))
        hits += t_b[0] >= observed
        t_bb, _ = _statistic(_weights(idx[rng.integers(0, n, (inner, n))], n), powers, n, mean_b[0])
        inner_p.append((1 + (t_bb >= t_b).sum(0)) / (inner + 1))
    single = (1 + hits) / (outer + 1)
    return single, (1 + (np.array(inner_p) <= single).sum(0)) / (outer + 1)


def _rates(p: np.ndarray) -> str:
    return f"{np.mean(p < 0.05):.4f} / {np.mean(p < 0.005):.4f}"


def main() -> None:
    """Print the rejection rates (P(p < 0.05) / P(p < 0.005)) of each procedure per null."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=4000, help="null samples per set")
    parser.add_argument("--sets", type=int, default=6, help="sets for the fast double bootstrap")
    parser.add_argument("--double-sets", type=int, default=1, help="sets for the full double bootstrap (lognormal)")
    parser.add_argument("--n-boot", type=int, default=1999)
    args = parser.parse_args()
    for kind in ("exponential", "lognormal"):
        for s in range(args.sets):
            x = null_samples(kind, args.draws, 20 + s)
            start = time.perf_counter()
            single, fdb = fast_double(x, args.n_boot, 120 + s)
            print(f"{kind} set {s}: single {_rates(single)}  fast double {_rates(fdb)}  "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)  # fmt: skip
    for s in range(args.double_sets):
        x = null_samples("lognormal", args.draws, 11 + s)
        start = time.perf_counter()
        single, double = full_double(x, 999, 199, 18 + s)
        skew, rejected = stats.skew(x, axis=1), single < 0.005
        print(f"lognormal double set {s}: single {_rates(single)}  double (999 x 199) {_rates(double)}  "
              f"({time.perf_counter() - start:.0f} s); sample skewness 10-90%: all "
              f"{np.quantile(skew, 0.1):.2f}-{np.quantile(skew, 0.9):.2f}, rejected at 0.005 "
              f"{np.quantile(skew[rejected], 0.1):.2f}-{np.quantile(skew[rejected], 0.9):.2f} "
              f"({np.mean(x[rejected].mean(1) < 0):.0%} with a negative mean)", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
