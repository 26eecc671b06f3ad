"""The attribution-method registry: one record per method, carrying every fact the rest of the tool needs (the table
it writes, the switch that turns it on, whether it needs gradients, its main metric, the head / neuron maps drawn
from its table, how it runs, how the findings read its units, and its command).

Every consumer iterates :func:`methods`: the attribution stage runs them (:func:`attribution.analysis.run_attribution`),
the table registry (:mod:`pipeline.runs.tables`) registers their tables, the findings read the units of those with
:class:`UnitFacts` (:func:`pipeline.findings.bias_units.unit_methods`; ``causal`` ones decide "carries bias"), the
viewer's head and neuron pages and ``bias-atlas figures`` draw their maps, and ``bias-atlas --help`` lists their
commands. A new method is one record (+ its function): :func:`register_method`, as a plug-in does
(tests/test_plugins.py).

This module stays light (no torch): built-in records name their runner as ``"module:function"``, resolved on first
use; a plug-in passes the function itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import import_module

__all__ = [
    "CIRCUIT_MAX_EDGES",
    "CIRCUIT_SHARE",
    "AttributionMethod",
    "UnitFacts",
    "methods",
    "register_method",
    "unregister_method",
]

# The circuit record's fixed settings (attribution/eap_method.py), read by the report to judge its circuits
CIRCUIT_SHARE = 0.8  # a circuit carries this share of the model's bias on the held-out half
CIRCUIT_MAX_EDGES: int | None = None  # cap on the circuit's edges; None: the scan can reach every edge


@dataclass(frozen=True)
class UnitFacts:
    """How the findings read a method's per-unit rows (:mod:`pipeline.findings.bias_units`).

    Attributes:
        name: the method's name in the findings tables (``bias_units.method``).
        metric: the effect metric that carries ``p`` (tested against 0).
        rank_metric: the metric whose |value| ranks units for agreement (gradient: the importance E|dS/dg|).
        causal: an intervention (decides "carries bias") rather than an attribution.
        total: the model-row metric with the model's bias (materiality, direction), or None.
        adds_sign: +1 when an effect of the total's sign means the unit adds bias, -1 when the opposite sign does.
        where: extra column filters (ablation: single-head mode).
    """

    name: str
    metric: str
    rank_metric: str
    causal: bool
    total: str | None
    adds_sign: int = 1
    where: dict = field(default_factory=dict)


@dataclass(frozen=True)
class AttributionMethod:
    """An attribution method.

    Attributes:
        table: the run-folder table it writes (one per method).
        switch: the ``[attribution]`` setting that turns it on (``attribution.extra_methods`` names a plug-in's).
        what: one line on what a row is.
        needs_gradients: int8 models get a skipped row instead.
        main_metric: the metric the command line ranks by.
        run: the function ``(attribution.analysis.AttributionJob) -> tidy frame``, or ``"module:function"``.
        head_maps: per-head maps drawn from the table: (label, metrics accepted, the first present is drawn).
        neuron_maps: per-neuron views: (label, metric).
        unit: how the findings read its units (None: they do not).
        command: ``(name, help)`` of its ``bias-atlas`` command, or None (the built-in ones have theirs).
    """

    table: str
    switch: str
    what: str
    needs_gradients: bool
    main_metric: str
    run: Callable | str
    head_maps: tuple[tuple[str, tuple[str, ...]], ...] = ()
    neuron_maps: tuple[tuple[str, str], ...] = ()
    unit: UnitFacts | None = None
    command: tuple[str, str] | None = None

    def runner(self) -> Callable:
        """The function that runs the method on a job."""
        if callable(self.run):
            return self.run
        module, _, name = self.run.partition(":")
        return getattr(import_module(module), name)


_A = "attribution.analysis"
_REGISTRY: dict[str, AttributionMethod] = {
    m.table: m
    for m in (
        AttributionMethod(
            "head_ablation", "ablation", "single-head / layer / leave-one-in ablation effects", False, "delta_score",
            f"{_A}:_ablation",
            (("ablation: Δ bias score", ("delta_score",)), ("ablation: Δ accuracy", ("delta_accuracy",))),
            unit=UnitFacts("ablation", "delta_score", "delta_score", True, "intact_score", -1, {"mode": "single"}),
        ),
        AttributionMethod(
            "head_importance", "importance", "gradient head importance E|dL/dg|", True, "grad_importance",
            f"{_A}:_importance", (("gradient importance", ("grad_importance",)),),
            unit=UnitFacts("gradient", "grad", "grad_importance", False, None),
        ),
        AttributionMethod(
            "cumulative_ablation", "cumulative", "cumulative head-ablation curves", False, "ablated_score",
            f"{_A}:_cumulative",
        ),
        AttributionMethod(
            "head_ig", "head_ig", "integrated gradients over head gates", True, "ig", f"{_A}:_head_ig",
            (("integrated gradients", ("ig",)),), unit=UnitFacts("ig", "ig", "ig", False, "ig_total"),
        ),
        AttributionMethod(
            "neuron_ig", "neuron_ig", "integrated gradients over FFN neurons", True, "ig", f"{_A}:_neuron_ig",
            neuron_maps=(("integrated gradients", "ig"),), unit=UnitFacts("neuron_ig", "ig", "ig", False, "ig_total"),
        ),
        AttributionMethod(
            "token_ig", "token_ig", "integrated gradients over input tokens", True, "token_ig", f"{_A}:_token_ig",
        ),
        AttributionMethod(
            "atp", "atp", "attribution patching: first-order effect of every head and neuron, top ones exact", True,
            "atp_estimate", f"{_A}:_atp", (("attribution patching: estimated effect", ("atp_estimate",)),),
            (("attribution patching: estimated effect", "atp_estimate"),),
        ),
        AttributionMethod(
            "patching", "patching", "activation patching: indirect effect per head (and neuron)", False,
            "indirect_effect", f"{_A}:_patching", (("patching: indirect effect", ("indirect_effect",)),),
            (("patching: indirect effect", "indirect_effect"),),
            unit=UnitFacts("patching", "indirect_effect", "indirect_effect", True, "total_effect"),
        ),
        AttributionMethod(
            "pruning_curve", "pruning_curve",
            "bias and accuracy as heads are removed in bias, importance and random order", True, "abs_cf_gap",
            f"{_A}:_pruning_curve",
        ),
        AttributionMethod(
            "eap_edges", "eap", "edge attribution patching: every edge's effect, top edges exact", True, "eap",
            "attribution.eap_method:run_eap",
        ),
        AttributionMethod(
            "circuit", "circuit",
            "bias circuit: smallest top-EAP edge set, faithfulness curve, completeness, top edges' per-example scores",
            True, "circuit_recovered", "attribution.eap_method:run_circuit",
        ),
    )
}  # fmt: skip
_BUILT_IN = {table: m.run for table, m in _REGISTRY.items()}


def register_method(method: AttributionMethod) -> AttributionMethod:
    """Add ``method`` to the registry (a plug-in's one step); the same record twice is a no-op.

    Raises:
        ValueError: another method writes that table or uses that switch, or its unit name is taken.
    """
    for other in _REGISTRY.values():
        if other == method:
            return method
        if method.table == other.table or method.switch == other.switch:
            raise ValueError(f"an attribution method with table {other.table!r} / switch {other.switch!r} exists.")
        if method.unit and other.unit and method.unit.name == other.unit.name:
            raise ValueError(f"the findings already read a method named {other.unit.name!r}; choose another name.")
    _REGISTRY[method.table] = method
    return method


def unregister_method(method: AttributionMethod) -> None:
    """Remove a plug-in's record again (tests; a built-in method stays)."""
    if _REGISTRY.get(method.table) == method and method.run != _BUILT_IN.get(method.table):
        del _REGISTRY[method.table]


def methods() -> tuple[AttributionMethod, ...]:
    """Every registered method, in the order they run (built-in ones first, then plug-ins)."""
    return tuple(_REGISTRY.values())
