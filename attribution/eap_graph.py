"""The computational graph of a BERT encoder for edge attribution, and the hooked forward pass that reads and
writes every edge.

Nodes that write: the embeddings, every attention head (its share of the output projection, ``z_h W_O,h``) and
every FFN block (its output ``W_2 act(W_1 h) + b_2``). Nodes that read: every head (its query, key and value input
together, one input per head), every FFN block and the readout (the pooler + classifier on the last hidden state).
An edge ``u -> v`` joins a writer to every reader downstream of it.

BERT is post-LayerNorm, so the stream a node reads is not the plain sum of the writers' outputs. It is an exact
sum of *contributions*: each LayerNorm ``gamma (s - mean s) / sigma + beta`` is linear in ``s`` once its ``sigma`` (of
this forward pass) is fixed, so every writer's output is carried through each LayerNorm it passes as ``gamma (c -
mean c) / sigma``, and the constants (output-projection bias, ``beta``) gather in one extra row. For every reader
``sum_u c_u + constant`` equals its true input (a test checks it), and ``c_u`` is what edge ``u -> v`` carries.

:class:`EdgeHooks` runs the model once with these contributions tracked layer by layer and, at each reader, lets a
callback add a change to that reader's input only: to a head's own q/k/v input (a per-head copy of the stream,
through the q/k/v weights of that head), to the FFN input (not its residual skip) and to the pooler input.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor
from torch.utils.hooks import RemovableHandle
from typing_extensions import Self

from pipeline.anatomy import Anatomy

__all__ = ["EdgeHooks", "Graph", "Injector", "Node"]

# (group, layer, contributions (writer + 1, batch, seq, d_model), None when not tracked) -> the change of the
# readers' input, or None:
# group "attn": (batch, seq, head, d_model), "ffn" and "readout": (batch, seq, d_model); layer -1 for the readout.
Injector = Callable[[str, int, Tensor | None], Tensor | None]


@dataclass(frozen=True)
class Node:
    """A node: ``kind`` is ``emb``, ``head``, ``ffn`` or ``readout``; ``head`` is the head's position in its layer
    (:meth:`Graph.original` gives the id the tables use)."""

    kind: str
    layer: int = -1
    head: int = -1

    @property
    def name(self) -> str:
        """``emb``, ``L1.H3``, ``L1.FFN`` or ``readout``."""
        if self.kind == "head":
            return f"L{self.layer}.H{self.head}"
        return f"L{self.layer}.FFN" if self.kind == "ffn" else self.kind


class Graph:
    """Writers, readers and the edges of a BERT-family encoder (:class:`Anatomy`; pruned layers included).

    ``writers[i]`` is row ``i`` of the contribution tensors; ``readers[j]`` is column ``j`` of the edge tensors;
    ``mask[i, j]`` says whether ``writers[i] -> readers[j]`` is an edge (the writer is upstream of the reader).
    """

    def __init__(self, anatomy: Anatomy) -> None:
        if anatomy.family != "bert":
            raise ValueError(
                f"edge attribution supports BERT-shaped encoders (MiniLM, TinyBERT); got {anatomy.family!r}."
            )
        self.anatomy = anatomy
        heads = [[Node("head", l, h) for h in range(n)] for l, n in enumerate(anatomy.heads_per_layer)]
        self.writers: list[Node] = [Node("emb")]
        self.readers: list[Node] = []
        for layer, layer_heads in enumerate(heads):
            self.readers += layer_heads + [Node("ffn", layer)]
            self.writers += layer_heads + [Node("ffn", layer)]
        self.readers.append(Node("readout"))
        self.row = {node: i for i, node in enumerate(self.writers)}
        self.col = {node: j for j, node in enumerate(self.readers)}
        self.mask = torch.zeros(len(self.writers), len(self.readers), dtype=torch.bool)
        for j, reader in enumerate(self.readers):
            self.mask[: self._upstream(reader), j] = True

    def _upstream(self, reader: Node) -> int:
        """How many writers (a prefix of ``writers``) feed ``reader``."""
        if reader.kind == "readout":
            return len(self.writers)
        if reader.kind == "ffn":  # the embeddings, every earlier node and the heads of its own layer
            return self.row[Node("head", reader.layer, 0)] + self.anatomy.heads_per_layer[reader.layer]
        return 1 if reader.layer == 0 else self.row[Node("ffn", reader.layer - 1)] + 1

    def edges(self) -> Iterator[tuple[Node, Node]]:
        """Every edge ``(writer, reader)``, reader-major."""
        for j, reader in enumerate(self.readers):
            for i in range(int(self.mask[:, j].sum())):
                yield self.writers[i], reader

    def head_cols(self, layer: int) -> slice:
        """Columns of the heads of ``layer``."""
        start = self.col[Node("head", layer, 0)]
        return slice(start, start + self.anatomy.heads_per_layer[layer])

    def head_rows(self, layer: int) -> slice:
        """Rows of the heads of ``layer``."""
        start = self.row[Node("head", layer, 0)]
        return slice(start, start + self.anatomy.heads_per_layer[layer])

    def original(self, node: Node) -> Node:
        """``node`` with a head's original id (a pruned layer's kept heads keep their ids in the tables)."""
        if node.kind != "head":
            return node
        return Node("head", node.layer, self.anatomy.head_ids[node.layer][node.head])

    def __len__(self) -> int:
        return int(self.mask.sum())


def _carry(c: Tensor, s: Tensor, norm: torch.nn.LayerNorm) -> Tensor:
    """Every row of ``c`` (summing to ``s``) through ``norm`` with ``sigma`` of ``s`` fixed; ``beta`` joins the last
    row (the constants), so the rows still sum to ``norm(s)``."""
    sigma = (s.var(-1, unbiased=False, keepdim=True) + norm.eps).sqrt()  # (batch, seq, 1)
    out = norm.weight * (c - c.mean(-1, keepdim=True)) / sigma
    return torch.cat([out[:-1], out[-1:] + norm.bias], dim=0)


class EdgeHooks(AbstractContextManager):
    """Track every writer's contribution through a forward pass; let ``inject`` change each reader's input.

    After the pass, ``at[(group, layer)]`` holds the contributions (writer + 1, batch, seq, d_model) each reader
    group saw (``("attn", l)``, ``("ffn", l)``, ``("readout", -1)``); the last row is the constants.

    Args:
        graph: the model's :class:`Graph`.
        inject: the :data:`Injector`; None reads without changing anything.
        track: False skips the contributions (``inject`` then gets None for them and ``at`` stays empty): a plain
            forward pass with changed inputs, for changes that do not depend on the pass itself.
    """

    def __init__(self, graph: Graph, inject: Injector | None = None, *, track: bool = True) -> None:
        self.graph, self.inject, self.track = graph, inject, track
        self.at: dict[tuple[str, int], Tensor] = {}
        self._c: Tensor | None = None
        self._handles: list[RemovableHandle] = []

    def _change(self, group: str, layer: int) -> Tensor | None:
        if self.track:
            self.at[(group, layer)] = self._c
        return None if self.inject is None else self.inject(group, layer, self._c)

    def _embeddings(self, module, args, out: Float[Tensor, "batch seq d_model"]) -> None:
        self._c = torch.zeros(len(self.graph.writers) + 1, *out.shape, dtype=out.dtype, device=out.device)
        self._c[0] = out

    def _attn_pre(self, layer: int):
        def hook(module, args, kwargs):
            self._attn_change = self._change("attn", layer)

        return hook

    def _qkv(self, layer: int):
        n_heads, d_head = self.graph.anatomy.heads_per_layer[layer], self.graph.anatomy.head_dim

        def hook(module, args, out):
            if self._attn_change is None:
                return out
            w = module.weight.view(n_heads, d_head, -1)  # (head, d_head, d_model)
            extra = torch.einsum("bshd,hed->bshe", self._attn_change.to(out.dtype), w)
            return out + extra.reshape(out.shape)

        return hook

    def _heads_out(self, layer: int):
        n_heads, d_head = self.graph.anatomy.heads_per_layer[layer], self.graph.anatomy.head_dim
        rows = self.graph.head_rows(layer)

        def hook(module, args):
            z = args[0].view(*args[0].shape[:-1], n_heads, d_head)  # (batch, seq, head, d_head)
            w = module.weight.view(-1, n_heads, d_head)  # (d_model, head, d_head)
            heads = torch.einsum("bshe,dhe->hbsd", z, w)
            c = self._c.clone()
            c[rows] = heads
            c[-1] = c[-1] + module.bias
            self._c = c

        return hook

    def _norm(self, module, args) -> None:
        self._c = _carry(self._c, args[0], module)

    def _ffn_pre(self, layer: int):
        def hook(module, args):
            change = self._change("ffn", layer)
            return None if change is None else (args[0] + change, *args[1:])

        return hook

    def _ffn_out(self, layer: int):
        row = self.graph.row[self.graph.writers[self.graph.head_rows(layer).stop]]

        def hook(module, args, out):
            c = self._c.clone()
            c[row] = out
            self._c = c

        return hook

    def _readout(self, module, args):
        change = self._change("readout", -1)
        return None if change is None else (args[0] + change, *args[1:])

    def __enter__(self) -> Self:
        anatomy, self.at = self.graph.anatomy, {}
        add = self._handles.append
        for layer in range(anatomy.n_layers):
            block = anatomy.layer(layer)
            add(block.attention.register_forward_pre_hook(self._attn_pre(layer), with_kwargs=True))
            for linear in anatomy.qkv(layer):
                add(linear.register_forward_hook(self._qkv(layer)))
            add(block.intermediate.register_forward_pre_hook(self._ffn_pre(layer)))
            if self.track:
                add(anatomy.out_proj(layer).register_forward_pre_hook(self._heads_out(layer)))
                add(block.attention.output.LayerNorm.register_forward_pre_hook(self._norm))
                add(block.output.dense.register_forward_hook(self._ffn_out(layer)))
                add(block.output.LayerNorm.register_forward_pre_hook(self._norm))
        if self.track:
            add(anatomy.embeddings.register_forward_hook(self._embeddings))
        add(anatomy.base.pooler.register_forward_pre_hook(self._readout))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
