"""LEACE concept erasure inside a model: fit an eraser on a layer's hidden states, install it as a forward hook,
save it beside the weights and apply it again on load.

LEACE (Belrose et al. 2023, "LEACE: Perfect linear concept erasure in closed form", ``concept-erasure``) is the
affine map ``x -> x - W^+ P W (x - mean_x)`` after which no linear classifier predicts the concept from x better
than a constant, in the data the statistics came from, at the least mean squared change to x. A *fitter* streams
the statistics; the frozen *eraser* is applied here to every token's hidden state at one layer.

Layers are hidden-state indices, as in the probes: 0 erases the embeddings' output, ``k`` the output of block
``k - 1``; negative indices count from the end (-1 = the last block's output). An erased model carries its
erasers: ``config.erasure`` records the layers and how they were fitted, :func:`save_erasers` writes the tensors to
``erasure.safetensors`` in the model folder, and :func:`pipeline.models.load_model` installs them again
(:func:`load_erasers`), so every stage that loads the variant measures the erased model. The amnesic-probing
analysis (:mod:`probes.erasure`) fits and hooks through the same functions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from concept_erasure import LeaceEraser, LeaceFitter
from jaxtyping import Float
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from tqdm.auto import tqdm

from pipeline.anatomy import Anatomy, pool

__all__ = [
    "ERASURE_FILE",
    "ERASURE_KEY",
    "FIT_ON",
    "concept_matrix",
    "erasing",
    "erasure_hook",
    "fit_leace",
    "hidden_module",
    "install_erasers",
    "installed_erasers",
    "load_erasers",
    "resolve_layer",
    "save_erasers",
]

ERASURE_KEY = "erasure"  # config attribute: {"file", "layers", "fit_on", "method", ...}
ERASURE_FILE = "erasure.safetensors"
FIT_ON: tuple[str, ...] = ("tokens", "cls", "mean")
FitOn = Literal["tokens", "cls", "mean"]
_STORE = "_bias_atlas_erasers"  # model attribute: {layer: [erasers, applied in turn]}


def resolve_layer(layer: int, n_layers: int) -> int:
    """Hidden-state index ``layer`` in 0..n_layers (negative: from the end), or an IndexError naming the range."""
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) or not -n_layers - 1 <= layer <= n_layers:
        raise IndexError(
            f"layer {layer!r} is out of range: erasure layers are hidden-state indices 0..{n_layers} "
            f"(0 = embeddings, k = output of block k - 1) or -{n_layers + 1}..-1 from the end."
        )
    return int(layer) % (n_layers + 1)


def hidden_module(anatomy: Anatomy, layer: int) -> nn.Module:
    """The module whose output is hidden state ``layer`` (0..n_layers): the embeddings or block ``layer - 1``."""
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) or not 0 <= layer <= anatomy.n_layers:
        raise IndexError(
            f"layer {layer!r} is out of range: erasure layers are hidden-state indices "
            f"0..{anatomy.n_layers} (0 = embeddings, k = output of block k - 1)."
        )
    return anatomy.embeddings if layer == 0 else anatomy.layer(int(layer) - 1)


def concept_matrix(z: np.ndarray | Tensor, classes: np.ndarray) -> Tensor:
    """Concept labels as LEACE's z: one column (z == second class) for two classes, one-hot otherwise."""
    z = torch.as_tensor(np.searchsorted(classes, np.asarray(z)))  # (n,) class positions
    if len(classes) == 2:
        return z.double().unsqueeze(1)  # (n, 1)
    return torch.nn.functional.one_hot(z, len(classes)).double()  # (n, K)


