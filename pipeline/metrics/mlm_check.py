"""Is this MLM head a language model at all? Masked-token top-1 accuracy against a unigram baseline.

A checkpoint can hold MLM head weights that were never trained as one: TinyBERT's general distillation (Jiao et al.
2020) trains embeddings, attention maps and hidden states, not the prediction layer, so the ``cls.*`` tensors of
``huawei-noah/TinyBERT_General_4L_312D`` load without a "missing" report and predict nothing useful. Every MLM
benchmark (CrowS-Pairs, StereoSet, WinoBias, Winogender) reads such a head's preferences as if they were a
model's, so :func:`pipeline.metrics.bias_metrics` checks the head first:

* a fixed sample: :data:`CHECK_SENTENCES` WinoBias **dev** sentences (the benchmark scores the test split), drawn
  with seed 0, the same for every model;
* in each sentence :data:`CHECK_PROBABILITY` of the non-special tokens (at least one; seeded) become ``[MASK]``,
  all at once, and the head predicts each from the rest;
* top-1 accuracy over the masked tokens is compared with the unigram baseline: always predicting the most frequent
  token of the sample (its share among the masked tokens).

A head that does not beat the baseline is not a usable LM head: its benchmarks are skipped with the numbers as
the reason (rows keep ``mlm_head_top1`` and ``mlm_head_baseline``). The baseline is 0.130 (``the``); a random
head scores about 0.01; a pretrained BERT head should be far above the baseline (not measured here, no hub).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from pipeline.data import load_winobias
from pipeline.metrics.mlm import scorable_positions
from pipeline.models import LoadedModel

__all__ = ["CHECK_PROBABILITY", "CHECK_SENTENCES", "MlmHeadCheck", "check_sentences", "mlm_head_check"]

CHECK_SENTENCES = 200
CHECK_PROBABILITY = 0.15


@dataclass(frozen=True)
class MlmHeadCheck:
    """The result: top-1 accuracy, the unigram baseline, the number of masked tokens, the baseline's token."""

    top1: float
    baseline: float
    n: int
    token: str

    @property
    def passed(self) -> bool:
        return self.top1 > self.baseline

    @property
    def reason(self) -> str:
        """The skip reason of a failed check."""
        return (
            f"MLM head untrained: masked-token top-1 accuracy {self.top1:.3f} does not beat the unigram baseline "
            f"{self.baseline:.3f} (always {self.token!r}) on {self.n} masked tokens of {CHECK_SENTENCES} "
            "WinoBias dev sentences; its weights are not a trained LM head (e.g. TinyBERT's general distillation "
            "does not train cls.*)"
        )


def check_sentences(root: str | Path | None = None, *, n: int = CHECK_SENTENCES, seed: int = 0) -> tuple[str, ...]:
    """``n`` distinct WinoBias dev sentences (types 1 and 2, pro and anti), drawn with ``seed``, in draw order."""
    texts = sorted(
        {
            item.text
            for kind in (1, 2)
            for stereo in ("pro", "anti")
            for item in load_winobias(kind, stereo, "dev", root=root)
        }
    )  # type: ignore[arg-type]
    rows = np.random.default_rng(seed).permutation(len(texts))[:n]
    return tuple(texts[i] for i in rows)


def _masked(loaded: LoadedModel, sentences: Sequence[str], probability: float, seed: int):
    """Token ids per sentence and the positions masked in each (seeded)."""
    rng = np.random.default_rng(seed)
    limit = getattr(loaded.model.config, "max_position_embeddings", 512)
    encoded, masked = [], []
    for text in sentences:
        ids = loaded.tokenizer(text, truncation=True, max_length=limit)["input_ids"]
        where = scorable_positions(loaded, ids)
        if not where:
            continue
        k = max(1, round(probability * len(where)))
        encoded.append(ids)
        masked.append(sorted(rng.choice(where, k, replace=False).tolist()))
    return encoded, masked


@contextmanager
def _only_at(model: nn.Module, picked: Tensor) -> Iterator[None]:
    """The vocabulary projection sees only the hidden states where ``picked`` (batch, seq) is True: (1, n, d)."""

    def select(module, args):
        return (args[0][picked.to(args[0].device)].unsqueeze(0),)

    handle = model.get_output_embeddings().register_forward_pre_hook(select)
    try:
        yield
    finally:
        handle.remove()


@torch.no_grad()
def mlm_head_check(
    loaded: LoadedModel,
    sentences: Sequence[str],
    *,
    probability: float = CHECK_PROBABILITY,
    seed: int = 0,
    batch_size: int = 32,
) -> MlmHeadCheck:
    """Top-1 accuracy of ``loaded``'s MLM head on masked tokens of ``sentences`` against the unigram baseline.

    Raises:
        ValueError: ``loaded`` is not a masked LM, or no sentence has a token to mask.
    """
    if loaded.head != "mlm" or loaded.tokenizer.mask_token_id is None:
        raise ValueError(
            f"mlm_head_check needs a masked LM with a mask token; {loaded.source!r} was loaded with "
            f"head={loaded.head!r}."
        )
    encoded, masked = _masked(loaded, sentences, probability, seed)
    if not encoded:
        raise ValueError("mlm_head_check: no sentence has a token to mask; give non-empty sentences.")
    counts = Counter(ids[p] for ids in encoded for p in scorable_positions(loaded, ids))
    frequent = counts.most_common(1)[0][0]
    pad, mask_id = loaded.tokenizer.pad_token_id or 0, loaded.tokenizer.mask_token_id
    preds, truth = [], []
    for start in range(0, len(encoded), batch_size):
        rows = range(start, min(start + batch_size, len(encoded)))
        width = max(len(encoded[i]) for i in rows)
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        attention, picked = torch.zeros_like(ids), torch.zeros_like(ids, dtype=torch.bool)
        for r, i in enumerate(rows):
            ids[r, : len(encoded[i])] = torch.as_tensor(encoded[i])
            attention[r, : len(encoded[i])] = 1
            picked[r, masked[i]] = True
        truth.append(ids[picked])  # row-major: the order of the selected hidden states
        ids[picked] = mask_id
        with _only_at(loaded.model, picked):
            logits = loaded.model(input_ids=ids.to(loaded.device), attention_mask=attention.to(loaded.device)).logits
        preds.append(logits[0].argmax(-1).cpu())  # (n_masked,)
    pred, true = torch.cat(preds).numpy(), torch.cat(truth).numpy()
    token = loaded.tokenizer.convert_ids_to_tokens(frequent)
    return MlmHeadCheck(float((pred == true).mean()), float((true == frequent).mean()), len(true), str(token))
