"""Head and neuron gates: the project's hook points.

transformers 5 ignores ``head_mask`` and has no ``prune_heads``, so heads are switched off here by a forward
pre-hook on the attention output projection (see :class:`pipeline.anatomy.Anatomy`). Its input is the
concatenation of the per-head context vectors ``z`` (batch, seq, head * d_head); the hook rewrites each head's
slice as

    z_h  ->  g_h * z_h + (1 - g_h) * b_h

with gate ``g_h`` (1 keeps the head, 0 replaces it by the baseline ``b_h``; zero baseline by default, a mean
activation for mean ablation, or a counterfactual run's activation for activation patching). The FFN
intermediate activations are gated the same way by a forward hook on the activation module. This works with
any attention implementation (eager, sdpa) because it acts after attention, on the projection's input.

Gates are global, shape (layer, head), or per example, shape (batch, layer, head), so one forward pass can
ablate a different head in every row. Gates may require grad: ``d score / d g_h`` at g = 1 is the gradient
head importance of Michel et al. (2019), and scaling g from 0 to 1 is the integrated-gradients path over heads
(Hao et al. 2021). Every class here is a context manager whose hooks are removed in ``finally``, so nesting
works and an exception never leaves a hook behind.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager

import torch
from jaxtyping import Float
from torch import Tensor
from torch.utils.hooks import RemovableHandle

from pipeline.anatomy import Anatomy

__all__ = ["HeadGates", "NeuronGates", "RecordHeads", "RecordNeurons", "ones_gates"]

# One baseline per layer, broadcastable to (batch, seq, head, d_head) for heads or (batch, seq, d_ff) for
# neurons; ``None`` means zero. A single tensor with a leading layer axis is accepted too.
Baseline = Tensor | Sequence[Tensor | None] | None


class _Hooks(AbstractContextManager):
    """Attach hooks on ``__enter__``; remove exactly those on ``__exit__``, even after an exception."""

    def __init__(self) -> None:
        self._handles: list[RemovableHandle] = []

    def _attach(self) -> list[RemovableHandle]:  # pragma: no cover - abstract
        raise NotImplementedError

    def __enter__(self):
        if self._handles:
            raise RuntimeError(f"{type(self).__name__} is already active; make a new one to nest.")
        try:
            self._handles = self._attach()
        except BaseException:
            self._remove()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._remove()

    def _remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


def _check_gates(gates: Tensor, n_layers: int, width: int, what: str) -> Tensor:
    if not isinstance(gates, Tensor):
        raise TypeError(f"{what} gates must be a torch.Tensor, got {type(gates).__name__}.")
    if gates.dim() not in (2, 3) or tuple(gates.shape[-2:]) != (n_layers, width):
        raise ValueError(
            f"{what} gates have shape {tuple(gates.shape)}; expected ({n_layers}, {width}) for global gates or "
            f"(batch, {n_layers}, {width}) for per-example gates."
        )
    return gates


def _resolve_layers(anatomy: Anatomy, layers: Sequence[int] | None) -> list[int]:
    """All layers by default; otherwise the given ones, each checked against the model."""
    chosen = list(range(anatomy.n_layers)) if layers is None else [int(x) for x in layers]
    for layer in chosen:
        anatomy.check_layer(layer)
    return chosen


def _layer_baseline(baseline: Baseline, layer: int) -> Tensor | None:
    if baseline is None:
        return None
    return baseline[layer]


def _gate_rows(g: Tensor, batch: int, what: str) -> Tensor:
    """Gate slice for one layer -> (batch or 1, width), with a clear error on a batch-size mismatch."""
    if g.dim() == 1:
        return g.unsqueeze(0)
    if g.shape[0] != batch:
        raise ValueError(f"per-example {what} gates have batch {g.shape[0]} but the forward batch is {batch}.")
    return g


class HeadGates(_Hooks):
    """Multiply each head's context vector by a gate at the input of the attention output projection.

    Args:
        anatomy: the model's :class:`Anatomy`.
        gates: (layer, head) or (batch, layer, head). In a pruned layer with fewer heads only the first
            ``heads_per_layer[layer]`` gates are used.
        baseline: what a closed gate substitutes: ``None`` (zero), a tensor (layer, head, d_head) such as the
            mean activation, or one tensor per layer broadcastable to (batch, seq, head, d_head), e.g. the
            activations of a counterfactual run for patching.
        layers: restrict the hooks to these layers (default: all).

    Example:
        >>> with HeadGates(anatomy, gates):
        ...     logits = model(**batch).logits
    """

    def __init__(
        self,
        anatomy: Anatomy,
        gates: Float[Tensor, "*batch layer head"],
        *,
        baseline: Baseline = None,
        layers: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.anatomy = anatomy
        self.gates = _check_gates(gates, anatomy.n_layers, anatomy.n_heads, "head")
        self.baseline = baseline
        self.layers = _resolve_layers(anatomy, layers)

    def _hook(self, layer: int):
        n_heads, d_head = self.anatomy.heads_per_layer[layer], self.anatomy.head_dim
        base = _layer_baseline(self.baseline, layer)

        def pre_hook(module, args):
            z = args[0]  # (batch, seq, head * d_head)
            zh = z.view(*z.shape[:-1], n_heads, d_head)  # (batch, seq, head, d_head)
            g = _gate_rows(self.gates[..., layer, :n_heads], z.shape[0], "head").to(z.dtype)  # (batch|1, head)
            g = g[:, None, :, None]  # (batch|1, 1, head, 1)
            out = zh * g
            if base is not None:
                out = out + (1 - g) * base.to(z.dtype)
            return (out.reshape(z.shape), *args[1:])

        return pre_hook

    def _attach(self) -> list[RemovableHandle]:
        return [self.anatomy.out_proj(l).register_forward_pre_hook(self._hook(l)) for l in self.layers]


class NeuronGates(_Hooks):
    """Multiply FFN intermediate activations by gates, shape (layer, d_ff) or (batch, layer, d_ff).

    ``baseline`` is as for :class:`HeadGates`, per layer broadcastable to (batch, seq, d_ff).
    """

    def __init__(
        self,
        anatomy: Anatomy,
        gates: Float[Tensor, "*batch layer d_ff"],
        *,
        baseline: Baseline = None,
        layers: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.anatomy = anatomy
        self.gates = _check_gates(gates, anatomy.n_layers, anatomy.d_ff, "neuron")
        self.baseline = baseline
        self.layers = _resolve_layers(anatomy, layers)

    def _hook(self, layer: int):
        base = _layer_baseline(self.baseline, layer)

        def fwd_hook(module, args, act):
            g = _gate_rows(self.gates[..., layer, :], act.shape[0], "neuron").to(act.dtype)[
                :, None, :
            ]  # (b|1, 1, d_ff)
            out = act * g
            if base is not None:
                out = out + (1 - g) * base.to(act.dtype)
            return out

        return fwd_hook

    def _attach(self) -> list[RemovableHandle]:
        return [self.anatomy.ffn_act(l).register_forward_hook(self._hook(l)) for l in self.layers]


class RecordHeads(_Hooks):
    """Record per-head context vectors (the output projection's input) of the chosen layers.

    After the forward pass, ``self.z[layer]`` is a tensor (batch, seq, head, d_head). With ``detach=False``
    the recorded tensors stay in the graph.
    """

    def __init__(self, anatomy: Anatomy, layers: Sequence[int] | None = None, *, detach: bool = True) -> None:
        super().__init__()
        self.anatomy = anatomy
        self.layers = _resolve_layers(anatomy, layers)
        self.detach = detach
        self.z: dict[int, Tensor] = {}

    def _hook(self, layer: int):
        n_heads, d_head = self.anatomy.heads_per_layer[layer], self.anatomy.head_dim

        def pre_hook(module, args):
            z = args[0]
            z = z.detach() if self.detach else z
            self.z[layer] = z.view(*z.shape[:-1], n_heads, d_head)  # (batch, seq, head, d_head)

        return pre_hook

    def _attach(self) -> list[RemovableHandle]:
        self.z = {}
        return [self.anatomy.out_proj(l).register_forward_pre_hook(self._hook(l)) for l in self.layers]


class RecordNeurons(_Hooks):
    """Record FFN intermediate activations: ``self.act[layer]`` is (batch, seq, d_ff) after a forward pass."""

    def __init__(self, anatomy: Anatomy, layers: Sequence[int] | None = None, *, detach: bool = True) -> None:
        super().__init__()
        self.anatomy = anatomy
        self.layers = _resolve_layers(anatomy, layers)
        self.detach = detach
        self.act: dict[int, Tensor] = {}

    def _hook(self, layer: int):
        def fwd_hook(module, args, act):
            self.act[layer] = act.detach() if self.detach else act

        return fwd_hook

    def _attach(self) -> list[RemovableHandle]:
        self.act = {}
        return [self.anatomy.ffn_act(l).register_forward_hook(self._hook(l)) for l in self.layers]


def ones_gates(
    anatomy: Anatomy,
    *,
    batch: int | None = None,
    neurons: bool = False,
    requires_grad: bool = False,
    device: torch.device | str | None = None,
) -> Tensor:
    """All-ones gates of the right shape: (layer, head|d_ff), or (batch, layer, head|d_ff) when ``batch``."""
    width = anatomy.d_ff if neurons else anatomy.n_heads
    shape = (anatomy.n_layers, width) if batch is None else (batch, anatomy.n_layers, width)
    return torch.ones(shape, device=device, requires_grad=requires_grad)
