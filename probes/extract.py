"""Representation extraction for probing: every layer and every head, [CLS] and mean-pooled, cached on disk.

One forward pass per batch gives all hidden states (``Anatomy.hidden_states``: the embeddings, then the output of
each block) and, through :class:`pipeline.gates.RecordHeads` in the same pass, every head's context vector ``z_h``
(the per-head slice of the attention output projection's input). Both are pooled over tokens the same way
(``cls``: position 0; ``mean``: average over non-padding tokens), giving the inputs of the layer-wise and head-wise
probes of Conneau et al. (2018, "What you can cram into a single vector") and Tenney et al. (2019, "BERT
rediscovers the classical NLP pipeline").

Results are cached per (model fingerprint, dataset fingerprint, pooling, max_length) as ``.npz`` files written
atomically, so probes, plots and the app reuse one extraction. The model fingerprint hashes the encoder's state
dict (quantised weights included) and the tokenizer's vocabulary, so a model changed in memory (fine-tuned,
pruned, quantised) never hits a stale entry. Forward hooks active during extraction (e.g. an erasure) are not part
of the fingerprint: extract with ``cache=False`` then.

Layer indices here are hidden-state indices: 0 is the embeddings, ``k`` the output of block ``k - 1``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor, nn
from tqdm.auto import tqdm

from pipeline.anatomy import Anatomy, pool
from pipeline.files import atomic_path
from pipeline.gates import RecordHeads
from pipeline.models import LoadedModel
from probes.config import POOLINGS

__all__ = [
    "POOLINGS",
    "Representations",
    "data_fingerprint",
    "default_cache_dir",
    "eval_mode",
    "extract",
    "model_fingerprint",
]


@dataclass(frozen=True)
class Representations:
    """Pooled representations of one dataset under one model.

    Attributes:
        layers: pooling -> float32 array (n_layers + 1, n, d_model); index 0 is the embeddings.
        heads: pooling -> float32 array (n_layers, n_heads, n, d_head) of per-head context vectors; NaN where a
            pruned layer has fewer heads. Empty when heads were not extracted.
        head_ids: per layer, the original id of each kept head (``Anatomy.head_ids``).
        model_fingerprint: hash of the model (see :func:`model_fingerprint`); ``""`` for hand-made arrays.
        data_fingerprint: hash of the texts (see :func:`data_fingerprint`); ``""`` for hand-made arrays.
        max_length: token limit used at extraction (0 for hand-made arrays).
    """

    layers: Mapping[str, np.ndarray]
    heads: Mapping[str, np.ndarray] = field(default_factory=dict)
    head_ids: tuple[tuple[int, ...], ...] = ()
    model_fingerprint: str = ""
    data_fingerprint: str = ""
    max_length: int = 0

    def __post_init__(self) -> None:
        if not self.layers:
            raise ValueError(
                "Representations.layers is empty; give at least one pooling -> (n_layers + 1, n, d) array."
            )
        sizes = {p: np.shape(a) for p, a in self.layers.items()}
        if any(len(s) != 3 for s in sizes.values()) or len({s[:2] for s in sizes.values()}) != 1:
            raise ValueError(f"layer arrays must all be (n_layers + 1, n, d_model) with the same n; got {sizes}.")
        n_layers, n = next(iter(sizes.values()))[0] - 1, next(iter(sizes.values()))[1]
        for p, arr in self.heads.items():
            if arr.ndim != 4 or arr.shape[0] != n_layers or arr.shape[2] != n:
                raise ValueError(f"heads[{p!r}] has shape {arr.shape}; expected ({n_layers}, n_heads, {n}, d_head).")
        if self.heads and not self.head_ids:
            n_heads = next(iter(self.heads.values())).shape[1]
            object.__setattr__(self, "head_ids", tuple(tuple(range(n_heads)) for _ in range(n_layers)))

    @property
    def n(self) -> int:
        """Number of examples."""
        return next(iter(self.layers.values())).shape[1]

    @property
    def n_layers(self) -> int:
        """Number of blocks (the layer arrays have one more entry: the embeddings)."""
        return next(iter(self.layers.values())).shape[0] - 1

    @property
    def poolings(self) -> tuple[str, ...]:
        return tuple(self.layers)


def default_cache_dir() -> Path:
    """Where extractions are cached when no run folder is given: ``~/.cache/bias-atlas/reps``."""
    return Path.home() / ".cache" / "bias-atlas" / "reps"


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Put ``model`` in eval mode and under ``no_grad`` for the block; restore its training flag after."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def _hash_value(h: hashlib._Hash, value: object) -> None:
    """Feed a state-dict value (tensor, quantised tensor, packed-params tuple or plain object) into ``h``."""
    if isinstance(value, Tensor):
        t = value.detach()
        if t.is_quantized:
            t = t.dequantize()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, (tuple, list)):
        for item in value:
            _hash_value(h, item)
    else:
        h.update(repr(value).encode())


def model_fingerprint(loaded: LoadedModel) -> str:
    """SHA-256 of the encoder's state dict (names, dtypes, shapes, values) and of the tokenizer's vocabulary.

    Only the base model counts: a task head does not change the representations.
    """
    h = hashlib.sha256(loaded.anatomy.family.encode())
    for name, value in sorted(loaded.anatomy.base.state_dict().items()):
        h.update(name.encode())
        _hash_value(h, value)
    vocab = sorted(loaded.tokenizer.get_vocab().items())
    h.update(repr((type(loaded.tokenizer).__name__, vocab)).encode())
    return h.hexdigest()


def data_fingerprint(texts: Sequence[str]) -> str:
    """SHA-256 of the texts, in order (each length-prefixed, so boundaries count)."""
    h = hashlib.sha256()
    for text in texts:
        raw = text.encode("utf-8")
        h.update(len(raw).to_bytes(8, "little"))
        h.update(raw)
    return h.hexdigest()


def _cache_path(cache_dir: Path, model_fp: str, data_fp: str, pooling: str, max_length: int) -> Path:
    return cache_dir / model_fp[:20] / f"{data_fp[:20]}-{pooling}-len{max_length}.npz"


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    """Write ``arrays`` to ``path`` atomically (temp file in the same folder, then rename)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def _load_cached(path: Path, heads: bool) -> tuple[np.ndarray, np.ndarray | None] | None:
    """The cached (layers, heads) at ``path``, or None when absent or lacking the heads asked for."""
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as f:
        if heads and "heads" not in f:
            return None
        return f["layers"], (f["heads"] if heads else None)


