"""Compression methods (their settings: :mod:`pipeline.compress.config`).

Methods: :func:`distil` (DistilBERT-style, Sanh et al. 2019, with optional gender-word mixup, Ahn et al. 2022),
:func:`tiny` (TinyBERT-style, Jiao et al. 2020), head pruning by importance and magnitude pruning (Michel et al.
2019; :mod:`.prune`), dynamic int8 quantisation (:mod:`.quantise`). The run plan that turns them into variants is
:mod:`pipeline.runs.plan` (orchestration floor).
"""

from pipeline.compress.distil import check_layer_map, default_layer_map, distil, init_student
from pipeline.compress.mixup import GenderMixup
from pipeline.compress.prune import head_importance, keep_sparsity, magnitude_prune, prune_heads
from pipeline.compress.tiny import default_tiny_map, init_tiny, tiny
from pipeline.int8 import QUANTIZATION, is_quantised, quantise_dynamic, supports_gradients

__all__ = [
    "QUANTIZATION",
    "GenderMixup",
    "check_layer_map",
    "default_layer_map",
    "default_tiny_map",
    "distil",
    "head_importance",
    "init_student",
    "init_tiny",
    "is_quantised",
    "keep_sparsity",
    "magnitude_prune",
    "prune_heads",
    "quantise_dynamic",
    "supports_gradients",
    "tiny",
]
