"""The masked-LM head a variant keeps beside its classifier: its tensors, how it is saved, where it came from.

A run saves every variant as a sequence classifier (the task's classes in ``config.id2label``). When the variant's
input had a trained masked-LM head, that head is saved **in the same weights file**, under the names the family's
masked-LM class gives it (BERT: ``cls.predictions.*``; DistilBERT: ``vocab_transform.*``, ``vocab_layer_norm.*``,
``vocab_projector.*``), as hub checkpoints ship an MLM head beside an encoder. So ``load_model(folder,
head="mlm")`` (or plain ``AutoModelForMaskedLM.from_pretrained(folder)``) restores it, and the classifier loader
ignores it. Tensors tied to the word embeddings (BERT's decoder weight) are not stored: they are tied again on
load, to this variant's own embeddings.

``config.mlm_head`` (:data:`MLM_HEAD_KEY`) records where the head came from, as the literature reports it:

* ``{"origin": ..., "since": [...]}``: ``origin`` is how the head was last trained (``checkpoint``: pretrained
  with the encoder; ``mlm``: masked-LM domain fine-tuning; ``distil``: general distillation, which trains the
  student's head with the masked-LM and soft-target losses); ``since`` lists what was done to the encoder after
  that (``fine-tuned``, ``distilled``, ``head-pruned``, ``magnitude-pruned``, ``quantised to int8``). An empty
  ``since`` means the head was trained together with this encoder.
* ``{"absent": reason}``: the variant has no MLM head, and why (its source had none, or its width changed).

A head that loads is not necessarily a language model: :mod:`pipeline.metrics.mlm_check` checks it before any
benchmark reads it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn
from transformers import AutoModelForSequenceClassification, PretrainedConfig

from pipeline.anatomy import Anatomy
from pipeline.models import HEAD_TRAINED_KEY, LoadedModel, load_model, load_model_config, resolve_source

__all__ = [
    "MLM_HEAD_KEY",
    "SHIPPED",
    "MlmHead",
    "absent_reason",
    "as_classifier",
    "describe_mlm_head",
    "mlm_head_state",
    "read_mlm_head",
]

MLM_HEAD_KEY = "mlm_head"  # config attribute written by the pipeline: provenance of the saved MLM head
_ORIGINS = {"checkpoint": "pretrained", "mlm": "masked-LM fine-tuned", "distil": "trained by general distillation"}
SHIPPED = "from the checkpoint as shipped"  # a folder the pipeline did not write: provenance unknown


@dataclass(frozen=True)
class MlmHead:
    """An MLM head's tensors (as named in the family's masked-LM class) and its provenance."""

    state: dict[str, Tensor] = field(repr=False)
    origin: str
    since: tuple[str, ...] = ()

    @property
    def joint(self) -> bool:
        """True when the head was trained together with this encoder (nothing changed the encoder since)."""
        return not self.since

    def after(self, change: str) -> MlmHead:
        """The same head after ``change`` was done to the encoder."""
        return MlmHead(self.state, self.origin, (*self.since, change))

    def record(self) -> dict:
        """The ``config.mlm_head`` value."""
        return {"origin": self.origin, "since": list(self.since)}


def describe_mlm_head(config: PretrainedConfig) -> str:
    """The ``mlm_head`` column: which head a variant's MLM benchmarks read, e.g. "pretrained, encoder fine-tuned
    since" or "pretrained together with this encoder"; ``""`` when the config records no head."""
    record = getattr(config, MLM_HEAD_KEY, None)
    if not isinstance(record, dict):
        return SHIPPED
    if "origin" not in record:
        return ""
    origin = _ORIGINS.get(record["origin"], str(record["origin"]))
    since = list(record.get("since", []))
    return f"{origin}, encoder {', then '.join(since)} since" if since else f"{origin} together with this encoder"


def absent_reason(config: PretrainedConfig) -> str | None:
    """Why a pipeline variant has no MLM head (``config.mlm_head = {"absent": ...}``); None otherwise."""
    record = getattr(config, MLM_HEAD_KEY, None)
    return str(record["absent"]) if isinstance(record, dict) and "absent" in record else None


def mlm_head_state(model: nn.Module) -> dict[str, Tensor]:
    """The MLM head's own tensors of a masked-LM model (CPU copies), without those tied to the embeddings."""
    prefix = f"{model.base_model_prefix}."
    tied = set(getattr(model, "all_tied_weights_keys", None) or {})
    return {
        k: v.detach().cpu().clone() for k, v in model.state_dict().items() if not k.startswith(prefix) and k not in tied
    }


@contextmanager
def _quiet_loader() -> Iterator[None]:
    """Silence the loader's "no trained mlm head" warning: here a missing head is an answer, not a problem."""
    logger = logging.getLogger("pipeline.models")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def read_mlm_head(source: str | Path) -> tuple[MlmHead | None, str]:
    """The trained MLM head of a model folder or hub name with its provenance, or (None, why there is none).

    A folder the pipeline wrote keeps its recorded provenance (``config.mlm_head``); any other checkpoint's head is
    ``checkpoint`` (pretrained with its encoder).
    """
    resolved = resolve_source(source)
    config = load_model_config(resolved)
    reason = absent_reason(config)
    if reason is not None:
        return None, reason
    with _quiet_loader():
        loaded = load_model(resolved, head="mlm")
    if not loaded.head_trained:
        return None, f"its source ({source}) has no MLM head"
    record = getattr(config, MLM_HEAD_KEY, None) or {}
    return MlmHead(mlm_head_state(loaded.model), record.get("origin", "checkpoint"), tuple(record.get("since", ()))), ""


def as_classifier(mlm: LoadedModel, label_names: Sequence[str], seed: int) -> LoadedModel:
    """A sequence classifier with ``mlm``'s encoder and a new (untrained) head for ``label_names``.

    The head (and BERT's pooler, which masked-LM models lack) is initialised under ``seed``; the config keeps every
    other attribute (``layer_map``...) and is flagged ``task_head_trained = False``.
    """
    config = mlm.model.config.__class__.from_dict(mlm.model.config.to_dict())
    config.num_labels = len(label_names)
    config.id2label = dict(enumerate(map(str, label_names)))
    config.label2id = {name: i for i, name in config.id2label.items()}
    config.architectures = None
    setattr(config, HEAD_TRAINED_KEY, False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForSequenceClassification.from_config(config)
    missing, _ = model.base_model.load_state_dict(mlm.model.base_model.state_dict(), strict=False)
    unexpected_missing = [k for k in missing if not k.startswith("pooler.")]
    if unexpected_missing:
        raise RuntimeError(f"as_classifier: the encoder of {mlm.source} lacks {unexpected_missing[:3]}.")
    model.to(device=mlm.device, dtype=next(mlm.model.parameters()).dtype).eval()
    return LoadedModel(model, mlm.tokenizer, Anatomy(model), "classifier", False, mlm.source)