def _check_args(texts: Sequence[str], poolings: Sequence[str], batch_size: int, max_length: int) -> None:
    if isinstance(texts, str) or not len(texts) or not all(isinstance(t, str) for t in texts):
        raise ValueError(
            "texts must be a non-empty sequence of str (e.g. TaskData.texts); got "
            f"{type(texts).__name__} of length {len(texts)}."
        )
    bad = [p for p in poolings if p not in POOLINGS]
    if bad or not poolings:
        raise ValueError(f"poolings={tuple(poolings)!r}: allowed values are {POOLINGS}; pass e.g. ('cls', 'mean').")
    if batch_size < 1 or max_length < 2:
        raise ValueError(
            f"batch_size={batch_size} and max_length={max_length}: give batch_size >= 1 and "
            "max_length >= 2 (room for [CLS] and [SEP])."
        )


def _pool_heads(
    z: Float[Tensor, "batch seq head d_head"], mask: Tensor, how: str
) -> Float[Tensor, "batch head d_head"]:
    b, s, h, d = z.shape
    return pool(z.reshape(b, s, h * d), mask, how).reshape(b, h, d)  # (batch, head, d_head)


def _run(
    loaded: LoadedModel,
    texts: Sequence[str],
    poolings: Sequence[str],
    heads: bool,
    batch_size: int,
    max_length: int,
    progress: bool,
) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """Extract the requested poolings with one forward pass per batch; texts are batched by length."""
    anatomy: Anatomy = loaded.anatomy
    n, n_layers = len(texts), anatomy.n_layers
    loaded.report_truncation(texts, max_length)
    lengths = [len(ids) for ids in loaded.tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]]
    order = np.argsort(lengths, kind="stable")
    out_layers = {p: np.empty((n_layers + 1, n, anatomy.d_model), np.float32) for p in poolings}
    out_heads = (
        {p: np.full((n_layers, anatomy.n_heads, n, anatomy.head_dim), np.nan, np.float32) for p in poolings}
        if heads
        else {}
    )
    starts = range(0, n, batch_size)
    with eval_mode(loaded.model), RecordHeads(anatomy) if heads else nullcontext() as rec:
        for start in tqdm(starts, desc="extract", unit="batch", disable=not progress or len(starts) < 2):
            rows = order[start : start + batch_size]
            batch = loaded.tokenize([texts[i] for i in rows], max_length=max_length)
            mask = batch["attention_mask"]
            states = anatomy.hidden_states(batch["input_ids"], mask)  # n_layers + 1 x (batch, seq, d_model)
            for p in poolings:
                pooled = torch.stack([pool(h, mask, p) for h in states])  # (n_layers + 1, batch, d_model)
                out_layers[p][:, rows] = pooled.float().cpu().numpy()
                for layer in range(n_layers) if heads else ():
                    zp = _pool_heads(rec.z[layer], mask, p)  # (batch, head, d_head)
                    out_heads[p][layer][: zp.shape[1], rows] = zp.transpose(0, 1).float().cpu().numpy()
    return {p: (out_layers[p], out_heads.get(p)) for p in poolings}


