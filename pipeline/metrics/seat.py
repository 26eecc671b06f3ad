"""SEAT: association tests between target and attribute sets on sentence-encoder representations.

May et al. (2019), "On Measuring Social Biases in Sentence Encoders", NAACL, extending WEAT (Caliskan et al. 2017,
"Semantics derived automatically from language corpora contain human-like biases", Science). With cosine
similarity ``cos``::

    s(w, A, B) = mean_{a in A} cos(w, a) - mean_{b in B} cos(w, b)
    d = (mean_{x in X} s(x, A, B) - mean_{y in Y} s(y, A, B)) / std_{w in X u Y} s(w, A, B)    (sample std, ddof 1)

The p-value is the one-sided permutation test of May et al.'s code (``sent-bias``): the share of partitions
(X_i, Y_i) of X u Y with |X_i| = |X| whose statistic ``sum_{x in X_i} s(x) - sum_{y in Y_i} s(y)`` is at least the
observed one. Ties count (the conservative test); the observed partition is one of the partitions. It is exact
(every partition enumerated) when there are at most ``exact_limit`` partitions, and otherwise estimated from
``n_samples`` random partitions, counting the observed one, so the smallest estimate is ``1 / n_samples``.

Representations are the hidden states of :meth:`pipeline.anatomy.Anatomy.hidden_states` pooled by
:func:`pipeline.anatomy.pool` ([CLS] or mean; what ``Anatomy.representations`` does, with one forward pass serving
both poolings), last layer by default; the pooling is recorded in each row. ``mean`` (over every token, [CLS] and
[SEP] included) is bias-bench's SEAT encoding; ``first`` is May et al.'s own BERT encoder in ``sent-bias``: the text
tokenised *without* special tokens and the last-layer state of its first word piece. ``cls`` (the [CLS] state) is
the tool's own. Effect-size intervals resample X and Y within themselves (attribute sets fixed).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from typing import Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from pipeline.anatomy import pool
from pipeline.bootstrap import bootstrap_ci
from pipeline.data import SeatTest
from pipeline.metrics._rows import metric_row, to_frame
from pipeline.models import LoadedModel

__all__ = ["association", "effect_size", "encode", "n_partitions", "permutation_p", "seat_metrics"]

Array = Float[Tensor, "n d_model"] | np.ndarray
SeatPooling = Literal["cls", "mean", "first"]  # "first": sent-bias's first word piece, no special tokens
SEAT_POOLINGS: tuple[SeatPooling, ...] = ("cls", "mean", "first")


def _to_tensor(name: str, value: Array) -> Tensor:
    t = value if isinstance(value, Tensor) else torch.as_tensor(np.asarray(value, dtype=np.float64))
    if t.ndim != 2 or t.shape[0] == 0:
        raise ValueError(
            f"SEAT set {name} must be a non-empty (n, d_model) matrix of embeddings; got shape {tuple(t.shape)}. "
            "Fix: give every target and attribute set at least one item."
        )
    return t


def association(W: Array, A: Array, B: Array) -> Float[Tensor, " n"]:
    """``s(w, A, B)`` for every row w of ``W``, shape (n,). Differentiable."""
    W, A, B = _to_tensor("W", W), _to_tensor("A", A), _to_tensor("B", B)
    Wn, An, Bn = (F.normalize(t, dim=-1) for t in (W, A.to(W.dtype), B.to(W.dtype)))
    return (Wn @ An.T).mean(1) - (Wn @ Bn.T).mean(1)  # (n,)


def _d(sx: Tensor | np.ndarray, sy: Tensor | np.ndarray):
    """Effect size from the associations of X and Y (sample std over X u Y)."""
    if isinstance(sx, Tensor):
        return (sx.mean() - sy.mean()) / torch.cat([sx, sy]).std(correction=1)
    both = np.concatenate([sx, sy])
    return (sx.mean() - sy.mean()) / both.std(ddof=1)


def effect_size(X: Array, Y: Array, A: Array, B: Array) -> Tensor | float:
    """SEAT effect size d of targets X, Y and attributes A, B (rows are embeddings).

    Returns a differentiable 0-d tensor when any input is a tensor, a float when all are numpy arrays.

    Raises:
        ValueError: a set is empty, or X u Y has fewer than two items (no sample std).
    """
    named = {"X": X, "Y": Y, "A": A, "B": B}
    tensors = {k: _to_tensor(k, v) for k, v in named.items()}
    if tensors["X"].shape[0] + tensors["Y"].shape[0] < 2:
        raise ValueError("SEAT needs at least two target items in X u Y for the sample standard deviation.")
    d = _d(association(tensors["X"], tensors["A"], tensors["B"]), association(tensors["Y"], tensors["A"], tensors["B"]))
    return d if any(isinstance(v, Tensor) for v in named.values()) else float(d)


def n_partitions(n_x: int, n_y: int) -> int:
    """Number of partitions of X u Y into sets of sizes |X| and |Y|: ``C(n_x + n_y, n_x)``."""
    return math.comb(n_x + n_y, n_x)


def _x_sums(s: np.ndarray, n_x: int, *, exact: bool, n_samples: int, rng: np.random.Generator) -> Iterable[np.ndarray]:
    """Sums of s over the X side of each enumerated or sampled partition, in chunks."""
    n, chunk = len(s), 8192
    if exact:
        combos = itertools.combinations(range(n), n_x)
        while block := list(itertools.islice(combos, chunk)):
            yield s[np.asarray(block)].sum(1)  # (chunk,)
        return
    remaining = n_samples - 1  # the observed partition is counted separately
    while remaining > 0:
        size = min(chunk, remaining)
        picks = np.argpartition(rng.random((size, n)), n_x - 1, axis=1)[:, :n_x]  # (size, n_x) uniform subsets
        yield s[picks].sum(1)
        remaining -= size


def permutation_p(
    X: Array, Y: Array, A: Array, B: Array, *, n_samples: int = 100_000, seed: int = 0, exact_limit: int = 100_000
) -> float:
    """One-sided permutation p-value of the SEAT statistic (see the module docstring).

    Because ``sum_{X_i} s + sum_{Y_i} s`` is the same for every partition, the statistic is monotone in
    ``sum_{x in X_i} s(x)``, which is what is compared.

    Args:
        X, Y, A, B: Embeddings (rows), numpy or torch.
        n_samples: Random partitions (including the observed one) when sampling.
        seed: Seed of the partition sampler.
        exact_limit: Enumerate every partition when there are at most this many.

    Returns:
        The p-value in (0, 1].
    """
    if n_samples < 1:
        raise ValueError(f"n_samples={n_samples}; use a positive number of random partitions, e.g. 100000.")
    with torch.no_grad():
        sx = association(X, A, B).double().cpu().numpy()
        sy = association(Y, A, B).double().cpu().numpy()
    s = np.concatenate([sx, sy])
    observed = sx.sum()
    tol = 1e-12 * max(1.0, np.abs(s).sum())  # sums of the same items in another order may differ in the last bits
    exact = n_partitions(len(sx), len(sy)) <= exact_limit
    hits, total = (0, 0) if exact else (1, 1)
    for sums in _x_sums(s, len(sx), exact=exact, n_samples=n_samples, rng=np.random.default_rng(seed)):
        hits += int((sums >= observed - tol).sum())
        total += len(sums)
    return hits / total


def _check_poolings(poolings: Sequence[str]) -> None:
    bad = [p for p in poolings if p not in SEAT_POOLINGS]
    if bad or not poolings:
        raise ValueError(f"poolings={tuple(poolings)!r}; use 'cls', 'mean' and/or 'first' (sent-bias).")


@torch.no_grad()
def _encode_poolings(
    loaded: LoadedModel, texts: Sequence[str], poolings: Sequence[SeatPooling], batch_size: int, layer: int
) -> dict[str, Float[Tensor, "n d_model"]]:
    """One forward pass per batch, pooled every requested way; texts are batched by length to limit padding.

    ``first`` needs its own pass (the text without special tokens); ``cls`` and ``mean`` share one.
    """
    n_states = loaded.anatomy.n_layers + 1
    if not -n_states <= layer < n_states:
        raise ValueError(f"layer={layer}; this model has hidden states 0..{n_states - 1} (or -1 for the last).")
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out: dict[str, list[Tensor]] = {p: [] for p in poolings}
    passes = [(True, [p for p in poolings if p != "first"]), (False, [p for p in poolings if p == "first"])]
    for start in range(0, len(order), batch_size):
        batch = [texts[i] for i in order[start : start + batch_size]]
        for special, wanted in (pass_ for pass_ in passes if pass_[1]):
            if special:
                enc = loaded.tokenize(batch)
            else:  # sent-bias: tokenizer.tokenize(text), no [CLS] / [SEP]
                enc = loaded.tokenizer(batch, padding=True, truncation=True, max_length=128, return_tensors="pt",
                                       add_special_tokens=False)  # fmt: skip
                enc = {k: v.to(loaded.device) for k, v in enc.items()}
            hidden = loaded.anatomy.hidden_states(enc["input_ids"], enc["attention_mask"])[layer]  # (b, seq, d)
            for p in wanted:
                pooled = hidden[:, 0] if p == "first" else pool(hidden, enc["attention_mask"], p)  # (b, d)
                out[p].append(pooled.double().cpu())
    inverse = torch.as_tensor(np.argsort(order))
    return {p: torch.cat(chunks)[inverse] for p, chunks in out.items()}


def encode(
    loaded: LoadedModel, texts: Sequence[str], pooling: SeatPooling = "cls", batch_size: int = 32, *, layer: int = -1
) -> Float[Tensor, "n d_model"]:
    """Pooled representations of ``texts`` at ``layer`` (-1 = last block, 0 = embeddings), float64 on CPU.

    Args:
        loaded: Any loaded model (encoder, classifier or masked LM), read through its :class:`Anatomy`.
        texts: Words or sentences.
        pooling: ``"cls"`` (position 0), ``"mean"`` (over non-padding tokens, [CLS] and [SEP] included) or
            ``"first"`` (the first word piece of the text tokenised without special tokens, as ``sent-bias``).
        batch_size: Texts per forward pass.
        layer: Index into the n_layers + 1 hidden states.
    """
    _check_poolings([pooling])
    return _encode_poolings(loaded, list(texts), [pooling], batch_size, layer)[pooling]


def seat_metrics(
    loaded: LoadedModel,
    tests: Sequence[SeatTest],
    poolings: Sequence[SeatPooling] = ("cls", "mean"),
    *,
    layer: int = -1,
    batch_size: int = 32,
    n_samples: int = 100_000,
    exact_limit: int = 100_000,
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """SEAT effect size and p-value of every test under every pooling, as tidy rows.

    Metrics ``seat_effect_size`` (with a bootstrap interval over target items) and ``seat_p_value``; ``subset`` is
    the test name, ``n`` = |X| + |Y|, extra column ``pooling``. Each distinct text is encoded once per pooling.

    Raises:
        ValueError: a test has an empty set, or an unknown pooling.
    """
    for test in tests:
        for key in ("targ1", "targ2", "attr1", "attr2"):
            if not getattr(test, key):
                raise ValueError(f"SEAT test {test.name!r}: set {key} ({getattr(test, key + '_name')}) is empty. "
                                 "Fix: give it items, or drop the test.")  # fmt: skip
    _check_poolings(poolings)
    texts = sorted({t for test in tests for key in ("targ1", "targ2", "attr1", "attr2") for t in getattr(test, key)})
    index = {t: i for i, t in enumerate(texts)}
    encoded = _encode_poolings(loaded, texts, poolings, batch_size, layer)
    rows = []
    for pooling in poolings:
        reps = encoded[pooling]
        for test in tqdm(tests, desc=f"SEAT ({pooling})", unit="test", disable=None, leave=False):
            X, Y, A, B = (reps[[index[t] for t in getattr(test, k)]] for k in ("targ1", "targ2", "attr1", "attr2"))
            sx, sy = association(X, A, B).numpy(), association(Y, A, B).numpy()
            s = np.concatenate([sx, sy])
            group = np.r_[np.zeros(len(sx), int), np.ones(len(sy), int)]
            estimate = bootstrap_ci(lambda i, s=s, g=group: _d(s[i][g[i] == 0], s[i][g[i] == 1]), len(s), n_boot=n_boot,
                                    seed=seed, strata=group)  # fmt: skip
            p = permutation_p(X, Y, A, B, n_samples=n_samples, seed=seed, exact_limit=exact_limit)
            n = len(sx) + len(sy)
            rows.append(metric_row("seat_effect_size", estimate, n, subset=test.name, pooling=pooling))
            rows.append(metric_row("seat_p_value", p, n, subset=test.name, pooling=pooling))
    return to_frame(rows)
