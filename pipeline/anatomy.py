"""Model anatomy: one adapter over BERT-shaped and DistilBERT encoders.

Everything in this project talks to a model through :class:`Anatomy`, never through
``model.bert.encoder.layer[...]``. The adapter answers: how many layers, heads per layer, head size, hidden
and FFN sizes; which module is the attention output projection (its *input* is the concatenation of the
per-head context vectors, so gating a head is a pre-hook there, see :mod:`pipeline.gates`); which module
produces the FFN intermediate activation; where the embeddings are; and how to get [CLS] / mean-pooled
representations of every layer.

Supported families: BERT (incl. TinyBERT and MiniLM checkpoints, which are BERT-shaped) and DistilBERT.
Physically pruned models (fewer heads in some layers, see :mod:`pipeline.compress.prune`) are described by
``heads_per_layer`` and ``head_ids`` (the original index of each kept head).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

__all__ = ["SUPPORTED_FAMILIES", "Anatomy", "Pooling", "pool", "shrink_heads"]

Pooling = Literal["cls", "mean"]


@dataclass(frozen=True)
class _FamilySpec:
    """Dotted paths, relative to the base model and to one layer, of the modules the adapter exposes."""

    layers: str
    out_proj: str  # input = concatenated head contexts (batch, seq, n_heads * d_head)
    ffn_act: str  # output = FFN intermediate activation (batch, seq, d_ff)
    query: str
    key: str
    value: str
    n_layers_attr: str
    n_heads_attr: str
    d_model_attr: str
    d_ff_attr: str


_SPECS: dict[str, _FamilySpec] = {
    "bert": _FamilySpec(
        layers="encoder.layer",
        out_proj="attention.output.dense",
        ffn_act="intermediate",  # BertIntermediate returns act(dense(x))
        query="attention.self.query",
        key="attention.self.key",
        value="attention.self.value",
        n_layers_attr="num_hidden_layers",
        n_heads_attr="num_attention_heads",
        d_model_attr="hidden_size",
        d_ff_attr="intermediate_size",
    ),
    "distilbert": _FamilySpec(
        layers="transformer.layer",
        out_proj="attention.out_lin",
        ffn_act="ffn.activation",
        query="attention.q_lin",
        key="attention.k_lin",
        value="attention.v_lin",
        n_layers_attr="n_layers",
        n_heads_attr="n_heads",
        d_model_attr="dim",
        d_ff_attr="hidden_dim",
    ),
}
SUPPORTED_FAMILIES: tuple[str, ...] = tuple(_SPECS)


def pool(
    hidden: Float[Tensor, "batch seq d_model"], attention_mask: Int[Tensor, "batch seq"], how: Pooling
) -> Float[Tensor, "batch d_model"]:
    """Pool token states: ``cls`` takes position 0, ``mean`` averages the non-padding positions."""
    if how == "cls":
        return hidden[:, 0]
    if how == "mean":
        mask = attention_mask.to(hidden.dtype).unsqueeze(-1)  # (batch, seq, 1)
        return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)
    raise ValueError(f"pooling={how!r} is not supported; use 'cls' or 'mean'.")


class Anatomy:
    """The anatomy of one loaded model: sizes, named sub-modules and representations.

    Args:
        model: any ``transformers`` BERT or DistilBERT model (bare encoder, classifier or masked LM).

    Raises:
        ValueError: if the model's family is not one of :data:`SUPPORTED_FAMILIES`.
    """

    def __init__(self, model: nn.Module) -> None:
        family = getattr(getattr(model, "config", None), "model_type", None)
        if family not in _SPECS:
            raise ValueError(
                f"model family {family!r} is not supported; supported families: {', '.join(SUPPORTED_FAMILIES)} "
                "(BERT covers TinyBERT and MiniLM checkpoints). Convert the model or pick a supported checkpoint."
            )
        self.model = model
        self.family: str = family
        self._spec = _SPECS[family]
        self.base: nn.Module = model.base_model  # BertModel / DistilBertModel, also for heads on top
        cfg = model.config
        self.n_layers: int = getattr(cfg, self._spec.n_layers_attr)
        self.d_model: int = getattr(cfg, self._spec.d_model_attr)
        self.d_ff: int = getattr(cfg, self._spec.d_ff_attr)
        n_heads_full: int = getattr(cfg, self._spec.n_heads_attr)
        self.head_dim: int = self.d_model // n_heads_full
        self.heads_per_layer: tuple[int, ...] = tuple(
            self.out_proj(layer).in_features // self.head_dim for layer in range(self.n_layers)
        )
        self.n_heads: int = max(self.heads_per_layer, default=0)
        kept = getattr(cfg, "kept_heads", None)  # written by head pruning: original ids of kept heads
        self.head_ids: tuple[tuple[int, ...], ...] = (
            tuple(tuple(int(h) for h in hs) for hs in kept)
            if kept is not None
            else tuple(tuple(range(n)) for n in self.heads_per_layer)
        )

    # ---- modules -------------------------------------------------------------------------------------------
    def layers(self) -> nn.ModuleList:
        """The list of transformer blocks."""
        return self.base.get_submodule(self._spec.layers)

    def layer(self, layer: int) -> nn.Module:
        """Block ``layer`` (0-based), with a clear error when out of range."""
        self.check_layer(layer)
        return self.layers()[layer]

    def out_proj(self, layer: int) -> nn.Linear:
        """Attention output projection of ``layer``; its input is the concatenated head contexts."""
        return self.layer(layer).get_submodule(self._spec.out_proj)

    def qkv(self, layer: int) -> tuple[nn.Linear, nn.Linear, nn.Linear]:
        """Query, key and value projections of ``layer``."""
        block = self.layer(layer)
        return tuple(block.get_submodule(p) for p in (self._spec.query, self._spec.key, self._spec.value))

    def ffn_act(self, layer: int) -> nn.Module:
        """Module whose output is the FFN intermediate activation of ``layer`` (batch, seq, d_ff)."""
        return self.layer(layer).get_submodule(self._spec.ffn_act)

    @property
    def embeddings(self) -> nn.Module:
        """The embeddings module (word + position [+ token type] + LayerNorm)."""
        return self.base.embeddings

    @property
    def word_embeddings(self) -> nn.Embedding:
        """The token embedding table."""
        return self.base.embeddings.word_embeddings

    # ---- checks --------------------------------------------------------------------------------------------
    def check_layer(self, layer: int) -> None:
        """Raise ``IndexError`` naming the valid range if ``layer`` is not a layer of this model."""
        if not isinstance(layer, int) or not 0 <= layer < self.n_layers:
            raise IndexError(
                f"layer {layer!r} is out of range: this {self.family} model has layers 0..{self.n_layers - 1}."
            )

    def check_head(self, layer: int, head: int) -> None:
        """Raise ``IndexError`` if ``head`` is not a head of ``layer`` (pruned layers have fewer heads)."""
        self.check_layer(layer)
        if not isinstance(head, int) or not 0 <= head < self.heads_per_layer[layer]:
            raise IndexError(
                f"head {head!r} is out of range for layer {layer}: it has heads 0..{self.heads_per_layer[layer] - 1}."
            )

    # ---- representations ------------------------------------------------------------------------------------
    def hidden_states(
        self, input_ids: Int[Tensor, "batch seq"], attention_mask: Int[Tensor, "batch seq"]
    ) -> tuple[Float[Tensor, "batch seq d_model"], ...]:
        """All hidden states in one forward pass: embeddings then the output of each block (n_layers + 1)."""
        out = self.base(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        return tuple(out.hidden_states)

    @torch.no_grad()
    def representations(
        self, input_ids: Int[Tensor, "batch seq"], attention_mask: Int[Tensor, "batch seq"], how: Pooling = "cls"
    ) -> Float[Tensor, "layer_plus_1 batch d_model"]:
        """Pooled representation of every layer (index 0 = embeddings), from one forward pass."""
        states = self.hidden_states(input_ids, attention_mask)
        return torch.stack([pool(h, attention_mask, how) for h in states])  # (L+1, batch, d_model)

    @contextmanager
    def start_at(self, layer: int, hidden: Float[Tensor, "batch seq d_model"]) -> Iterator[None]:
        """Within the context, a forward pass of the model starts at block ``layer`` from ``hidden``.

        The embeddings' output is replaced by ``hidden`` (the state entering block ``layer``, e.g. cached from
        ``hidden_states()[layer]``) and blocks ``0..layer-1`` are left out, so the model's own task head still
        runs on top. This is the prefix cache of the fast head-ablation sweep: only blocks ``layer..L-1`` are
        recomputed. Pass ``input_ids``/``attention_mask`` of the same batch and length as ``hidden``.
        """
        self.check_layer(layer)
        container = self.base.get_submodule(self._spec.layers.rsplit(".", 1)[0])  # encoder / transformer
        full = container.layer

        def replace_output(module, args, output):
            if output.shape != hidden.shape:
                raise ValueError(
                    f"start_at: hidden has shape {tuple(hidden.shape)} but the batch embeds to "
                    f"{tuple(output.shape)}; pass input_ids of the same batch and length."
                )
            return hidden

        handle = self.embeddings.register_forward_hook(replace_output)
        container.layer = nn.ModuleList(list(full)[layer:])
        try:
            yield
        finally:
            container.layer = full
            handle.remove()

    def __repr__(self) -> str:
        return (
            f"Anatomy(family={self.family!r}, n_layers={self.n_layers}, n_heads={self.n_heads}, "
            f"head_dim={self.head_dim}, d_model={self.d_model}, d_ff={self.d_ff}, heads_per_layer={self.heads_per_layer})"
        )


def _slice_linear(linear: nn.Linear, index: Tensor, dim: int) -> None:
    """Keep rows (``dim=0``: outputs) or columns (``dim=1``: inputs) ``index`` of ``linear``, in place."""
    weight = linear.weight.detach().index_select(dim, index.to(linear.weight.device)).clone()
    linear.weight = nn.Parameter(weight, requires_grad=linear.weight.requires_grad)
    if dim == 0:
        if linear.bias is not None:
            bias = linear.bias.detach().index_select(0, index.to(linear.bias.device)).clone()
            linear.bias = nn.Parameter(bias, requires_grad=linear.bias.requires_grad)
        linear.out_features = len(index)
    else:
        linear.in_features = len(index)


def shrink_heads(anatomy: Anatomy, keep: Sequence[Sequence[int]]) -> None:
    """Physically keep only heads ``keep[layer]`` (positions among the layer's current heads), in place.

    Cuts the q/k/v output rows and the output-projection input columns of the other heads and updates the
    attention module's head count. Does not touch ``config.kept_heads`` (see :func:`prune_heads`).

    Raises:
        ValueError: ``keep`` does not give one non-empty list of valid, distinct positions per layer.
    """
    if len(keep) != anatomy.n_layers:
        raise ValueError(f"keep has {len(keep)} layers; the model has {anatomy.n_layers}.")
    d_head = anatomy.head_dim
    for layer, heads in enumerate(keep):
        n_now = anatomy.out_proj(layer).in_features // d_head
        heads = sorted(int(h) for h in heads)
        if not heads or len(set(heads)) != len(heads) or heads[0] < 0 or heads[-1] >= n_now:
            raise ValueError(
                f"layer {layer}: heads to keep {heads} must be distinct positions in 0..{n_now - 1} "
                "and at least one per layer."
            )
        if len(heads) == n_now:
            continue
        index = torch.cat([torch.arange(h * d_head, (h + 1) * d_head) for h in heads])  # (kept * d_head,)
        for linear in anatomy.qkv(layer):
            _slice_linear(linear, index, dim=0)
        _slice_linear(anatomy.out_proj(layer), index, dim=1)
        for module in anatomy.layer(layer).modules():  # BertSelfAttention / DistilBertSelfAttention
            if hasattr(module, "attention_head_size"):
                for attr in ("num_attention_heads", "n_heads"):
                    if hasattr(module, attr):
                        setattr(module, attr, len(heads))
                if hasattr(module, "all_head_size"):
                    module.all_head_size = len(heads) * d_head
    anatomy.heads_per_layer = tuple(anatomy.out_proj(l).in_features // d_head for l in range(anatomy.n_layers))
    anatomy.n_heads = max(anatomy.heads_per_layer)
