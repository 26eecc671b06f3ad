"""The table registry: one record per table a run writes (name, the stage that writes it, what it holds, its
head/neuron maps with their labels); the attribution tables come from the method registry
(:func:`pipeline.method_registry.methods`, plug-ins included, read when asked). The run refuses to write a table that is not
here; the run-folder reader's "missing" messages, the figures and the viewer's head and neuron pages iterate it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from attribution.config import EXAMPLES_TABLE, AttributionConfig
from pipeline.method_registry import methods

__all__ = ["TABLES", "TableSpec", "head_maps", "missing_message", "neuron_maps"]


@dataclass(frozen=True)
class TableSpec:
    """A table of the run folder.

    Attributes:
        name: file stem under ``tables/``.
        stage: the stage that writes it (``run.analyses`` names the analysis ones).
        what: one line on what a row is.
        section: the config switch that turns it on, for "missing" messages.
        head_maps: per-head maps drawn from it: (label, metrics accepted, the first present is drawn).
        neuron_maps: per-neuron views: (label, metric).
    """

    name: str
    stage: str
    what: str
    section: str = ""
    head_maps: tuple[tuple[str, tuple[str, ...]], ...] = ()
    neuron_maps: tuple[tuple[str, str], ...] = ()


ATTRIBUTION_PLACE = TableSpec("", "attribution", "")  # where the attribution methods' tables go, in run order

_RECORDS = (
    TableSpec("training", "build", "loss, steps, seconds and dev accuracy of each build step"),
    TableSpec("build_predictions", "build", "test predictions of each model right after it was built"),
    TableSpec("task_metrics", "task_metrics", "accuracy, macro-F1, recall per class, size and latency per variant"),
    TableSpec("predictions", "task_metrics", "per-example test predictions of the reloaded variants"),
    TableSpec(
        "bias_metrics",
        "bias_metrics",
        "extrinsic, counterfactual and intrinsic bias metrics per variant",
        "[metrics] metrics",
    ),
    TableSpec(
        "counterfactual_examples",
        "bias_metrics",
        "per-example counterfactual gap and prediction flip of each variant (text and its gender-swapped twin)",
        "[metrics] metrics (counterfactual)",
    ),
    ATTRIBUTION_PLACE,
    TableSpec(
        EXAMPLES_TABLE,
        "attribution",
        "per-example single-head ablation effects (resampled over examples for RQ3 and RQ4)",
        "[attribution] ablation",
    ),
    TableSpec(
        "comparison",
        "attribution",
        "homogeneity, seed stability and teacher alignment of head effects",
        "[attribution] compare (needs head tables for several variants or seeds)",
    ),
    TableSpec("probes_layers", "probes", "gender / label probe accuracy per layer", "[probes]"),
    TableSpec(
        "probes_heads",
        "probes",
        "gender probe accuracy per head",
        "[probes] heads",
        (("probe accuracy", ("probe_accuracy",)),),
    ),
    TableSpec("probes_control", "probes", "control-task accuracy and selectivity per layer", "[probes] control"),
    TableSpec("probes_mdl", "probes", "online-code description length per layer", "[probes] mdl"),
    TableSpec("erasure", "probes", "LEACE erasure: probe, task and bias before and after", "[probes] erasure_layers"),
    TableSpec(
        "fitness", "findings", "accuracy vs the majority-class baseline and prediction collapse per model", "[findings]"
    ),
    TableSpec(
        "comparisons", "findings", "paired change of every bias metric, variant vs its reference (RQ1)", "[findings]"
    ),
    TableSpec(
        "bias_units",
        "findings",
        "p, q, share of the total effect and 'carries bias' per head (RQ2)",
        "[findings] (needs the attribution tables)",
    ),
    TableSpec(
        "ig_completeness",
        "findings",
        "the worst IG completeness error per table and model",
        "[findings] (needs the IG tables)",
    ),
    TableSpec(
        "concentration",
        "findings",
        "Gini and entropy of head effects, student vs teacher (RQ3)",
        "[findings] (needs head_ablation or patching)",
    ),
    TableSpec(
        "method_agreement",
        "findings",
        "rank correlation and top-k overlap between attribution methods",
        "[findings] (needs two head tables)",
    ),
    TableSpec(
        "stability",
        "findings",
        "head effects across seeds and from teacher to student (RQ4)",
        "[findings] (needs several seeds or a distilled student)",
    ),
    TableSpec(
        "encoding",
        "findings",
        "gender probes over chance, selectivity and erasure (RQ5)",
        "[findings] (needs the probe tables)",
    ),
    TableSpec(
        "mitigation",
        "findings",
        "paired change of every metric, mitigated variant vs its unmitigated twin",
        "[findings] (needs mitigated variants: training_sets cda / balanced, [compress.biasprune], "
        "[compress.erase] or distil mixup)",
    ),
    TableSpec(
        "circuit_overlap",
        "findings",
        "edge and node overlap of each student's bias circuit with the teacher's",
        '[findings] (needs the circuit tables: [attribution] extra_methods = ["eap", "circuit"])',
    ),
    TableSpec(
        "frontier",
        "findings",
        "accuracy and bias of every variant, with the Pareto front",
        "[findings] (needs the bias_metrics table)",
    ),
)


def switch_setting(switch: str) -> str:
    """The config line that turns an attribution method on: its own ``[attribution]`` flag, or (a method without
    one, e.g. ``eap`` and ``circuit``) its name in ``[attribution] extra_methods``."""
    if switch in AttributionConfig.model_fields:
        return f"[attribution] {switch}"
    return f'[attribution] extra_methods = [..., "{switch}"]'


def _records() -> tuple[TableSpec, ...]:
    attribution = tuple(
        TableSpec(m.table, "attribution", m.what, switch_setting(m.switch), m.head_maps, m.neuron_maps)
        for m in methods()
    )
    out: list[TableSpec] = []
    for spec in _RECORDS:
        out += attribution if spec is ATTRIBUTION_PLACE else (spec,)
    return tuple(out)


class _Tables(Mapping):
    """Name -> :class:`TableSpec` of every table, read from the records (and the method registry) when asked."""

    def __getitem__(self, name: str) -> TableSpec:
        for spec in _records():
            if spec.name == name:
                return spec
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return (spec.name for spec in _records())

    def __len__(self) -> int:
        return len(_records())


TABLES: Mapping[str, TableSpec] = _Tables()


def head_maps() -> tuple[tuple[str, str, tuple[str, ...]], ...]:
    """(label, table, metrics accepted) of every per-head map of every table."""
    return tuple((label, t.name, metrics) for t in _records() for label, metrics in t.head_maps)


def neuron_maps() -> tuple[tuple[str, str, str], ...]:
    """(label, table, metric) of every per-neuron view of every table."""
    return tuple((label, t.name, metric) for t in _records() for label, metric in t.neuron_maps)


def missing_message(name: str, run: str) -> str:
    """Why table ``name`` is absent from run ``run``, and the command that writes it."""
    spec = TABLES.get(name)
    if spec is None:
        return f"{name} is missing from run {run!r} (no stage of this tool writes a table of that name)."
    setting = "" if "=" in spec.section else " on"  # a flag is "on"; a list entry is spelled out
    switch = f" with {spec.section}{setting}" if spec.section else ""
    return (
        f"{name} is missing from run {run!r} (tables/{name}.parquet): it is written by the {spec.stage!r} "
        f"stage{switch}; run `bias-atlas run CONFIG` (with {spec.stage!r} in run.analyses for an analysis stage)."
    )