def erasure_hook(eraser: LeaceEraser | Callable[[Tensor], Tensor] | Sequence[LeaceEraser]) -> Callable:
    """A forward hook that erases the module's output (or its first element) with ``eraser``, or with each eraser
    of a sequence in turn (read when the hook runs, so erasers appended later act too), on the output's device and
    dtype."""
    cache: dict[tuple, tuple[LeaceEraser, LeaceEraser]] = {}  # (id, device, dtype) -> (eraser, moved copy)
    chain = eraser if isinstance(eraser, (list, tuple)) else [eraser]

    def apply(h: Float[Tensor, "batch seq d_model"]) -> Float[Tensor, "batch seq d_model"]:
        for e in chain:
            if not isinstance(e, LeaceEraser):
                h = e(h)
                continue
            key = (id(e), h.device, h.dtype)
            if key not in cache or cache[key][0] is not e:
                cache[key] = (
                    e,
                    LeaceEraser(
                        *(
                            None if t is None else t.to(device=h.device, dtype=h.dtype)
                            for t in (e.proj_left, e.proj_right, e.bias)
                        )
                    ),
                )
            h = cache[key][1](h)
        return h

    def hook(module: nn.Module, args: tuple, output: Tensor | tuple) -> Tensor | tuple:
        if isinstance(output, tuple):
            return (apply(output[0]), *output[1:])
        return apply(output)

    return hook


@contextmanager
def _eval(model: nn.Module) -> Iterator[None]:
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was)


def fit_leace(
    loaded,
    texts: Sequence[str],
    z: np.ndarray,
    layer: int,
    *,
    fit_on: FitOn = "tokens",
    method: Literal["leace", "orth"] = "leace",
    batch_size: int = 32,
    max_length: int = 128,
    progress: bool = False,
) -> LeaceEraser:
    """Fit a LEACE eraser for concept ``z`` (one label per text) on hidden state ``layer`` of ``loaded`` (a
    :class:`pipeline.models.LoadedModel`), streaming batches; erasers already installed stay active.

    ``fit_on``: ``tokens`` (every non-padding token's state, labelled with its text's z), ``cls`` or ``mean``
    (the pooled state, which is then exactly linearly guarded on these texts).

    Raises:
        ValueError: unknown ``fit_on``, a length mismatch, or fewer than two classes in ``z``.
        IndexError: ``layer`` out of range.
    """
    hidden_module(loaded.anatomy, layer)
    if fit_on not in FIT_ON:
        raise ValueError(f"fit_on={fit_on!r}: allowed values are {FIT_ON}.")
    z = np.asarray(z)
    if z.shape != (len(texts),):
        raise ValueError(f"z has shape {z.shape} but there are {len(texts)} texts; give one label per text.")
    classes = np.unique(z)
    if len(classes) < 2:
        raise ValueError(f"the concept has one class only ({classes.tolist()}); erasure needs two or more.")
    Z = concept_matrix(z, classes)  # (n, 1 or K)
    fitter = LeaceFitter(loaded.anatomy.d_model, Z.shape[1], method=method, dtype=torch.float64)
    with _eval(loaded.model):
        for start in tqdm(range(0, len(texts), batch_size), desc=f"fit eraser (layer {layer})", disable=not progress):
            batch = loaded.tokenize(list(texts[start : start + batch_size]), max_length=max_length)
            mask = batch["attention_mask"]
            h = loaded.anatomy.hidden_states(batch["input_ids"], mask)[layer].double().cpu()  # (batch, seq, d)
            zb = Z[start : start + batch_size]  # (batch, k)
            if fit_on == "tokens":
                keep = mask.cpu().bool()  # (batch, seq)
                fitter.update(h[keep], zb.repeat_interleave(keep.sum(1), dim=0))  # (tokens, d), (tokens, k)
            else:
                fitter.update(pool(h, mask.cpu(), fit_on), zb)  # (batch, d), (batch, k)
    return fitter.eraser


@contextmanager
def erasing(model: nn.Module, layer: int, eraser: LeaceEraser | Callable[[Tensor], Tensor]) -> Iterator[None]:
    """Within the block, also apply ``eraser`` to hidden state ``layer`` (0..n_layers) of ``model``, after the
    erasers installed there (so an eraser fitted on the erased model acts on what it was fitted on); removed on exit,
    also after an exception.

    Raises:
        IndexError: ``layer`` out of range.
    """
    module = hidden_module(Anatomy(model), layer)
    chain = getattr(model, _STORE, {}).get(int(layer))
    if chain is not None:
        chain.append(eraser)
        try:
            yield
        finally:
            chain.pop()
        return
    handle = module.register_forward_hook(erasure_hook(eraser), prepend=True)
    try:
        yield
    finally:
        handle.remove()


