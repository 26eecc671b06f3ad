"""The model's own task head, applied to final hidden states.

Every attribution method runs the encoder body (under gates, from a cached prefix with
:meth:`pipeline.anatomy.Anatomy.start_at`, or inside TransformerLens, see :mod:`attribution.lens`) to the last
hidden state, then maps that state to the task output with :class:`TaskHead`, which calls the very modules of the
loaded model. Two reasons: the TransformerLens bridge drives only the encoder, so a fine-tuned classifier head
must be applied separately to its residual output; and a masked-LM head is applied only at the positions a score
reads (the [MASK] of a pronoun), not at every position, which saves a vocabulary projection per token.

The head forward passes mirror ``transformers``' ``BertForSequenceClassification`` (pooler: dense + tanh on
[CLS], dropout, linear), ``DistilBertForSequenceClassification`` ([CLS], pre-classifier, ReLU, dropout, linear),
``BertForMaskedLM`` (``cls``) and ``DistilBertForMaskedLM`` (transform, activation, LayerNorm, projector);
tests check them against the full models' logits.
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn
from torch.nn import functional as F

from pipeline.models import LoadedModel

__all__ = ["TaskHead", "check_head"]


def check_head(loaded: LoadedModel, needs: str, what: str) -> None:
    """Raise ``ValueError`` when ``loaded`` lacks the head ``needs`` (``classifier``/``mlm``/``encoder``)."""
    if needs == "encoder":
        return
    if loaded.head != needs:
        raise ValueError(
            f"{what} needs a model with a {needs} head, but {loaded.source!r} was loaded with head={loaded.head!r}. "
            f"Fix: load_model(..., head={needs!r}) (a {needs} head that is not in the checkpoint is initialised "
            "randomly and must be trained first), or pick a score for this head."
        )


class TaskHead:
    """Apply the task head of ``loaded`` to final hidden states.

    Args:
        loaded: the model; its head kind decides which of :meth:`classify` / :meth:`mlm` is available.
    """

    def __init__(self, loaded: LoadedModel) -> None:
        self.loaded = loaded
        self.family = loaded.anatomy.family
        self.model = loaded.model

    def classify(self, hidden: Float[Tensor, "batch seq d_model"]) -> Float[Tensor, "batch n_classes"]:
        """Sequence-classification logits from the last hidden state (the model's own pooler/classifier)."""
        check_head(self.loaded, "classifier", "TaskHead.classify")
        if self.family == "bert":
            pooled = self.loaded.anatomy.base.pooler(hidden)  # (batch, d_model): tanh(dense(h[:, 0]))
        else:
            pooled = nn.functional.relu(self.model.pre_classifier(hidden[:, 0]))  # (batch, d_model)
        return self.model.classifier(self.model.dropout(pooled))  # (batch, n_classes)

    def mlm(self, hidden: Float[Tensor, "*rows d_model"]) -> Float[Tensor, "*rows vocab"]:
        """Masked-LM logits for the given hidden states (any leading shape, e.g. the [MASK] rows only)."""
        check_head(self.loaded, "mlm", "TaskHead.mlm")
        if self.family == "bert":
            return self.model.cls(hidden)
        h = self.model.activation(self.model.vocab_transform(hidden))
        return self.model.vocab_projector(self.model.vocab_layer_norm(h))

    def mlm_at(
        self, hidden: Float[Tensor, "batch seq d_model"], positions: Int[Tensor, " batch"]
    ) -> Float[Tensor, "batch vocab"]:
        """Log-probabilities over the vocabulary at one position per row (e.g. the masked pronoun)."""
        rows = hidden[torch.arange(len(positions), device=hidden.device), positions]  # (batch, d_model)
        return F.log_softmax(self.mlm(rows), dim=-1)  # (batch, vocab)
