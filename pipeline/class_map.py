"""Class identity by name: a trained classifier head's classes must be the data's classes, matched by name.

A checkpoint's head is trained when it holds classifier weights (``classifier.weight``; for a hub name, in its
cached snapshot, or before any download, a config whose ``architectures`` names a ``...ForSequenceClassification``
class) and its config does not say otherwise (``config.task_head_trained``). Its class names are ``config.id2label``; transformers' defaults
``LABEL_0``, ``LABEL_1``... name nothing, so such a head cannot be matched to data by name. :func:`check_classes`
refuses a head whose names differ from the data's (another class at some position, or unnamed classes) unless the
user maps them explicitly (``[teacher] label_map = {head class = data class}``); :func:`apply_class_map` then
reorders the head's rows into the data's class order, so row ``k`` scores data class ``k`` and the saved config
names it.

The stand-alone commands (``bias-atlas ablate|importance|ig|patch|probe``) keep a trained head as it is and map the
data onto it instead (:func:`load_classifier_for`): the head's classes must be data classes by name, or be mapped
onto them with ``--label-map HEAD=DATA,...``; rows of data classes the head does not know are dropped (logged).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from transformers import PretrainedConfig

from pipeline.data import TaskData
from pipeline.data._io import preview
from pipeline.models import LoadedModel, load_model, load_model_config, resolve_source

__all__ = ["apply_class_map", "check_classes", "data_names_for_head", "head_classes", "load_classifier_for"]

_HEAD_KEYS = ("classifier.weight",)  # BERT and DistilBERT sequence classifiers


def _weight_names(folder: Path) -> set[str]:
    """Tensor names of a local checkpoint, read without loading the tensors (safetensors); empty when unknown."""
    from safetensors import safe_open

    single, index = folder / "model.safetensors", folder / "model.safetensors.index.json"
    if single.is_file():
        with safe_open(single, "pt") as handle:
            return set(handle.keys())
    if index.is_file():
        return set(json.loads(index.read_text())["weight_map"])
    return set()


def _cached_snapshot(source: str) -> Path | None:
    """The local snapshot folder of a hub name whose weights are in the hub cache (None when not cached)."""
    from huggingface_hub import try_to_load_from_cache

    for name in ("model.safetensors", "model.safetensors.index.json"):
        try:
            hit = try_to_load_from_cache(source, name)
        except ValueError:  # not a valid repo id
            return None
        if isinstance(hit, str):
            return Path(hit).parent
    return None


def _has_trained_head(source: str, config: PretrainedConfig) -> bool:
    """Whether a checkpoint ships classifier weights: read from its weight files (a local folder, or a hub name's
    cached snapshot); a hub name not cached yet is judged by its config (``architectures`` naming a
    ``...ForSequenceClassification`` class, as the hub's fine-tuned classifiers do)."""
    folder = Path(source) if Path(source).is_dir() else _cached_snapshot(source)
    if folder is not None:
        return any(k.endswith(_HEAD_KEYS) for k in _weight_names(folder))
    return any(str(a).endswith("ForSequenceClassification") for a in getattr(config, "architectures", None) or ())


def head_classes(source: str | Path, config: PretrainedConfig) -> tuple[str, ...] | None:
    """The class names of the trained classifier head of a local folder or hub checkpoint (default ``LABEL_k`` names
    included), or None when it has none (no classifier weights, or ``config.task_head_trained`` false)."""
    flag = getattr(config, "task_head_trained", None)
    if flag is False or (flag is None and not _has_trained_head(str(source), config)):
        return None
    return tuple(str(config.id2label[i]) for i in range(config.num_labels))


def check_classes(
    head: Sequence[str] | None, data: Sequence[str], label_map: Mapping[str, str] | None, *, where: str
) -> None:
    """Refuse a trained head whose classes are not the data's by name (unless ``label_map`` maps every head class
    to a distinct data class, covering all of them).

    Raises:
        ValueError: the head's and the data's classes, and the fix.
    """
    if head is None:
        if label_map:
            raise ValueError(
                f"{where} has no trained classifier head, so label_map has nothing to map. Fix: remove it."
            )
        return
    head, data = tuple(map(str, head)), tuple(map(str, data))
    if label_map is None:
        if head == data:
            return
        unnamed = all(name == f"LABEL_{i}" for i, name in enumerate(head))
        what = "unnamed classes (transformers' default LABEL_k names)" if unnamed else f"the classes {list(head)}"
        raise ValueError(
            f"{where} has a trained classifier head for {what}, but the data's classes are {list(data)}; classes "
            "are matched by name, never by position. Fix: map them explicitly, e.g. [teacher] label_map = "
            f'{{ "{head[0]}" = "{data[0]}", ... }} (every head class to a data class), or use a teacher without a '
            "trained head."
        )
    mapped = [label_map.get(name) for name in head]
    if None in mapped or sorted(mapped) != sorted(data):
        raise ValueError(
            f"label_map {dict(label_map)} must map each of the head's classes {list(head)} to a distinct class of "
            f"the data {list(data)}, covering them all. Fix: name every head class once, with a data class as value."
        )


def apply_class_map(model: torch.nn.Module, data: Sequence[str], label_map: Mapping[str, str]) -> None:
    """Reorder the head's output rows into the data's class order (row ``k`` scores ``data[k]``) and name them."""
    config = model.config
    head = [str(config.id2label[i]) for i in range(config.num_labels)]
    position = {label_map[name]: i for i, name in enumerate(head)}
    order = torch.tensor([position[name] for name in data])
    layer = model.classifier
    with torch.no_grad():
        layer.weight.copy_(layer.weight[order].clone())
        if layer.bias is not None:
            layer.bias.copy_(layer.bias[order].clone())
    config.id2label = dict(enumerate(map(str, data)))
    config.label2id = {name: i for i, name in enumerate(map(str, data))}


def data_names_for_head(
    head: Sequence[str], data: Sequence[str], label_map: Mapping[str, str] | None, *, where: str
) -> tuple[str, ...]:
    """The data's class names renamed to the head's classes (``label_map``: head class -> data class; a head class
    it does not name keeps its own name); data classes no head class takes get a name the head does not know.

    Raises:
        ValueError: a head class that is no data class (unnamed ``LABEL_k`` ones included) and is not mapped, or a
            map naming unknown classes or one data class twice; the message has the ``--label-map`` fix.
    """
    head, data = tuple(map(str, head)), tuple(map(str, data))
    label_map = dict(label_map or {})
    unknown = sorted(set(label_map) - set(head))
    mapped = [label_map.get(name, name) for name in head]
    if unknown or set(mapped) - set(data) or len(set(mapped)) != len(mapped):
        if not label_map:
            unnamed = all(name == f"LABEL_{i}" for i, name in enumerate(head))
            what = "unnamed classes (transformers' default LABEL_k names)" if unnamed else f"the classes {list(head)}"
            raise ValueError(
                f"{where} has a trained classifier head for {what}, but the data's classes are {preview(data, 10)}; "
                f"classes are matched by name, never by position. Fix: map them with --label-map "
                f"{head[0]}={data[0]},... (every head class to a data class), or use data with the head's classes."
            )
        raise ValueError(
            f"--label-map {','.join(f'{k}={v}' for k, v in label_map.items())} must map each of the head's classes "
            f"{list(head)} (a class it does not name keeps its name) to a distinct class of the data "
            f"{preview(data, 10)}. Fix: name head classes on the left, data classes on the right, each data class once."
        )
    inverse = dict(zip(mapped, head, strict=True))
    return tuple(inverse.get(name, f"{name} (not in the head)") for name in data)


def load_classifier_for(
    source: str | Path, data: TaskData, label_map: Mapping[str, str] | None, *, device: str | None = None
) -> tuple[LoadedModel, TaskData]:
    """``source`` loaded as a classifier for ``data``, and the data mapped onto its classes by name.

    A trained head of a local folder (:func:`head_classes`) is kept as saved and checked by
    :func:`data_names_for_head`; a model without one gets a head with the data's classes (``label_map`` refused).
    """
    resolved = resolve_source(source)
    head = head_classes(resolved, load_model_config(resolved))
    if head is None:
        if label_map:
            raise ValueError(
                f"{source!r} has no trained classifier head, so --label-map has nothing to map. Fix: drop it."
            )
        loaded = load_model(source, head="classifier", label_names=list(data.label_names), device=device)
        return loaded, data.relabel(loaded.label_names)  # a hub head with real names: by name (pipeline.models)
    names = data_names_for_head(head, data.label_names, label_map, where=repr(str(source)))
    loaded = load_model(source, head="classifier", device=device)  # the head as saved, never renamed by position
    return loaded, dataclasses.replace(data, label_names=names).relabel(loaded.label_names)
