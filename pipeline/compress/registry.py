"""The compression-method registry: one record per method, carrying every fact the rest of the tool needs (its
settings section, the build operations of its variants, which of them read no training data, how fine-tuning after
it must behave, its preflight check, the shape of its models, its figure markers and, for a remedy, the twin it is
compared with).

Every consumer iterates :func:`compression_methods`: the run config's ``[compress]`` table has one sub-section per
record (:class:`CompressSection`), the plan (:mod:`pipeline.runs.plan`) turns their ``methods()`` into variants,
the build stage runs :func:`build_op`, the preflight runs each ``check``, the variant grammar reads
:func:`method_families` and :func:`remedies` (mitigation twins), and the figures draw :func:`method_markers`. A new
method is one record (+ its settings class and build function): :func:`register_compression`, as a plug-in does
(tests/test_plugins.py).

Built-in records name their functions as ``"module:function"``, resolved on first use (the build operations live
in the orchestration floor, which this base module cannot import); a plug-in passes the functions themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any, Literal

from pydantic.fields import FieldInfo

from pipeline.compress.config import (
    BiasPruneSection,
    DistilSection,
    EoRegSection,
    EoSection,
    EraseSection,
    FairDistilSection,
    Int8Section,
    MethodSection,
    PruneSection,
    TinySection,
)
from pipeline.settings import Settings

__all__ = [
    "CompressSection",
    "CompressionMethod",
    "Remedy",
    "build_op",
    "compression_methods",
    "fine_tune_params",
    "is_data_free",
    "is_student",
    "method_families",
    "method_markers",
    "on_change",
    "reads_swaps",
    "register_compression",
    "remedies",
    "resolve",
    "unregister_compression",
]


def resolve(function: Callable | str) -> Callable:
    """``function`` itself, or the function a ``"module:function"`` string names."""
    if callable(function):
        return function
    module, _, name = function.partition(":")
    return getattr(import_module(module), name)


@dataclass(frozen=True)
class Remedy:
    """What makes a method a bias remedy: the findings compare each of its variants with an unmitigated twin.

    Attributes:
        name: the remedy's name in the findings tables (``mitigation``).
        part: the component of a variant's method name that marks the remedy (``distil_mixup``: ``mixup``),
            matched as a prefix (``biasprune8h``).
        twin: ``(variant, method-name parts, index of the part) -> twin names in order of preference``.
        heldout: it learns from the training part of the swap lists (twins), so the findings judge it on the
            held-out swap words, which it never saw.
    """

    name: str
    part: str
    twin: Callable | str
    heldout: bool = False


@dataclass(frozen=True)
class CompressionMethod:
    """A compression or mitigation method.

    Attributes:
        key: its config sub-section, ``[compress.<key>]``.
        section: its settings class (orders, ``methods()``: the variants it adds, ``bases()``: what it applies to).
        build: build op -> function ``(pipeline.runs.build_job.BuildJob) -> Built`` (or ``"module:function"``);
            every op its ``methods()`` names.
        what: one line on what it does and its source.
        markers: method family (name prefix) -> matplotlib marker of its variants in the figures.
        data_free: ops that read no training data (built once, for the first seed).
        fine_tune: op -> extra parameters of a fine-tuning step that follows it (``sparse``: keep the zeros).
        kind: ``remedy`` when every variant of the method is a bias remedy (listed after the compression methods),
            else ``compression``.
        remedy: how its remedy variants are named and twinned (a compression method may have a remedy option:
            ``distil_mixup``).
        check: preflight ``(cfg, teacher transformers config) -> None`` raising ``ConfigError``, or None.
        shape: ``(section, method name, n_layers, n_heads) -> (blocks, heads per block)`` of its variants, or None
            when unknown before they are built (heads removed); None = the teacher's shape.
        student: its variants are students whose layers map onto teacher layers (``layer_map`` in their saved
            config), so their heads are aligned with the teacher's (RQ4).
        swaps: whether building a variant reads the gender swap lists (mixup twins, a bias target on twins), or a
            function of the step's params saying so; their content hashes then enter its build key, so edited lists
            rebuild exactly the variants that read them.
    """

    key: str
    section: type[MethodSection]
    build: Mapping[str, Callable | str]
    what: str
    markers: Mapping[str, str]
    data_free: frozenset[str] = frozenset()
    fine_tune: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    kind: Literal["compression", "remedy"] = "compression"
    remedy: Remedy | None = None
    check: Callable | str | None = None
    shape: Callable | str | None = None
    student: bool = False
    swaps: bool | Callable[[Mapping[str, Any]], bool] = False


_OPS = "pipeline.runs.compress_build"
_CHECKS = "pipeline.runs.compress_checks"
_TWINS = "pipeline.compress.twins"
_REGISTRY: dict[str, CompressionMethod] = {}
_LISTENERS: list[Callable[[], None]] = []


class _CompressBase(Settings):
    """One optional sub-section per registered compression method; a present sub-section enables the method."""

    def sections(self) -> list[tuple[str, MethodSection]]:
        """(name, section) of every enabled method, in registration order (mitigations after what they apply to)."""
        return [(name, section) for name in type(self).model_fields if (section := getattr(self, name)) is not None]

    def section_of(self, op: str) -> MethodSection | None:
        """The enabled section whose methods build with ``op`` (None for non-compression ops)."""
        return next((sec for _, sec in self.sections() if any(o == op for _, o, _ in sec.methods())), None)


class CompressSection(_CompressBase):
    """``[compress]``: one optional sub-section per record of the registry (fields added by
    :func:`register_compression`)."""


def on_change(listener: Callable[[], None]) -> None:
    """Call ``listener`` whenever a method is registered or removed (the run config rebuilds its schema)."""
    _LISTENERS.append(listener)


def _rebuild() -> None:
    CompressSection.model_rebuild(force=True)
    for listener in _LISTENERS:
        listener()


def register_compression(method: CompressionMethod) -> CompressionMethod:
    """Add ``method`` (its ``[compress.<key>]`` section, ops, markers) to every consumer.

    Raises:
        ValueError: its key, an op or a marker family is taken by another method.
    """
    if method.key in _REGISTRY:
        raise ValueError(f"compression method {method.key!r} is registered already; pick another key.")
    ops = {op for m in _REGISTRY.values() for op in m.build} | {"load", "mlm", "finetune"}
    families = {f for m in _REGISTRY.values() for f in m.markers} | {"teacher", "hub"}
    clash = sorted((set(method.build) & ops) | (set(method.markers) & families))
    if clash:
        raise ValueError(f"compression method {method.key!r}: {clash} belong to another method; rename them.")
    _REGISTRY[method.key] = method
    CompressSection.model_fields[method.key] = FieldInfo(annotation=method.section | None, default=None)
    _rebuild()
    return method


def unregister_compression(method: CompressionMethod) -> None:
    """Remove a method added by :func:`register_compression` (tests clean up after a plug-in)."""
    _REGISTRY.pop(method.key, None)
    CompressSection.model_fields.pop(method.key, None)
    _rebuild()


def compression_methods() -> tuple[CompressionMethod, ...]:
    """Every registered method, in registration order."""
    return tuple(_REGISTRY.values())


def build_op(op: str) -> Callable | None:
    """The build function of compression op ``op``, or None when no method has it."""
    return next((resolve(m.build[op]) for m in _REGISTRY.values() if op in m.build), None)


def is_data_free(op: str) -> bool:
    """Whether op ``op`` reads no training data (its variants are built once, for the first seed)."""
    return op == "load" or any(op in m.data_free for m in _REGISTRY.values())


def fine_tune_params(op: str) -> dict[str, Any]:
    """Extra parameters of fine-tuning a variant that op ``op`` built (sparse: keep the zeros)."""
    return next((dict(m.fine_tune[op]) for m in _REGISTRY.values() if op in m.fine_tune), {})


def reads_swaps(op: str, params: Mapping[str, Any]) -> bool:
    """Whether building a variant with op ``op`` and step params ``params`` reads the gender swap lists."""
    method = next((m for m in _REGISTRY.values() if op in m.build), None)
    if method is None:
        return False
    return method.swaps(params) if callable(method.swaps) else method.swaps


def method_families() -> tuple[str, ...]:
    """Method families in display order: the teacher, the compression methods, hub students, then the remedies."""
    plain = [f for m in _REGISTRY.values() if m.kind == "compression" for f in m.markers]
    remedy = [f for m in _REGISTRY.values() if m.kind == "remedy" for f in m.markers]
    return ("teacher", *plain, "hub", *remedy)


def method_markers() -> dict[str, str]:
    """Matplotlib marker per method family, in :func:`method_families` order."""
    markers = {"teacher": "*", "hub": "X"} | {f: k for m in _REGISTRY.values() for f, k in m.markers.items()}
    return {f: markers[f] for f in method_families()}


def is_student(method: str) -> bool:
    """Whether the method name ``method`` (``distil_mixup``, ``tiny``) is a layer-mapped student's."""
    return any(m.student and method.startswith(tuple(m.markers)) for m in _REGISTRY.values())


