"""Settings of the compression methods: one section per method, each listing the fine-tuning orders it is built in.

A present section enables its method (``[compress.distil]``, ``[compress.tiny]``, ``[compress.prune]``,
``[compress.int8]``, and the mitigations ``[compress.biasprune]``, ``[compress.erase]``,
``[compress.eoreg]``, ``[compress.fairdistil]``, ``[compress.eo]``); the run plan
(:mod:`pipeline.runs.plan`) turns each (method, order) into a variant. A mitigation section can also be applied on
top of other methods' variants (``on``): ``on = ["distil"]`` adds ``distil_erase-ft_<order>``, the eraser fitted on
``distil-ft_<order>``.
"""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from pipeline.settings import FT_ORDERS, Order, Settings, check_orders, distinct, unit_interval

__all__ = [
    "BiasPruneSection",
    "DistilSection",
    "EoRegSection",
    "EoSection",
    "EraseSection",
    "FairDistilSection",
    "Int8Section",
    "MethodSection",
    "PruneSection",
    "TinySection",
]


class MethodSection(Settings):
    """A compression method's section: the orders it is built in and the variants it adds to the plan.

    :meth:`methods` lists ``(method name, build op, op params)``: one entry for most methods, several for a method
    with a list of strengths (one variant per pruning fraction). The plan (:mod:`pipeline.runs.plan`) iterates the
    enabled sections (:class:`pipeline.compress.registry.CompressSection`) and their methods; the build stage runs
    the op its record names (:func:`pipeline.compress.registry.build_op`).
    """

    op: ClassVar[str] = ""
    orders: tuple[Order, ...] = ("before",)

    def methods(self) -> list[tuple[str, str, dict]]:
        return [(self.op, self.op, {})]

    def bases(self) -> tuple[str, ...]:
        """The methods whose variants this one is applied to (``teacher``: the teacher, in each order)."""
        return ("teacher",)