def extract(
    loaded: LoadedModel,
    texts: Sequence[str],
    *,
    poolings: Sequence[str] = POOLINGS,
    heads: bool = True,
    batch_size: int = 32,
    max_length: int = 128,
    cache_dir: str | Path | None = None,
    cache: bool = True,
    progress: bool = True,
) -> Representations:
    """Pooled representations of every layer (and every head) of ``loaded`` for ``texts``.

    Cost: one forward pass of the encoder per batch for all layers, heads and poolings; nothing when every
    requested pooling is cached.

    Args:
        loaded: the model (any head; only the encoder runs). Int8 / pruned models work (forward only).
        texts: the inputs, shape (n,).
        poolings: any of ``"cls"`` (position 0) and ``"mean"`` (mean over non-padding tokens).
        heads: also extract each head's pooled context vector.
        batch_size: texts per forward pass (batched by token length to limit padding).
        max_length: longer texts are truncated to this many tokens.
        cache_dir: cache folder (default :func:`default_cache_dir`; pass ``RUN_DIR/cache`` inside a run).
        cache: read and write the cache. Turn off while hooks that change the forward pass are attached.
        progress: show a progress bar.

    Returns:
        :class:`Representations` with ``layers[p]`` (n_layers + 1, n, d_model) and ``heads[p]``
        (n_layers, n_heads, n, d_head) per pooling ``p``.

    Raises:
        ValueError: empty or non-string texts, an unknown pooling, a bad batch size or length.
    """
    poolings = tuple(dict.fromkeys(poolings))
    _check_args(texts, poolings, batch_size, max_length)
    model_fp, data_fp = model_fingerprint(loaded), data_fingerprint(texts)
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    found = (
        {p: _load_cached(_cache_path(folder, model_fp, data_fp, p, max_length), heads) for p in poolings}
        if cache
        else {}
    )
    missing = [p for p in poolings if found.get(p) is None]
    if missing:
        fresh = _run(loaded, texts, missing, heads, batch_size, max_length, progress)
        for p, (lay, hd) in fresh.items():
            found[p] = (lay, hd)
            if cache:
                arrays = {"layers": lay} if hd is None else {"layers": lay, "heads": hd}
                _save_npz(_cache_path(folder, model_fp, data_fp, p, max_length), **arrays)
    return Representations(
        layers={p: found[p][0] for p in poolings},
        heads={p: found[p][1] for p in poolings} if heads else {},
        head_ids=loaded.anatomy.head_ids,
        model_fingerprint=model_fp,
        data_fingerprint=data_fp,
        max_length=max_length,
    )
