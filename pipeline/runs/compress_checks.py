"""Preflight checks and model shapes of the compression methods (named by their records,
:mod:`pipeline.compress.registry`): what needs the teacher's shape and can be refused before any model is built
(a layer map out of range, a student width that does not divide, an erasure layer a model lacks, more heads to
bias-prune than a model can lose)."""

from __future__ import annotations

import numpy as np

from pipeline.compress.biasprune import heads_to_remove
from pipeline.compress.config import (
    BiasPruneSection,
    DistilSection,
    EraseSection,
    FairDistilSection,
    MethodSection,
    TinySection,
)
from pipeline.compress.distil import check_layer_map, default_layer_map
from pipeline.compress.eo import dev_groups, empty_cells
from pipeline.compress.erase import erased_layers
from pipeline.compress.registry import compression_methods, resolve
from pipeline.compress.tiny import default_tiny_map
from pipeline.runs.config import ConfigError, RunConfig
from pipeline.runs.task_data import TaskSplits

__all__ = [
    "base_shape",
    "check_biasprune",
    "check_compression",
    "check_distil",
    "check_eo_data",
    "check_erase",
    "check_fairdistil",
    "check_refit_data",
    "check_tiny",
    "distil_shape",
    "pruned_shape",
    "teacher_shape",
    "tiny_shape",
]

Shape = tuple[int, int]  # (blocks, heads per block)


def teacher_shape(teacher) -> Shape:
    """(blocks, heads per block) of a BERT or DistilBERT ``transformers`` config."""
    if teacher.model_type == "distilbert":
        return teacher.n_layers, teacher.n_heads
    return teacher.num_hidden_layers, teacher.num_attention_heads


def distil_shape(section: DistilSection, method: str, n_layers: int, n_heads: int) -> Shape:
    """A DistilBERT-style student keeps the heads of the teacher layers its layer map names."""
    return len(section.layer_map or default_layer_map(n_layers)), n_heads


