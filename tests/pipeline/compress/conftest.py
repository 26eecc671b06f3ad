"""Fixtures for the compression tests: tiny random models wrapped with the real MiniLM tokenizer."""

from __future__ import annotations

import numpy as np
import pytest
from tiny import make_tiny
from transformers import AutoTokenizer

from pipeline.anatomy import Anatomy
from pipeline.data import TaskData
from pipeline.models import LoadedModel, resolve_source

TEXTS = (
    "she is a nurse at the hospital",
    "he works as a pilot",
    "my mother is a teacher",
    "his father is a doctor",
    "the woman writes books",
    "the man sings in a band",
    "mary paints portraits",
    "john fixes cars",
    "her sister is an engineer",
    "his brother teaches math",
    "the girl is a student",
    "the boy plays chess",
)


@pytest.fixture(scope="session")
def tokenizer():
    return AutoTokenizer.from_pretrained(resolve_source("minilm"))


@pytest.fixture
def make_loaded(tokenizer):
    """``make_loaded(family, head, seed=0, trained=True, **config)`` -> LoadedModel over a tiny random model."""

    def build(family: str = "bert", head: str = "classifier", *, seed: int = 0, trained: bool = True, **overrides):
        model = make_tiny(family, head, seed=seed, vocab_size=tokenizer.vocab_size, **overrides)
        return LoadedModel(model, tokenizer, Anatomy(model), head, trained, f"tiny-{family}")

    return build


@pytest.fixture(scope="session")
def task() -> TaskData:
    """Twelve gendered sentences in three classes."""
    return TaskData("toy", TEXTS, np.arange(len(TEXTS)) % 3, np.array([1, 0] * 6), ("a", "b", "c"))
