"""Dynamic int8 quantisation of the linear layers, and what it rules out.

Post-training dynamic quantisation (``torch.ao.quantization.quantize_dynamic``; Jacob et al. 2018, "Quantization
and Training of Neural Networks for Efficient Integer-Arithmetic-Only Inference"; Zafrir et al. 2019, "Q8BERT"):
every ``nn.Linear`` stores int8 weights with one scale per tensor, and activations are quantised on the fly at
each call. Embeddings and LayerNorms stay float. It runs on CPU only.

Saving: a quantised module cannot go through ``save_pretrained``, so the *float* weights are saved with
``config.quantization = "dynamic_int8"`` and :func:`pipeline.models.load_model` re-quantises on load; quantisation
is deterministic, so the reloaded model computes exactly what the in-run one did.

What cannot run on an int8 model (check :func:`supports_gradients` and skip with a logged reason):

* anything that needs gradients through the encoder: gradient head importance (Michel et al.), integrated
  gradients over tokens, heads or neurons, and any training (fine-tuning, distillation, erasure training);
* GPU execution (the quantised kernels are CPU-only).

What still runs: predictions and task metrics, bias metrics from outputs, head ablation and activation patching
through :mod:`pipeline.gates` (forward hooks work on quantised modules), and probes on extracted representations.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn
from torch.ao.nn.quantized.dynamic import Linear as QuantisedLinear

__all__ = ["QUANTIZATION", "QuantisedLinear", "is_quantised", "quantise_dynamic", "supports_gradients"]

QUANTIZATION = "dynamic_int8"  # value of ``config.quantization`` on saved int8 variants


def quantise_dynamic(model: nn.Module) -> nn.Module:
    """A CPU copy of ``model`` with every ``nn.Linear`` dynamically quantised to int8 (``model`` is untouched).

    The copy's config carries ``quantization = "dynamic_int8"``, so saving its float source (see module docs) and
    reloading gives the same model.
    """
    source = copy.deepcopy(model).cpu().float().eval()
    with warnings.catch_warnings():  # torch marks torch.ao.quantization deprecated in favour of torchao
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=UserWarning)
        quantised = torch.ao.quantization.quantize_dynamic(source, {nn.Linear}, dtype=torch.qint8)
    quantised.config.quantization = QUANTIZATION
    return quantised


def is_quantised(model: nn.Module) -> bool:
    """True when any module of ``model`` is a dynamically quantised linear layer."""
    return any(isinstance(m, QuantisedLinear) for m in model.modules())


def supports_gradients(loaded) -> bool:
    """False for int8 models: gradient importance, integrated gradients and training must be skipped.

    Args:
        loaded: a :class:`pipeline.models.LoadedModel` (or anything with a ``model`` attribute).
    """
    return not is_quantised(loaded.model)