def tiny_shape(section: TinySection, method: str, n_layers: int, n_heads: int) -> Shape:
    """A TinyBERT-style student's configured depth and head count (defaults: half the layers, the same heads)."""
    depth = section.n_layers or (len(section.layer_map) if section.layer_map else max(1, n_layers // 2))
    return depth, section.n_heads or n_heads


def pruned_shape(section: MethodSection, method: str, n_layers: int, n_heads: int) -> Shape | None:
    """Unknown for head-pruned variants until they are built; magnitude pruning keeps every head."""
    return (n_layers, n_heads) if method.startswith("sparse") else None


def base_shape(cfg: RunConfig, base: str, teacher) -> Shape | None:
    """(blocks, heads per block) of the variants of method ``base`` (``teacher`` or a planned method), or None
    when not known before they are built (heads removed, or no method of the run is called so)."""
    n_layers, n_heads = teacher_shape(teacher)
    if base == "teacher":
        return n_layers, n_heads
    for record in compression_methods():
        section = getattr(cfg.compress, record.key, None)
        if section is not None and any(name == base for name, _, _ in section.methods()):
            return resolve(record.shape)(section, base, n_layers, n_heads) if record.shape else (n_layers, n_heads)
    return None


def check_distil(section: DistilSection, cfg: RunConfig, teacher) -> None:
    """A configured layer map must name teacher layers."""
    if section.layer_map is not None:
        check_layer_map(section.layer_map, teacher_shape(teacher)[0], "compress.distil.layer_map")


def check_tiny(section: TinySection, cfg: RunConfig, teacher) -> None:
    """The layer map must name teacher layers and the width must divide into the heads."""
    n_layers, n_heads = teacher_shape(teacher)
    n_student = tiny_shape(section, "tiny", n_layers, n_heads)[0]
    check_layer_map(section.layer_map or default_tiny_map(n_layers, n_student), n_layers, "compress.tiny.layer_map")
    d_model = teacher.hidden_size if teacher.model_type == "bert" else teacher.dim
    heads, hidden = section.n_heads or n_heads, section.hidden_size or d_model // 2
    if hidden % heads:
        raise ValueError(
            f"compress.tiny: hidden_size {hidden} is not a multiple of n_heads {heads}; set "
            "hidden_size and n_heads so that it is."
        )


def check_erase(section: EraseSection, cfg: RunConfig, teacher) -> None:
    """Every erasure layer must exist in every model the eraser is applied to."""
    for base in section.on:
        shape = base_shape(cfg, base, teacher)
        if shape is not None:
            try:
                erased_layers(section.layers, shape[0])
            except ValueError as err:
                raise ConfigError(f"{err} (the {base} variants have {shape[0]} blocks)") from None


def check_biasprune(section: BiasPruneSection, cfg: RunConfig, teacher) -> None:
    """Each size must leave every layer a head and keep the protected share."""
    for base in section.on:
        shape = base_shape(cfg, base, teacher)
        if shape is None:
            continue  # a head-pruned base: checked when it is built
        per_layer = (shape[1],) * shape[0]
        protected = round(section.protect * sum(per_layer))
        sizes = [{"count": k} for k in section.heads] + [{"fraction": f} for f in section.fractions]
        for size in sizes:
            try:
                n = heads_to_remove(per_layer, **size)
            except ValueError as err:
                raise ConfigError(f"compress.biasprune ({base} variants): {err}") from None
            if n > sum(per_layer) - protected:
                raise ConfigError(
                    f"compress.biasprune ({base} variants): removing {n} of {sum(per_layer)} heads "
                    f"while protect = {section.protect} keeps {protected} leaves too few; lower the "
                    "count or protect."
                )


def check_compression(cfg: RunConfig, teacher) -> None:
    """Run the check of every enabled method's record, before any training.

    Args:
        cfg: the run config.
        teacher: the teacher's ``transformers`` config (read without weights by the preflight).

    Raises:
        ConfigError: naming the section, the value, the model and what is allowed.
    """
    for record in compression_methods():
        section = getattr(cfg.compress, record.key, None)
        if section is not None and record.check is not None:
            try:
                resolve(record.check)(section, cfg, teacher)
            except ConfigError:
                raise
            except ValueError as err:
                raise ConfigError(str(err)) from None


def check_refit_data(cfg: RunConfig, splits: TaskSplits) -> None:
    """``eoreg`` needs both genders in every training set, and ``eo`` every (class, gender) cell of the dev split
    (:func:`check_eo_data`). (The ``reweighed`` training set's empty cells are refused when it is built.)"""
    check_eo_data(cfg, splits)
    if cfg.compress.eoreg is None:
        return
    for name, train in splits.train.items():
        present = np.unique(train.genders).tolist()
        if len(present) < 2:
            raise ConfigError(
                f"compress.eoreg on training set {name!r}: the TPR-gap penalty compares genders, but only "
                f"{present} occur; use a training set with both genders (raise task.max_train)."
            )


def check_fairdistil(section: FairDistilSection, cfg: RunConfig, teacher) -> None:
    """The student's layer map must fit the teacher, and ``[compress.distil]``, when on, must train like the fair
    student: the variant ``distil`` is the twin of both and is built once."""
    if section.layer_map is not None:
        check_layer_map(section.layer_map, teacher_shape(teacher)[0], "compress.fairdistil.layer_map")
    plain = cfg.compress.distil
    if plain is None:
        return
    own = set(FairDistilSection.model_fields) - {"gap_weight", "mixup", "mixup_alpha", "orders"}
    differ = sorted(k for k in own if getattr(section, k) != getattr(plain, k))
    if differ:
        raise ConfigError(
            f"compress.fairdistil and compress.distil differ in {differ}, but distil is the fair student's twin "
            "(built once); give both the same values"
        )


def check_eo_data(cfg: RunConfig, splits: TaskSplits) -> None:
    """``eo`` fits its rule on the dev split: it needs dev rows, and one of each gender in every class."""
    section = cfg.compress.eo
    if section is None:
        return
    dev = splits.dev
    if not len(dev):
        raise ConfigError("compress.eo fits its rule on the dev split, which is empty; give the task a dev split.")
    empty = empty_cells(dev.labels, dev_groups(dev, section.gender), tuple(dev.label_names))
    if empty:
        raise ConfigError(
            f"compress.eo (gender = {section.gender!r}): the dev split has no row for {empty}, so their true-positive "
            "rates are undefined; use a larger dev split (task.fractions, task.max_eval), fewer classes (task.max_classes) or, with "
            "the inferred gender, texts that name a gender."
        )