def remedies() -> tuple[Remedy, ...]:
    """The remedies among the methods."""
    return tuple(m.remedy for m in _REGISTRY.values() if m.remedy is not None)


for _method in (
    CompressionMethod(
        "distil",
        DistilSection,
        {"distil": f"{_OPS}:distil_op"},
        "DistilBERT-style student (Sanh et al. 2019), optionally with gender-word mixup (Ahn et al. 2022)",
        {"distil": "o"},
        remedy=Remedy("mixup", "mixup", f"{_TWINS}:mixup_twin", heldout=True),
        check=f"{_CHECKS}:check_distil",
        shape=f"{_CHECKS}:distil_shape",
        student=True,
        swaps=lambda params: bool(params.get("mixup")),  # mixup pairs each text with its twin
    ),
    CompressionMethod(
        "tiny",
        TinySection,
        {"tiny": f"{_OPS}:tiny_op"},
        "TinyBERT-style student (Jiao et al. 2020): narrower and shallower, layer-wise distillation",
        {"tiny": "s"},
        check=f"{_CHECKS}:check_tiny",
        shape=f"{_CHECKS}:tiny_shape",
        student=True,
    ),
    CompressionMethod(
        "prune",
        PruneSection,
        {"prune": f"{_OPS}:prune_op", "sparse": f"{_OPS}:sparse_op"},
        "head pruning by importance (Michel et al. 2019) and magnitude pruning of the encoder's linear weights",
        {"prune": "^", "sparse": "v"},
        data_free=frozenset({"sparse"}),
        fine_tune={"sparse": {"keep_sparsity": True}},
        shape=f"{_CHECKS}:pruned_shape",
    ),
    CompressionMethod(
        "int8",
        Int8Section,
        {"int8": f"{_OPS}:int8_op"},
        "dynamic int8 quantisation of the linear layers (evaluation only)",
        {"int8": "D"},
        data_free=frozenset({"int8"}),
    ),
    CompressionMethod(
        "biasprune",
        BiasPruneSection,
        {"biasprune": "pipeline.runs.mitigation_build:biasprune_op"},
        "bias-aware head pruning (Zayed et al. 2024), with its importance-pruned twin of the same size",
        {"biasprune": "P"},
        kind="remedy",
        remedy=Remedy("biasprune", "biasprune", f"{_TWINS}:biasprune_twin", heldout=True),
        check=f"{_CHECKS}:check_biasprune",
        shape=f"{_CHECKS}:pruned_shape",
        swaps=True,  # the bias target is the counterfactual gap on twins
    ),
    CompressionMethod(
        "erase",
        EraseSection,
        {"erase": "pipeline.runs.mitigation_build:erase_op"},
        "LEACE concept erasure of gender (Belrose et al. 2023), saved with the model",
        {"erase": "p"},
        kind="remedy",
        remedy=Remedy("erase", "erase", f"{_TWINS}:erase_twin"),
        check=f"{_CHECKS}:check_erase",
    ),
    CompressionMethod(
        "eoreg",
        EoRegSection,
        {"eoreg": "pipeline.runs.mitigation_build:refit_op"},
        "further fine-tuning with a soft TPR-gap penalty (equal opportunity, Hardt et al. 2016) beside refit",
        {"eoreg": "d", "refit": "H"},
        kind="remedy",
        remedy=Remedy("eoreg", "eoreg", f"{_TWINS}:refit_twin"),
    ),
    CompressionMethod(
        "fairdistil",
        FairDistilSection,
        {"fairdistil": "pipeline.runs.mitigation_build:fairdistil_op"},
        "fair distillation: the student matches the teacher averaged over each text and its gender-swapped twin "
        "and pays for its counterfactual gap, beside plain distil",
        {"fairdistil": ">"},
        kind="remedy",
        remedy=Remedy("fairdistil", "fairdistil", f"{_TWINS}:fairdistil_twin", heldout=True),
        check=f"{_CHECKS}:check_fairdistil",
        shape=f"{_CHECKS}:distil_shape",
        student=True,
        swaps=True,  # the teacher is averaged over each text and its twin
    ),
    CompressionMethod(
        "eo",
        EoSection,
        {"eo": f"{_OPS}:eo_op"},
        "equal-opportunity post-processing (Hardt et al. 2016, K classes by a linear program): a randomised "
        "relabelling per gender fitted on the dev split, saved with the model and applied on load",
        {"eo": "8"},
        kind="remedy",
        remedy=Remedy("eo", "eo", f"{_TWINS}:eo_twin"),
    ),
):
    register_compression(_method)