class _Method(MethodSection):
    """Shared settings of a compression method that trains a student: optimiser, orders, layer map."""

    epochs: int = Field(default=1, ge=1)
    lr: float = Field(default=1e-4, gt=0)
    batch_size: int = Field(default=32, ge=1)
    warmup_ratio: float = Field(default=0.1, ge=0, lt=1)
    weight_decay: float = Field(default=0.01, ge=0)
    grad_clip: float = Field(default=1.0, gt=0)
    orders: tuple[Order, ...] = ("before",)
    layer_map: tuple[int, ...] | None = None  # teacher layer of each student layer (defaults: see the methods)

    @field_validator("orders")
    @classmethod
    def _orders(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return check_orders(v, FT_ORDERS, "fine-tuning orders")

    @field_validator("layer_map")
    @classmethod
    def _map(cls, v: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if v is not None and (not v or list(v) != sorted(set(v)) or min(v) < 0):
            raise ValueError(f"layer_map {list(v)} must be non-empty, non-negative and strictly increasing")
        return v


class DistilSection(_Method):
    """DistilBERT-style student (Sanh et al. 2019): half the layers, initialised from teacher layers.

    ``layer_map`` default: every other teacher layer, 0, 2, 4, ...
    """

    op: ClassVar[str] = "distil"
    temperature: float = Field(default=2.0, gt=0)
    alpha_kl: float = Field(default=0.5, ge=0)  # soft-target KL * T^2 (class logits, or MLM logits when general)
    alpha_ce: float = Field(default=0.5, ge=0)  # hard labels (class, or masked tokens when general)
    alpha_cos: float = Field(default=1.0, ge=0)  # 1 - cos(student, teacher) of the last hidden states
    mixup: bool = False  # also build "distil_mixup-*" variants: gender-word mixup (Ahn et al. 2022)
    mixup_alpha: float = Field(default=0.0, ge=0)  # 0: lambda = 0.5; > 0: lambda ~ Beta(alpha, alpha)

    def methods(self) -> list[tuple[str, str, dict]]:
        plain = [("distil", "distil", {"mixup": False})]
        return plain + [("distil_mixup", "distil", {"mixup": True})] if self.mixup else plain

    @model_validator(mode="after")
    def _losses(self) -> DistilSection:
        if self.alpha_kl + self.alpha_ce + self.alpha_cos == 0:
            raise ValueError("alpha_kl, alpha_ce and alpha_cos are all 0; give at least one loss a weight")
        return self


class TinySection(_Method):
    """TinyBERT-style student (Jiao et al. 2020): smaller width and depth, layer-wise distillation.

    ``layer_map`` (teacher layer distilled into each student layer) default: uniform, (i + 1) * N / M - 1.
    """

    op: ClassVar[str] = "tiny"
    n_layers: int | None = Field(default=None, ge=1)  # default: half the teacher's layers
    hidden_size: int | None = Field(default=None, ge=8)  # default: half the teacher's width
    n_heads: int | None = Field(default=None, ge=1)  # default: the teacher's head count
    d_ff: int | None = Field(default=None, ge=8)  # default: 4 * hidden_size
    init: Literal["truncate", "random"] = "truncate"  # truncate = slice the mapped teacher layers' weights
    pred_epochs: int = Field(default=1, ge=0)  # prediction-layer distillation (needs a fine-tuned teacher)
    temperature: float = Field(default=1.0, gt=0)

    @model_validator(mode="after")
    def _shape(self) -> TinySection:
        if self.hidden_size is not None and self.n_heads is not None and self.hidden_size % self.n_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not a multiple of n_heads {self.n_heads}; "
                "pick sizes with hidden_size % n_heads == 0"
            )
        if self.layer_map is not None and self.n_layers is not None and len(self.layer_map) != self.n_layers:
            raise ValueError(
                f"layer_map has {len(self.layer_map)} entries but n_layers = {self.n_layers}; "
                "give one teacher layer per student layer"
            )
        return self


class PruneSection(MethodSection):
    """Head pruning by importance (Michel et al. 2019) and unstructured magnitude pruning."""

    # importance is the gradient of the task loss, so the pruned model must have a fine-tuned classifier
    orders: tuple[Order, ...] = ("before",)
    fractions: tuple[float, ...] = (0.3,)  # share of heads removed, globally; one variant "prune<pct>" each
    sparsities: tuple[float, ...] = ()  # share of encoder linear weights zeroed; one variant "sparse<pct>" each
    importance_examples: int = Field(default=512, ge=1)  # training examples behind the head importance
    normalise: bool = True  # l2-normalise importance within each layer before ranking (Michel et al.)

    @field_validator("orders")
    @classmethod
    def _orders(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return check_orders(v, ("before", "both"), "head importance needs a fine-tuned classifier")

    def methods(self) -> list[tuple[str, str, dict]]:
        return [(f"prune{f * 100:g}", "prune", {"fraction": f}) for f in self.fractions] + [
            (f"sparse{s * 100:g}", "sparse", {"sparsity": s}) for s in self.sparsities
        ]

    @field_validator("fractions", "sparsities")
    @classmethod
    def _fractions(cls, v: tuple[float, ...], info) -> tuple[float, ...]:
        return distinct(unit_interval(v, info.field_name), info.field_name)

    @model_validator(mode="after")
    def _something(self) -> PruneSection:
        if not self.fractions and not self.sparsities:
            raise ValueError("fractions and sparsities are both empty; give at least one, or drop [compress.prune]")
        return self


class Int8Section(MethodSection):
    """Dynamic int8 quantisation of the linear layers (evaluation only: a quantised model cannot be trained)."""

    op: ClassVar[str] = "int8"
    orders: tuple[Order, ...] = ("before",)

    @field_validator("orders")
    @classmethod
    def _orders(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return check_orders(v, ("none", "before"), "an int8 model cannot be fine-tuned")


class _Mitigation(MethodSection):
    """A mitigation that can also be applied on top of other methods' variants."""

    # "teacher" = the teacher in each order (none: pretrained, before: fine-tuned, after / both: then fine-tuned);
    # a method name (distil, prune30, ...) = that method's variant of the same order, as planned by its section
    on: tuple[str, ...] = ("teacher",)

    @field_validator("on")
    @classmethod
    def _on(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        distinct(v, "on")
        if not v:
            raise ValueError("on is empty, which would drop the method silently; give 'teacher' and/or method names")
        bad = [b for b in v if not re.fullmatch(r"[a-z][a-z0-9_]*", b)]
        if bad:
            raise ValueError(
                f"on {bad}: give 'teacher' or names of this run's compression methods (distil, tiny, "
                "prune30, ...); hub students are not compressed here"
            )
        quantised = [b for b in v if b.startswith("int8")]
        if quantised:
            raise ValueError(
                f"on {quantised}: an int8 model is quantised for evaluation only (no gradients, not "
                "saved quantised); mitigate before quantising"
            )
        return v

    def bases(self) -> tuple[str, ...]:
        return self.on


class BiasPruneSection(_Mitigation):
    """Bias-aware head pruning (FASP spirit, Zayed et al. 2024): remove the heads whose single removal lowers the
    counterfactual gap on the dev split most, never the ``protect`` share most important for the task; each count
    also gets its importance-pruned twin (Michel et al. 2019) with the same number of heads removed."""

    op: ClassVar[str] = "biasprune"
    orders: tuple[Order, ...] = ("before",)
    heads: tuple[int, ...] = ()  # numbers of heads removed: variants "biasprune<k>h" (twins "prune<k>h")
    fractions: tuple[float, ...] = ()  # shares of all heads removed: "biasprune<pct>" (twins "prune<pct>")
    protect: float = Field(default=0.1, ge=0, lt=1)  # share of heads most important for accuracy never removed
    objective: Literal["abs_gap", "gap"] = "abs_gap"  # bias lowered: mean |cf gap| per example, or |mean cf gap|
    bias_examples: int = Field(default=256, ge=0)  # dev texts with a gendered word behind the bias effect (0 = all)
    importance_examples: int = Field(default=512, ge=1)  # training examples behind the head importance
    normalise: bool = True  # l2-normalise importance within each layer (as [compress.prune])
    twins: bool = True  # also build the importance-pruned twin of each count

    @field_validator("orders")
    @classmethod
    def _orders(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return check_orders(v, ("before", "both"), "bias effect and importance need a fine-tuned classifier")

    @field_validator("heads")
    @classmethod
    def _heads(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if any(k < 1 for k in v):
            raise ValueError(f"heads {list(v)}: give numbers of heads to remove, each at least 1")
        return distinct(v, "heads")

    @field_validator("fractions")
    @classmethod
    def _fractions(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if any(f == 0 for f in v):
            raise ValueError(f"fractions {list(v)}: 0 removes no head; give shares in (0, 1)")
        return distinct(unit_interval(v, "fractions"), "fractions")

    @model_validator(mode="after")
    def _something(self) -> BiasPruneSection:
        if not self.heads and not self.fractions:
            raise ValueError("heads and fractions are both empty; give at least one, or drop [compress.biasprune]")
        return self

    def methods(self) -> list[tuple[str, str, dict]]:
        sizes = [(f"{k}h", {"heads": k}) for k in self.heads] + [
            (f"{f * 100:g}", {"fraction": f}) for f in self.fractions
        ]
        out = []
        for suffix, size in sizes:
            out.append((f"biasprune{suffix}", self.op, {**size, "by": "bias"}))
            if self.twins:
                out.append((f"prune{suffix}", self.op, {**size, "by": "importance"}))
        return out


class EraseSection(_Mitigation):
    """Concept erasure as a variant: LEACE erasers of gender (Belrose et al. 2023) fitted on the training split at
    ``layers`` and saved with the model, applied whenever it is loaded."""

    op: ClassVar[str] = "erase"
    orders: tuple[Order, ...] = ("before",)  # after / both: fine-tuned with the erasers in place
    layers: tuple[int, ...] = (-1,)  # hidden-state indices: 0 = embeddings, k = output of block k - 1, -1 = last
    # what is guarded, one eraser each, applied in turn: every token's state, the [CLS] state, the mean-pooled one
    fit_on: tuple[Literal["tokens", "cls", "mean"], ...] = ("tokens", "cls", "mean")
    method: Literal["leace", "orth"] = "leace"
    fit_examples: int = Field(default=4096, ge=0)  # training texts the erasers are fitted on (0 = all)

    @field_validator("orders")
    @classmethod
    def _orders(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return check_orders(v, FT_ORDERS, "fine-tuning orders")

    @field_validator("layers")
    @classmethod
    def _layers(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v:
            raise ValueError("layers is empty; give hidden-state indices to erase at, e.g. [-1]")
        return distinct(v, "layers")

    @field_validator("fit_on")
    @classmethod
    def _fit_on(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError("fit_on is empty; give what to guard: 'tokens', 'cls' and/or 'mean'")
        return distinct(v, "fit_on")


class _Refit(_Mitigation):
    """Shared settings of the training remedies: more task fine-tuning of a fine-tuned classifier with a remedied
    loss, beside its twin ``refit`` (the same fine-tuning with the plain loss, so both had the same training)."""

    orders: tuple[Order, ...] = ("before",)
    epochs: int = Field(default=1, ge=1)
    lr: float = Field(default=2e-5, gt=0)
    batch_size: int = Field(default=32, ge=1)
    warmup_ratio: float = Field(default=0.1, ge=0, lt=1)
    weight_decay: float = Field(default=0.01, ge=0)
    grad_clip: float = Field(default=1.0, gt=0)

    @field_validator("orders")
    @classmethod
    def _orders(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return check_orders(v, ("before",), "the remedy continues fine-tuning a fine-tuned classifier")

    def methods(self) -> list[tuple[str, str, dict]]:
        return [(self.op, self.op, {"loss": self.op}), ("refit", self.op, {"loss": "plain"})]


class EoRegSection(_Refit):
    """``eoreg``: fine-tuning with cross-entropy plus ``weight`` times the batch's soft TPR gap between genders
    (equal opportunity as a training penalty; :func:`pipeline.compress.fair_losses.soft_tpr_gap`)."""

    op: ClassVar[str] = "eoreg"
    weight: float = Field(default=1.0, gt=0)


class FairDistilSection(DistilSection):
    """``fairdistil``: DistilBERT-style task distillation whose student matches the pair-averaged teacher on each
    text and its gender-swapped twin and pays ``gap_weight`` times its counterfactual gap
    (:func:`pipeline.compress.fair_losses.fair_distil_loss`), beside its twin, plain ``distil`` with the same
    settings."""

    op: ClassVar[str] = "fairdistil"
    gap_weight: float = Field(default=1.0, ge=0)

    @field_validator("orders")
    @classmethod
    def _fair_orders(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return check_orders(v, ("before", "both"), "fair distillation needs a fine-tuned classifier teacher")

    @model_validator(mode="after")
    def _no_mixup(self) -> FairDistilSection:
        if self.mixup:
            raise ValueError("mixup is an option of [compress.distil]; fair distillation is compared with plain distil")
        return self

    def methods(self) -> list[tuple[str, str, dict]]:
        return [("fairdistil", self.op, {"fair": True}), ("distil", self.op, {"fair": False})]


class EoSection(_Mitigation):
    """``eo``: equal opportunity by post-processing (Hardt et al. 2016, K classes by a linear program;
    :mod:`pipeline.compress.equal_opportunity`): a randomised rule per gender fitted on the dev split, saved with the
    variant and applied at prediction time (:mod:`pipeline.eo_hooks`); its twin is the model it was fitted on.

    ``gender``: where each input's gender comes from at prediction time, ``inferred`` (the gendered words of the
    text) or ``given`` (the data's gender column, which the caller must pass: a run passes each test text's gender
    and the flipped one of its gender-swapped twin). ``tol``: the largest dev TPR gap allowed per class (0 = equal rates).
    """

    op: ClassVar[str] = "eo"
    orders: tuple[Order, ...] = ("before",)
    gender: Literal["given", "inferred"] = "inferred"
    tol: float = Field(default=0.0, ge=0, le=1)

    @field_validator("orders")
    @classmethod
    def _orders(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return check_orders(v, ("before", "both"), "the rule post-processes a fine-tuned classifier")
