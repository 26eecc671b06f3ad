"""Run a sequence classifier over many texts in batches and collect its logits.

Used by the extrinsic and counterfactual metrics; the model is only read (no gradient, eval mode kept).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from pipeline.eo_hooks import data_genders
from pipeline.models import LoadedModel

__all__ = ["check_classifier", "classifier_logits"]


def check_classifier(loaded: LoadedModel, what: str) -> None:
    """Raise ValueError unless ``loaded`` is a sequence classifier (its head may still be untrained)."""
    if loaded.head != "classifier":
        raise ValueError(
            f"{what} needs a sequence classifier, but {loaded.source!r} was loaded with head={loaded.head!r}. "
            "Fix: load_model(source, head='classifier', num_labels=...) on a fine-tuned model."
        )


@torch.no_grad()
def classifier_logits(
    loaded: LoadedModel,
    texts: Sequence[str],
    *,
    batch_size: int = 64,
    max_length: int = 128,
    progress: bool = False,
    genders: Sequence[int] | None = None,
) -> Float[Tensor, "batch n_classes"]:
    """Logits of the classifier for every text, float32 on CPU, shape (n_texts, n_classes), in input order.

    Texts are batched in order of token length, so batches carry little padding; the batching depends only on the
    texts, so the same model gives bit-identical outputs on every call. The model is put in eval mode for the call
    and its training flag restored afterwards.

    Args:
        loaded: A model loaded with ``head="classifier"``.
        texts: The inputs.
        batch_size: Texts per forward pass.
        max_length: Longer texts are truncated to this many tokens.
        progress: Show a progress bar.
        genders: Each text's gender (``MALE`` / ``FEMALE``; ``UNKNOWN`` leaves it unchanged), read only by an
            equal-opportunity variant built with ``gender = "given"`` (:func:`pipeline.eo_hooks.data_genders`);
            every other model ignores it.
    """
    check_classifier(loaded, "classifier_logits")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}; use a positive number of texts per forward pass.")
    texts = list(texts)
    model = loaded.model
    out = torch.zeros(len(texts), model.config.num_labels)
    if not texts:
        return out
    lengths = [len(ids) for ids in loaded.tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]]
    order = np.argsort(lengths, kind="stable")
    was_training = model.training
    model.eval()
    try:
        with data_genders(loaded, texts, genders, max_length=max_length):
            for start in tqdm(range(0, len(order), batch_size), desc="classify", leave=False, disable=not progress):
                rows = order[start : start + batch_size]
                enc = loaded.tokenize([texts[i] for i in rows], max_length=max_length)
                out[torch.as_tensor(rows)] = model(**enc).logits.float().cpu()  # (batch, n_classes)
    finally:
        model.train(was_training)
    return out
