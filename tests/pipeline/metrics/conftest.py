"""Fixtures for the metrics tests: tiny random masked LMs and a classifier that share MiniLM's real tokenizer.

Random weights make every score meaningless; the tests check maths, batching and bookkeeping, not values.
"""

from __future__ import annotations

import pytest
import torch
from tiny import make_tiny

from pipeline.anatomy import Anatomy
from pipeline.models import LoadedModel

VOCAB = 30522  # the uncased BERT WordPiece vocabulary of MiniLM's tokenizer


def _wrap(model, tokenizer, head: str, source: str) -> LoadedModel:
    return LoadedModel(model, tokenizer, Anatomy(model), head, True, source)


@pytest.fixture(scope="session")
def tiny_mlm(minilm):
    """Tiny random BERT masked LM (marked as trained) with MiniLM's tokenizer."""
    return _wrap(make_tiny("bert", "mlm", vocab_size=VOCAB, max_position_embeddings=128), minilm.tokenizer, "mlm",
                 "tiny-bert-mlm")  # fmt: skip


@pytest.fixture(scope="session")
def sharp_mlm(minilm):
    """Tiny random BERT masked LM whose untied decoder is scaled 20x, so its word distributions are far from uniform.

    With the plain tiny model every probability is close to 1 / vocab, so a mean of piece probabilities and a mean
    of piece log-probabilities rank words alike; here they do not. Context still moves its predictions only a
    little (relative changes around 1e-3), as in any random tiny model.
    """
    model = make_tiny("bert", "mlm", vocab_size=VOCAB, max_position_embeddings=128, tie_word_embeddings=False, seed=3)
    with torch.no_grad():
        model.cls.predictions.decoder.weight.mul_(20.0)
    return _wrap(model, minilm.tokenizer, "mlm", "sharp-tiny-bert-mlm")


@pytest.fixture(scope="session")
def tiny_distil_mlm(minilm):
    """Tiny random DistilBERT masked LM with MiniLM's tokenizer."""
    model = make_tiny("distilbert", "mlm", vocab_size=VOCAB, max_position_embeddings=128, seed=1)
    return _wrap(model, minilm.tokenizer, "mlm", "tiny-distilbert-mlm")


@pytest.fixture(scope="session")
def tiny_classifier(minilm):
    """Tiny random 3-class BERT classifier (marked as trained) with MiniLM's tokenizer."""
    model = make_tiny("bert", "classifier", vocab_size=VOCAB, max_position_embeddings=128, num_labels=3)
    return _wrap(model, minilm.tokenizer, "classifier", "tiny-bert-classifier")
