"""Findings about whole variants (1): is a model fit to be read.

Fitness (docs/DESIGN.md section 8). A classifier is *fit to be read* when its head was trained, it beats the
majority-class baseline (the most frequent class of the test labels, an upper bound on the baseline a constant
predictor reaches) in a one-sided sign-flip test of the per-example difference of correctness, and its predictions
do not collapse onto one class (the most frequent prediction covers at most ``collapse_share`` of the examples).
Otherwise its extrinsic fairness numbers are not interpretable: a one-class model has GAP_RMS 0 by construction.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.bootstrap import bootstrap_ci
from pipeline.schema import tidy
from pipeline.stats import sign_flip_test

__all__ = ["empty_table", "fitness_table", "head_trained", "prediction_arrays"]


def empty_table() -> pd.DataFrame:
    """A tidy table with the schema columns and no rows."""
    return tidy(pd.DataFrame({c: pd.Series(dtype="object") for c in ("variant", "metric", "value")}))


def prediction_arrays(
    preds: pd.DataFrame, variant: str, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(example ids, labels, genders, predictions) of one variant and seed, in example order."""
    rows = preds[(preds["variant"] == variant) & (preds["seed"] == seed)].sort_values("example")
    return tuple(rows[c].to_numpy(dtype=np.int64) for c in ("example", "label", "gender", "pred"))  # type: ignore


def head_trained(task: pd.DataFrame | None) -> dict[tuple[str, int], bool]:
    if task is None:
        return {}
    rows = task[(task["metric"] == "head_trained") & (task["unit"] == "model")]
    return {(str(v), int(s)): bool(x) for v, s, x in zip(rows["variant"], rows["seed"], rows["value"] > 0.5)}


def fitness_table(preds: pd.DataFrame, task: pd.DataFrame | None, cfg) -> pd.DataFrame:
    """Per variant and seed: ``accuracy`` (bootstrap interval), ``majority_baseline``, ``top_prediction_share`` and
    ``accuracy_over_baseline`` (paired, one-sided sign-flip ``p``), with columns ``fit`` and ``reason``."""
    trained = head_trained(task)
    out = []
    for (variant, seed), _ in preds.groupby(["variant", "seed"], sort=True):
        _, labels, _, pred = prediction_arrays(preds, variant, seed)
        n = len(labels)
        majority = np.bincount(labels).argmax()
        gain = (pred == labels).astype(float) - (labels == majority)  # (n,) per-example advantage over the baseline
        p = sign_flip_test(gain, n_perm=cfg.n_perm, seed=cfg.seed, alternative="greater")
        acc = bootstrap_ci(lambda c: c.mean(), (pred == labels).astype(float), n_boot=cfg.n_boot, seed=cfg.seed)
        over = bootstrap_ci(lambda d: d.mean(), gain, n_boot=cfg.n_boot, seed=cfg.seed)
        top = np.bincount(pred).max() / n
        reasons = []
        if not trained.get((str(variant), int(seed)), True):
            reasons.append("classifier head never trained")
        if not p < cfg.alpha:
            reasons.append(
                f"does not beat the majority-class baseline ({(labels == majority).mean():.3f}; one-sided p = {p:.3g})"
            )
        if top > cfg.collapse_share:
            reasons.append(f"predictions collapse: {top:.0%} are class {np.bincount(pred).argmax()}")
        base = {
            "variant": variant,
            "seed": seed,
            "unit": "model",
            "n": n,
            "fit": not reasons,
            "reason": "; ".join(reasons),
        }
        out += [{**base, "metric": "accuracy", "value": acc[0], "ci_low": acc[1], "ci_high": acc[2]},
                {**base, "metric": "majority_baseline", "value": float((labels == majority).mean())},
                {**base, "metric": "top_prediction_share", "value": float(top)},
                {**base, "metric": "accuracy_over_baseline", "value": over[0], "ci_low": over[1], "ci_high": over[2],
                 "p": p}]  # fmt: skip
    return tidy(out) if out else empty_table()
