"""Read checkpoints as they ship: config, weights and tokenizer of a save_pretrained folder or a hub name.

Not every hub checkpoint is a clean ``save_pretrained`` folder. The TinyBERT general checkpoints (Jiao et al.
2020, e.g. ``huawei-noah/TinyBERT_General_4L_312D``) have a config.json without ``model_type`` or
``architectures`` (with extra keys ``cell``, ``emb_size``, ``structure``), a ``pytorch_model.bin`` holding
``bert.*``, ``cls.*`` and the distillation projections ``fit_denses.*``, and only ``vocab.txt`` as tokenizer.
:func:`load_model_config` recognises the family from the config's keys, :func:`note_ignored_weights` reports the skipped
``fit_denses.*`` tensors, :func:`load_tokenizer` builds a tokenizer from ``vocab.txt`` alone, and
:func:`read_weights` reads ``.bin`` files with ``torch.load(weights_only=True)`` only: a full unpickle can run
arbitrary code.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from transformers import AutoConfig, AutoTokenizer, PretrainedConfig, PreTrainedTokenizerBase
from transformers.utils import cached_file
from transformers.utils import logging as hf_logging

from pipeline.anatomy import SUPPORTED_FAMILIES

__all__ = [
    "check_finite",
    "check_local_folder",
    "load_model_config",
    "load_tokenizer",
    "note_ignored_weights",
    "quiet_transformers",
    "read_weights",
]

log = logging.getLogger(__name__)

# Keys that identify a family in a config.json without ``model_type`` (TinyBERT's general checkpoints).
_FAMILY_KEYS = {
    "bert": {"vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size"},
    "distilbert": {"vocab_size", "dim", "n_layers", "n_heads", "hidden_dim"},
}
_IGNORED_WEIGHTS = "fit_denses."  # TinyBERT's projections to the teacher's width: used in distillation only


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' own logging (load reports, length warnings) and progress bars for the block."""
    previous, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(previous)
        if bars:
            hf_logging.enable_progress_bar()


def _raw_config(source: str, local_files_only: bool) -> dict:
    """The parsed config.json of a folder or hub name."""
    path = cached_file(source, "config.json", local_files_only=local_files_only)
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _family_from_keys(raw: dict, source: str) -> str:
    """The family of a config without ``model_type``, told by its keys; ValueError when no family fits."""
    for family, keys in _FAMILY_KEYS.items():
        if keys <= raw.keys():
            return family
    raise ValueError(
        f"{source!r}: config.json has no model_type and its keys {sorted(raw)} match none of the supported "
        f'families ({", ".join(SUPPORTED_FAMILIES)}). Fix: add "model_type": "bert" (or "distilbert") to '
        "config.json if it is one of them."
    )


def load_model_config(source: str | Path, *, local_files_only: bool = False) -> PretrainedConfig:
    """The config of a model folder or hub name, without its weights.

    A config.json without ``model_type`` (as the TinyBERT general checkpoints ship) is recognised from its keys
    (``hidden_size``, ``num_hidden_layers``... for BERT; ``dim``, ``n_layers``... for DistilBERT), and that is
    logged; its extra keys (TinyBERT's ``cell``, ``emb_size``, ``structure``) stay as plain attributes.

    Raises:
        OSError: not a local folder and not reachable on the hub (or not cached, with ``local_files_only``).
        ValueError: a config that names or shows no supported family.
    """
    source = str(source)
    check_local_folder(source, source, weights=False)
    try:
        with quiet_transformers():
            return AutoConfig.from_pretrained(source, local_files_only=local_files_only)
    except OSError as err:
        raise OSError(
            f"could not load a model config from {source!r}: not a local folder and not reachable on the hub "
            f"({err.__class__.__name__}). Offline? Pass a local folder or 'minilm' (the offline default)."
        ) from err
    except ValueError as err:  # transformers: no model_type, or one it does not know
        raw = _raw_config(source, local_files_only)
        if raw.get("model_type"):
            raise ValueError(
                f"{source!r} is a {raw['model_type']!r} model that this transformers version does not know; "
                f"supported families: {', '.join(SUPPORTED_FAMILIES)} (BERT covers TinyBERT and MiniLM)."
            ) from err
    family = _family_from_keys(raw, source)
    log.info("%s: config.json has no model_type; its keys are %s's, so it is loaded as %s", source, family, family)
    return AutoConfig.for_model(family, **raw)


def load_tokenizer(resolved: str, config: PretrainedConfig) -> PreTrainedTokenizerBase:
    """The saved tokenizer; a folder with only ``vocab.txt`` gets the family's (fast) tokenizer built from it."""
    folder = Path(resolved)
    if (
        folder.is_dir()
        and (folder / "vocab.txt").is_file()
        and not any((folder / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json"))
    ):
        log.info("%s has only vocab.txt as tokenizer: building a %s tokenizer from it", resolved, config.model_type)
    return AutoTokenizer.from_pretrained(resolved, config=config)  # the config tells the family when no file does


def note_ignored_weights(source: object, info: dict) -> list[str]:
    """Log (once, as a note) the ``fit_denses.*`` tensors a checkpoint held but the model does not use."""
    ignored = sorted(k for k in map(str, info.get("unexpected_keys", ())) if k.startswith(_IGNORED_WEIGHTS))
    if ignored:
        log.info(
            "%s: ignored %d %s* weights (TinyBERT's distillation projections, not part of the model)",
            source,
            len(ignored),
            _IGNORED_WEIGHTS,
        )
    return ignored


def read_weights(folder: Path) -> dict[str, torch.Tensor]:
    """The state dict of a folder: ``model.safetensors`` (single or sharded), else ``pytorch_model.bin`` read
    with ``torch.load(weights_only=True)`` (tensors only, never a full unpickle)."""
    from safetensors.torch import load_file

    single, index = folder / "model.safetensors", folder / "model.safetensors.index.json"
    if single.is_file():
        return load_file(single)
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return {k: v for shard in shards for k, v in load_file(folder / shard).items()}
    if (folder / "pytorch_model.bin").is_file():
        return torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise FileNotFoundError(
        f"{folder} has neither model.safetensors nor pytorch_model.bin; pass a folder written by save_pretrained."
    )


_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def check_local_folder(resolved: str, source: object, *, weights: bool = True) -> None:
    """A local model folder needs a config.json and (``weights``) a weights file: an empty folder or a config alone
    is refused with the fix."""
    folder = Path(resolved)
    if not folder.is_dir():
        return
    wanted = (("config.json", ("config.json",)), ("weights", _WEIGHT_FILES))[: 2 if weights else 1]
    missing = [what for what, names in wanted if not any((folder / n).is_file() for n in names)]
    if missing:
        raise FileNotFoundError(
            f"model folder {str(source)!r} has no {' and no '.join(missing)} (expected config.json and one of "
            f"{', '.join(_WEIGHT_FILES)}). Fix: pass a folder written by save_pretrained, or finish copying it."
        )


def check_finite(model: torch.nn.Module, source: object) -> None:
    """Refuse weights holding NaN or infinite values: every number read from such a model is meaningless."""
    bad = [name for name, p in model.named_parameters() if p.is_floating_point() and not torch.isfinite(p).all()]
    if bad:
        raise ValueError(
            f"model {str(source)!r} has NaN or infinite weights in {len(bad)} tensor(s) (first: {bad[0]}); every "
            "output of it would be meaningless. Fix: retrain or re-export the model (a diverged training run "
            "leaves such weights)."
        )
