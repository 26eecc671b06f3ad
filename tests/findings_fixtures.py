"""Hand-made inputs shared by the findings tests: per-example prediction rows as the ``predictions`` table holds them,
and the fast findings settings."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.findings.compute import FindingsConfig
from pipeline.schema import tidy

N, LABELS = 120, ["nurse", "doctor", "pilot"]
FAST = FindingsConfig(n_boot=200, n_perm=999)


def prediction_rows(variant: str, seed: int, labels, genders, pred) -> pd.DataFrame:
    """The ``predictions`` rows of one model: example i with its label, gender and prediction."""
    return tidy([{"metric": "prob_true", "value": 0.5, "example": i, "label": int(y), "gender": int(g),
                  "pred": int(p)} for i, (y, g, p) in enumerate(zip(labels, genders, pred))],
                variant=variant, seed=seed)  # fmt: skip


def planted_predictions(good: list[str], harmful: list[str]) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Seeds 0-2 of models on N seeded examples: the ``good`` ones right 80% of the time (the same predictions for
    all of them), the ``harmful`` ones like them but wrong on most women of class 0. Returns the rows, labels and
    genders."""
    rng = np.random.default_rng(0)
    labels, genders = rng.integers(0, 3, N), np.tile([0, 1], N // 2)
    frames = []
    for seed in (0, 1, 2):
        fine = np.where(rng.random(N) < 0.8, labels, (labels + 1) % 3)
        harm = np.where((labels == 0) & (genders == 1) & (rng.random(N) < 0.8), 1, fine)
        frames += [prediction_rows(v, seed, labels, genders, fine) for v in good]
        frames += [prediction_rows(v, seed, labels, genders, harm) for v in harmful]
    return pd.concat(frames, ignore_index=True), labels, genders
