"""Fixtures of the probe tests: planted synthetic representations, a tiny model with a real tokenizer, BUG rows."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from tiny import make_tiny

from pipeline.anatomy import Anatomy
from pipeline.models import LoadedModel
from probes.extract import Representations

N, D, N_LAYERS, PLANTED = 400, 16, 4, 2  # examples, width, blocks, the hidden state that holds gender


@dataclass(frozen=True)
class Planted:
    """Gaussian 'representations' of N_LAYERS + 1 hidden states; gender lives along ``u`` in hidden state PLANTED
    only, a 3-class task label along two directions orthogonal to ``u`` in the same state."""

    reps: Representations
    genders: np.ndarray
    labels: np.ndarray
    u: np.ndarray
    layer: int = PLANTED


def make_planted(seed: int = 0, strength: float = 1.5) -> Planted:
    rng = np.random.default_rng(seed)
    genders = rng.permutation(np.repeat([0, 1], N // 2))
    labels = rng.permutation(np.arange(N) % 3)
    X = rng.normal(size=(N_LAYERS + 1, N, D))
    basis = np.linalg.qr(rng.normal(size=(D, 3)))[0]  # orthonormal columns
    u, label_dirs = basis[:, 0], basis[:, 1:]
    X[PLANTED] += strength * np.outer(2 * genders - 1, u)
    X[PLANTED] += 2.5 * np.array([[0, 0], [1, 0], [0, 1]])[labels] @ label_dirs.T
    return Planted(Representations(layers={"mean": X.astype(np.float32)}), genders, labels, u)


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Every test here runs its small models on one thread (``one_torch_thread`` in tests/conftest.py)."""


@pytest.fixture(scope="session")
def planted() -> Planted:
    return make_planted()


@pytest.fixture(scope="session")
def tiny_loaded(minilm) -> LoadedModel:
    """A tiny random BERT classifier (3 blocks, 4 heads, width 32) that uses MiniLM's tokenizer."""
    model = make_tiny("bert", "classifier", vocab_size=minilm.tokenizer.vocab_size, max_position_embeddings=128)
    return LoadedModel(model, minilm.tokenizer, Anatomy(model), "classifier", True, "tiny-bert")


@pytest.fixture(scope="session")
def bug_small():
    """60 gender-balanced BUG rows of the 3 most frequent professions (10 per profession and gender), as a
    3-class task (so the tiny 3-label classifier fits it)."""
    from pipeline.data import TaskData, load_bug

    data = load_bug()
    top = np.sort(np.argsort(np.bincount(data.labels))[::-1][:3])
    rng = np.random.default_rng(0)
    rows = np.sort(
        np.concatenate(
            [
                rng.choice(np.flatnonzero((data.labels == c) & (data.genders == g)), 10, replace=False)
                for c in top
                for g in (0, 1)
            ]
        )
    )
    return TaskData(
        name="bug-top3",
        texts=tuple(data.texts[i] for i in rows),
        labels=np.searchsorted(top, data.labels[rows]),
        genders=data.genders[rows],
        label_names=tuple(data.label_names[c] for c in top),
    )
