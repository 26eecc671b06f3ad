"""Checkpoint folders laid out as hub models ship them, built from tiny random models (CPU, no network).

Kept beside ``tiny.py`` (``tests/`` is on the import path) so any test folder can use it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from tiny import make_tiny

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = ["the", "a", "he", "she", "his", "her", "nurse", "doctor", "is", "was", "said", "and", "to", "of", "in"]


def tinybert_layout(
    path: str | Path, *, seed: int = 0, vocab: Sequence[str] | None = None, **overrides
) -> dict[str, torch.Tensor]:
    """Write a TinyBERT general checkpoint as it ships on the hub into ``path``; return its state dict.

    Layout (as ``huawei-noah/TinyBERT_General_4L_312D``): config.json without ``model_type`` or ``architectures``,
    with TinyBERT's extra keys ``cell``, ``emb_size``, ``structure``; ``pytorch_model.bin`` (``torch.save``) with
    ``bert.*``, ``cls.*`` and a ``fit_denses.0.weight`` projection; ``vocab.txt`` as the only tokenizer file.
    The weights are those of a tiny random ``BertForMaskedLM`` (3 layers, 4 heads, width 32, 120 tokens; ``vocab``
    gives another vocabulary, e.g. the real uncased one, and ``overrides`` other config values), so its ``cls.*``
    tensors are, like the real checkpoint's, not a trained LM head.
    """
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    if vocab is not None:
        overrides["vocab_size"] = len(vocab)
    model = make_tiny("bert", "mlm", seed=seed, **overrides)
    config = model.config.to_dict()
    for key in ("model_type", "architectures", "transformers_version", "dtype", "torch_dtype"):
        config.pop(key, None)
    config.update(cell={}, emb_size=config["hidden_size"], structure=[], pre_trained="", training="")
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["fit_denses.0.weight"] = torch.randn(2 * config["hidden_size"], config["hidden_size"])
    torch.save(state, folder / "pytorch_model.bin")
    if vocab is None:
        vocab = SPECIALS + WORDS + [f"w{i}" for i in range(config["vocab_size"] - len(SPECIALS) - len(WORDS))]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    return state
