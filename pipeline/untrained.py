"""Does a model's encoder look untrained (random weights)? A cheap check on the weights' statistics.

BERT-family models are initialised (``_init_weights`` in transformers) with every linear weight drawn from
``N(0, config.initializer_range)``, every linear bias 0 and every LayerNorm at weight 1, bias 0. Training moves all
of them. :func:`untrained_reason` says the weights look untrained when both hold for every linear layer and
LayerNorm of the encoder (embeddings included; heads left out):

* each bias is exactly 0 and each LayerNorm is exactly (1, 0), and
* each weight matrix of ``n`` entries matches the init distribution: its standard deviation within
  ``4 / sqrt(2n)`` (four standard errors) of ``initializer_range`` relative, its mean within 4 standard errors of 0
  and its excess kurtosis within ``5 * sqrt(24 / n)`` of 0 (a Gaussian has none; trained weights have heavy tails).

A model whose numbers would come from a random network is then flagged ("weights look untrained") by
``bias-atlas metrics`` and the attribution commands. Weights set by hand (a planted structure) or loaded from a
pretrained checkpoint fail the second test; quantised layers are not read (no verdict).
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["untrained_reason"]

_HEADS = ("classifier", "pre_classifier", "pooler", "cls.", "vocab_", "lm_head")  # not the encoder


def _matches_init(weight: torch.Tensor, std: float) -> bool:
    values = weight.detach().double().flatten()
    n = values.numel()
    if n < 64:
        return False
    mean, sd = float(values.mean()), float(values.std())
    kurtosis = float(((values - mean) ** 4).mean() / sd**4) - 3.0 if sd > 0 else math.inf
    return (
        abs(sd / std - 1) <= 4 / math.sqrt(2 * n)
        and abs(mean) <= 4 * std / math.sqrt(n)
        and abs(kurtosis) <= 5 * math.sqrt(24 / n)
    )


def untrained_reason(model: nn.Module) -> str | None:
    """``"weights look untrained: ..."`` when the encoder's weights are still at their random initialisation (module
    docstring), else None (also when the model has no ``initializer_range`` or no float linear layer to read)."""
    std = getattr(getattr(model, "config", None), "initializer_range", None)
    if not std:
        return None
    modules = [(name, m) for name, m in model.named_modules() if not any(h in name for h in _HEADS)]
    linears = [m for _, m in modules if isinstance(m, nn.Linear) and m.weight.is_floating_point()]
    norms = [m for _, m in modules if isinstance(m, nn.LayerNorm)]
    if not linears:
        return None
    with torch.no_grad():
        at_init = all(m.bias is None or not m.bias.any() for m in linears) and all(
            bool((m.weight == 1).all()) and (m.bias is None or not m.bias.any()) for m in norms
        )
        if not at_init or not all(_matches_init(m.weight, std) for m in linears):
            return None
    return (
        f"weights look untrained: all {len(linears)} encoder weight matrices match the random initialisation "
        f"N(0, {std:g}) and every bias and LayerNorm is at its initial value, so these numbers describe a random "
        "network. Fix: give a trained model (a fine-tuned folder or a pretrained hub name)."
    )