def installed_erasers(model: nn.Module) -> dict[int, tuple[LeaceEraser, ...]]:
    """The erasers installed in ``model`` by layer, each layer's in the order they apply (empty when none)."""
    return {layer: tuple(chain) for layer, chain in getattr(model, _STORE, {}).items()}


def install_erasers(
    model: nn.Module, erasers: Mapping[int, LeaceEraser | Sequence[LeaceEraser]], **record: object
) -> None:
    """Hook ``erasers`` (hidden-state index 0..n_layers -> an eraser or a sequence applied in turn) into ``model``
    for good, after any eraser the layer already has, and record them in ``config.erasure`` (with ``record``: how
    they were fitted), so a ``save_pretrained`` + :func:`save_erasers` folder reloads erased.

    An eraser added after another keeps the first one's guarantee: an affine map of representations with zero
    cross-covariance with the concept leaves it zero.

    Raises:
        IndexError: a layer out of range.
    """
    store: dict[int, list[LeaceEraser]] = getattr(model, _STORE, None) or {}
    anatomy = Anatomy(model)
    for layer, chain in sorted(erasers.items()):
        module = hidden_module(anatomy, int(layer))
        chain = [chain] if isinstance(chain, LeaceEraser) else list(chain)
        cpu = [
            LeaceEraser(
                *(None if t is None else t.detach().double().cpu() for t in (e.proj_left, e.proj_right, e.bias))
            )
            for e in chain
        ]
        if int(layer) not in store:
            store[int(layer)] = []
            module.register_forward_hook(erasure_hook(store[int(layer)]), prepend=True)
        store[int(layer)].extend(cpu)
    setattr(model, _STORE, store)
    previous = dict(getattr(model.config, ERASURE_KEY, None) or {})
    layers = {str(layer): len(chain) for layer, chain in sorted(store.items())}
    setattr(model.config, ERASURE_KEY, {**previous, **record, "file": ERASURE_FILE, "layers": layers})


def save_erasers(model: nn.Module, folder: str | Path) -> Path | None:
    """Write the installed erasers to ``folder/erasure.safetensors`` (None when the model has none)."""
    erasers = installed_erasers(model)
    if not erasers:
        return None
    tensors = {
        f"{layer}.{i}.{name}": t.contiguous()
        for layer, chain in erasers.items()
        for i, e in enumerate(chain)
        for name, t in (("proj_left", e.proj_left), ("proj_right", e.proj_right), ("bias", e.bias))
        if t is not None
    }
    path = Path(folder) / ERASURE_FILE
    save_file(tensors, str(path))
    return path


def load_erasers(model: nn.Module, folder: str | Path) -> None:
    """Install the erasers that ``config.erasure`` records, read from ``folder`` (called by ``load_model``).

    Raises:
        FileNotFoundError: the folder lacks the erasers' file.
        ValueError: the file lacks a recorded eraser.
    """
    record = dict(getattr(model.config, ERASURE_KEY))
    path = Path(folder) / record.get("file", ERASURE_FILE)
    if not path.is_file():
        raise FileNotFoundError(
            f"{folder} is a concept-erased model (config.erasure at layers "
            f"{sorted(map(int, record.get('layers', {})))}) but {path.name} is missing beside its "
            "weights; rebuild the variant (delete the folder and run again)."
        )
    tensors = load_file(str(path))
    erasers = {}
    for layer, count in record.get("layers", {}).items():
        keys = [f"{layer}.{i}" for i in range(int(count))]
        if any(f"{k}.proj_left" not in tensors for k in keys):
            raise ValueError(f"{path} lacks erasers of layer {layer}, which config.erasure records; rebuild it.")
        erasers[int(layer)] = [
            LeaceEraser(tensors[f"{k}.proj_left"], tensors[f"{k}.proj_right"], tensors.get(f"{k}.bias")) for k in keys
        ]
    setattr(model.config, ERASURE_KEY, None)
    install_erasers(model, erasers, **{k: v for k, v in record.items() if k not in ("file", "layers")})
