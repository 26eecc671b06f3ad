"""Gender-word mixup for distillation (Ahn et al. 2022), a mitigation to compare against plain distillation.

Ahn, Lee, Kim and Kim (2022), "Why Knowledge Distillation Amplifies Gender Bias and How to Mitigate from the
Perspective of DistilBERT", GeBNLP workshop: the student learns from teacher outputs that favour one gender, and
mixing each sentence with its gender-swapped twin removes that preference from the targets. Here, for every
training sentence ``x`` and its counterfactual ``x'`` (:class:`pipeline.data.GenderSwapper`: he <-> she, names,
titles...):

    student input embeddings   e = lam * E(x) + (1 - lam) * E(x')        (word embeddings, before positions)
    teacher targets            t = lam * T(x) + (1 - lam) * T(x')        (logits and hidden states)

with ``lam = 0.5`` (``alpha = 0``) or ``lam ~ Beta(alpha, alpha)`` per sentence. Since ``x`` and ``x'`` differ only
in gendered words, the mixing acts on those tokens. A pair whose tokenisations differ in length (a swapped name
with another word-piece count) cannot be aligned token by token and is left unmixed (``lam = 1``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from pipeline.anatomy import Anatomy
from pipeline.data import GenderSwapper

__all__ = ["CF_PREFIX", "GenderMixup", "counterfactual_inputs", "mix", "mixed_embeddings"]

CF_PREFIX = "cf_"  # batch keys of the counterfactual encoding: cf_input_ids, cf_attention_mask, ...
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def mix(a: Tensor, b: Tensor, lam: Float[Tensor, " batch"]) -> Tensor:
    """``lam * a + (1 - lam) * b`` with ``lam`` (batch,) broadcast over the trailing dimensions."""
    lam = lam.to(a.dtype).view(-1, *([1] * (a.dim() - 1)))
    return lam * a + (1 - lam) * b


def mixed_embeddings(anatomy: Anatomy, batch: dict[str, Tensor]) -> Float[Tensor, "batch seq d_model"]:
    """Mixed word embeddings of a batch built by :meth:`GenderMixup.collate` (pass as ``inputs_embeds``)."""
    table = anatomy.word_embeddings
    return mix(table(batch["input_ids"]), table(batch[CF_PREFIX + "input_ids"]), batch["mix_lambda"])


class GenderMixup:
    """Pairs every training text with its gender-swapped twin and draws the mixing weights.

    Args:
        texts: the training texts.
        swapper: the word swapper; default :meth:`GenderSwapper.from_winobias`.
        alpha: 0 for ``lam = 0.5``; otherwise ``lam ~ Beta(alpha, alpha)`` per text.
        seed: seeds the draws of ``lam``.
    """

    def __init__(
        self, texts: Sequence[str], *, swapper: GenderSwapper | None = None, alpha: float = 0.0, seed: int = 0
    ) -> None:
        if alpha < 0:
            raise ValueError(f"alpha={alpha!r} must be >= 0 (0 means a fixed lambda of 0.5).")
        swapper = swapper or GenderSwapper.from_winobias()
        self.texts = list(texts)
        self.swapped = [swapper.swap(t) for t in self.texts]
        self.alpha = alpha
        self._rng = np.random.default_rng(seed)
        self.changed = sum(a != b for a, b in zip(self.texts, self.swapped))  # texts with a gendered word

    def collate(self, tokenizer: PreTrainedTokenizerBase, rows: Sequence[int], max_length: int) -> dict[str, Tensor]:
        """Encode rows and their twins to one padded length; add ``cf_*`` keys and ``mix_lambda`` (batch,)."""
        n = len(rows)
        enc = tokenizer(
            [self.texts[i] for i in rows] + [self.swapped[i] for i in rows],
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        )
        batch = {k: v[:n] for k, v in enc.items()}
        batch.update({CF_PREFIX + k: v[n:] for k, v in enc.items()})
        aligned = (batch["attention_mask"] == batch[CF_PREFIX + "attention_mask"]).all(1)  # (batch,)
        draws = self._rng.beta(self.alpha, self.alpha, n) if self.alpha > 0 else np.full(n, 0.5)
        batch["mix_lambda"] = torch.where(aligned, torch.as_tensor(draws, dtype=torch.float32), torch.ones(n))
        return batch


def counterfactual_inputs(batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """The model inputs of the twin encoding (``cf_input_ids`` -> ``input_ids``...)."""
    return {k: batch[CF_PREFIX + k] for k in _INPUTS if CF_PREFIX + k in batch}
