"""Tiny random BERT / DistilBERT builders for tests (CPU, no network; results on them mean nothing)."""

from __future__ import annotations

import torch
from transformers import (
    BertConfig,
    BertForMaskedLM,
    BertForSequenceClassification,
    DistilBertConfig,
    DistilBertForMaskedLM,
    DistilBertForSequenceClassification,
)


def tiny_bert_config(**overrides) -> BertConfig:
    """A 3-layer, 4-head, 32-wide random BERT (results on it mean nothing; shapes and maths do)."""
    kw = {
        "vocab_size": 120,
        "hidden_size": 32,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "intermediate_size": 48,
        "max_position_embeddings": 64,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "num_labels": 3,
    }
    kw.update(overrides)
    return BertConfig(**kw)


def tiny_distilbert_config(**overrides) -> DistilBertConfig:
    """A 2-layer, 4-head, 32-wide random DistilBERT."""
    kw = {
        "vocab_size": 120,
        "dim": 32,
        "n_layers": 2,
        "n_heads": 4,
        "hidden_dim": 48,
        "max_position_embeddings": 64,
        "dropout": 0.0,
        "attention_dropout": 0.0,
        "num_labels": 3,
    }
    kw.update(overrides)
    return DistilBertConfig(**kw)


def make_tiny(family: str, head: str = "classifier", *, seed: int = 0, dtype=torch.float32, **overrides):
    """Build a tiny random model of ``family`` (bert|distilbert) with ``head`` (classifier|mlm), in eval mode."""
    torch.manual_seed(seed)
    if family == "bert":
        cls = BertForSequenceClassification if head == "classifier" else BertForMaskedLM
        model = cls(tiny_bert_config(**overrides))
    else:
        cls = DistilBertForSequenceClassification if head == "classifier" else DistilBertForMaskedLM
        model = cls(tiny_distilbert_config(**overrides))
    return model.to(dtype).eval()


def random_batch(batch: int = 4, seq: int = 9, vocab: int = 120, *, seed: int = 0, pad_last: bool = True):
    """Random token ids with a padded tail on the last rows (so attention masks matter)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (batch, seq), generator=g)
    mask = torch.ones(batch, seq, dtype=torch.long)
    if pad_last:
        for row in range(1, batch):
            mask[row, seq - row :] = 0
            ids[row, seq - row :] = 0
    return ids, mask
