"""Checks of the mitigation sections that need the teacher's shape, run by the preflight before any model is built:
an erasure layer that does not exist in a model it is applied to, or more heads to bias-prune than a model can lose
(each layer keeps one head, and the protected share stays)."""

from __future__ import annotations

from pipeline.compress.biasprune import heads_to_remove
from pipeline.compress.distil import default_layer_map
from pipeline.compress.erase import erased_layers
from pipeline.runs.config import ConfigError, RunConfig
from pipeline.variants import Variant

__all__ = ["base_shape", "check_mitigations"]


def _teacher_shape(teacher) -> tuple[int, int]:
    """(blocks, heads per block) of a BERT or DistilBERT config."""
    if teacher.model_type == "distilbert":
        return teacher.n_layers, teacher.n_heads
    return teacher.num_hidden_layers, teacher.num_attention_heads


def base_shape(cfg: RunConfig, base: str, teacher) -> tuple[int, int] | None:
    """(blocks, heads per block) of the variants of method ``base`` (``teacher`` or a planned method), or None
    when heads were removed (the count is only known once they are built)."""
    n_layers, n_heads = _teacher_shape(teacher)
    family = Variant(base, "before").family
    if base == "teacher" or family in ("sparse", "int8") or base.startswith("distil_mixup"):
        return n_layers, n_heads
    if base == "distil":
        distil = cfg.compress.distil
        return len(distil.layer_map or default_layer_map(n_layers)) if distil else n_layers, n_heads
    if base == "tiny" and cfg.compress.tiny is not None:
        tiny = cfg.compress.tiny
        return tiny.n_layers or (
            len(tiny.layer_map) if tiny.layer_map else max(1, n_layers // 2)
        ), tiny.n_heads or n_heads
    return None if "prune" in base else (n_layers, n_heads)


def check_mitigations(cfg: RunConfig, teacher) -> None:
    """Refuse, before any training, erasure layers or bias-pruning sizes that a model of the run cannot take.

    Args:
        cfg: the run config.
        teacher: the teacher's ``transformers`` config (read without weights by the preflight).

    Raises:
        ConfigError: naming the section, the value, the model and what is allowed.
    """
    erase, prune = cfg.compress.erase, cfg.compress.biasprune
    for base in erase.on if erase else ():
        shape = base_shape(cfg, base, teacher)
        if shape is not None:
            try:
                erased_layers(erase.layers, shape[0])
            except ValueError as err:
                raise ConfigError(f"{err} (the {base} variants have {shape[0]} blocks)") from None
    for base in prune.on if prune else ():
        shape = base_shape(cfg, base, teacher)
        if shape is None:
            continue  # a head-pruned base: checked when it is built
        per_layer = (shape[1],) * shape[0]
        protected = round(prune.protect * sum(per_layer))
        sizes = [{"count": k} for k in prune.heads] + [{"fraction": f} for f in prune.fractions]
        for size in sizes:
            try:
                n = heads_to_remove(per_layer, **size)
            except ValueError as err:
                raise ConfigError(f"compress.biasprune ({base} variants): {err}") from None
            if n > sum(per_layer) - protected:
                raise ConfigError(
                    f"compress.biasprune ({base} variants): removing {n} of {sum(per_layer)} heads "
                    f"while protect = {prune.protect} keeps {protected} leaves too few; lower the "
                    "count or protect."
                )
