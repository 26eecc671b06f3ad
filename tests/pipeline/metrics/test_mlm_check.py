"""Tests for pipeline/metrics/mlm_check.py: an MLM head must beat the unigram baseline before its benchmarks count."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import nn

from pipeline.metrics.mlm_check import CHECK_SENTENCES, check_sentences, mlm_head_check
from pipeline.models import LoadedModel


class _Out:
    def __init__(self, logits: torch.Tensor) -> None:
        self.logits = logits


class EndsWithAPeriod(nn.Module):
    """A hand-built masked LM that knows one thing: the token before [SEP] is ".", every other one is "the".

    Its features are (1, next token is [SEP]); its decoder scores "the" by the first and "." (twice as much) by the
    second. On WinoBias sentences, which all end with a full stop, it gets every masked "the" (the baseline's hits)
    and every masked final ".", so it must beat the baseline.
    """

    def __init__(self, vocab: int, sep: int, the: int, period: int) -> None:
        super().__init__()
        self.sep = sep
        self.config = SimpleNamespace(max_position_embeddings=128)
        self.decoder = nn.Linear(2, vocab, bias=False)
        with torch.no_grad():
            self.decoder.weight.zero_()
            self.decoder.weight[the, 0] = 1.0
            self.decoder.weight[period, 1] = 2.0

    def get_output_embeddings(self) -> nn.Module:
        return self.decoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> _Out:
        before_sep = torch.zeros_like(input_ids, dtype=torch.float)
        before_sep[:, :-1] = (input_ids[:, 1:] == self.sep).float()
        features = torch.stack([torch.ones_like(before_sep), before_sep], dim=-1)  # (batch, seq, 2)
        return _Out(self.decoder(features))


def test_check_sentences_are_a_fixed_sample_of_distinct_winobias_dev_sentences():
    first, again = check_sentences(), check_sentences()
    assert first == again and len(set(first)) == len(first) == CHECK_SENTENCES
    assert check_sentences(seed=1) != first and all(s.endswith(".") for s in first[:20])


def test_a_random_head_does_not_beat_the_unigram_baseline(tiny_mlm):
    check = mlm_head_check(tiny_mlm, check_sentences())
    assert not check.passed and check.token == "the" and 0.1 < check.baseline < 0.2 and check.n > 300
    assert check.reason.startswith(f"MLM head untrained: masked-token top-1 accuracy {check.top1:.3f} does not beat")


def test_a_head_that_predicts_something_beats_it(minilm):
    tok = minilm.tokenizer
    model = EndsWithAPeriod(tok.vocab_size, tok.sep_token_id, *tok.convert_tokens_to_ids(["the", "."]))
    loaded = LoadedModel(model, tok, None, "mlm", True, "hand-built")
    check = mlm_head_check(loaded, check_sentences())
    assert check.passed and check.top1 > check.baseline + 0.03
    assert mlm_head_check(loaded, check_sentences(), batch_size=7) == check  # batching does not change it
