"""The bias-metric registry: one record per family of bias metrics, carrying every fact the rest of the tool needs
(what it needs from a model, its headline metrics, the published procedure it follows, how it runs, which reference a
change is measured against, and the label and fair value of each metric it reports).

Every consumer iterates :data:`FAMILIES`: the ``bias_metrics`` stage and ``bias-atlas metrics`` run them, the
config validates ``[metrics] metrics`` against them, the findings compare intrinsic families with the pretrained
teacher (:func:`intrinsic_prefixes`), the figures and the viewer read labels and fair values (:func:`metric_facts`).
A new family is one record (+ its function): :func:`register_family`, as a plug-in does (tests/test_plugins.py).

This module stays light (no torch): the built-in records name their runner as ``"module:function"``, resolved on
first use; a plug-in may pass the function itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import import_module
from typing import Literal

from pipeline.data.crows_pairs import CROWS_BIAS_TYPES

__all__ = [
    "BUILT_IN",
    "FAMILIES",
    "MetricFacts",
    "MetricFamilySpec",
    "intrinsic_prefixes",
    "metric_facts",
    "register_family",
    "unregister_family",
]


@dataclass(frozen=True)
class MetricFacts:
    """How a reader shows one metric: its label, the value of a fair model (None when there is none), how to read the
    axis, and whether a model has one value of it (False: one per test or subset, e.g. SEAT's tests)."""

    label: str
    fair: float | None = None
    reading: str = ""
    per_model: bool = True


@dataclass(frozen=True)
class MetricFamilySpec:
    """A family of bias metrics.

    Attributes:
        name: the family's name in ``[metrics] metrics`` and ``bias-atlas metrics NAME``.
        needs: ``classifier`` (a trained classifier head and task data), ``mlm`` (a trained MLM head) or
            ``encoder`` (any model).
        headline: the metrics a skip leaves (NaN rows with the reason).
        procedure: the published procedure it follows (docs/METRICS.md).
        run: the function ``(pipeline.metrics.evaluate.Inputs) -> tidy frame``, or ``"module:function"``.
        prefix: the prefix every metric name of an intrinsic family starts with.
        facts: label and fair value of the metrics it reports.
        files: the benchmark files it reads, ``(BiasMetricsConfig) -> paths under the data root`` (or
            ``"module:function"``; None: none), hashed into the cache keys so that changed data recomputes it.
        subsets: the benchmark's bias types it can report as subsets besides ``all`` (``bias-atlas metrics
            --bias-type``; the bias axes of :mod:`pipeline.axes` name theirs); empty: none to choose.
    """

    name: str
    needs: Literal["classifier", "mlm", "encoder"]
    headline: tuple[str, ...]
    procedure: str
    run: Callable | str
    prefix: str = ""
    facts: dict[str, MetricFacts] = field(default_factory=dict)
    files: Callable | str | None = None
    subsets: tuple[str, ...] = ()

    @property
    def intrinsic(self) -> bool:
        """Measured on the representations or the MLM head, not on the task: compared with the pretrained teacher."""
        return self.needs != "classifier"

    @property
    def reference(self) -> str:
        """The model a change of this family's metrics is measured against."""
        return "the pretrained teacher" if self.intrinsic else "the fine-tuned teacher on the same training set"

    def runner(self) -> Callable:
        """The function that computes the family's rows."""
        return _resolve(self.run)

    def file_names(self, cfg) -> tuple[str, ...]:
        """The benchmark files it reads under ``cfg`` (paths under the data root)."""
        return () if self.files is None else tuple(_resolve(self.files)(cfg))


def _resolve(target: Callable | str) -> Callable:
    if callable(target):
        return target
    module, _, name = target.partition(":")
    return getattr(import_module(module), name)


_E = "pipeline.metrics.evaluate"
_F = "pipeline.metrics.benchmark_files"
_FAIR_LOWER = "0 = fair, lower is fairer"
FAMILIES: dict[str, MetricFamilySpec] = {
    f.name: f
    for f in (
        MetricFamilySpec(
            "extrinsic", "classifier", ("gap_rms", "accuracy"), "TPR gaps and GAP_RMS (De-Arteaga et al. 2019)",
            f"{_E}:_extrinsic",
            facts={"gap_rms": MetricFacts("GAP_RMS (TPR gap)", 0.0, _FAIR_LOWER),
                   "accuracy_gap": MetricFacts("accuracy gap (F - M)", 0.0, "0 = fair"),
                   "accuracy": MetricFacts("accuracy"), "macro_f1": MetricFacts("macro-F1")},
        ),
        MetricFamilySpec(
            "counterfactual", "classifier", ("cf_prob_gap", "cf_flip_rate"),
            "counterfactual gap and flip rate on gender-swapped twins (Garg et al. 2019)", f"{_E}:_counterfactual", files=f"{_F}:counterfactual_files",
            facts={"cf_prob_gap": MetricFacts("counterfactual gap", 0.0, "0 = fair"),
                   "cf_skew_gap": MetricFacts("skew-oriented counterfactual gap", 0.0, "0 = fair, + = follows the skew"),
                   "cf_prob_abs_change": MetricFacts("|counterfactual change|", 0.0, _FAIR_LOWER),
                   "cf_flip_rate": MetricFacts("counterfactual flip rate", 0.0, _FAIR_LOWER),
                   "cf_flip_excess": MetricFacts("flip rate over the neutral-edit control", 0.0, _FAIR_LOWER)},
        ),
        MetricFamilySpec(
            "seat", "encoder", ("seat_effect_size",), "SEAT effect size and permutation p (May et al. 2019; sent-bias)",
            f"{_E}:_seat", files=f"{_F}:seat_files", prefix="seat_",
            facts={"seat_effect_size": MetricFacts("SEAT effect size d", 0.0, "0 = no association", per_model=False)},
        ),
        MetricFamilySpec(
            "crows", "mlm", ("crows_stereo_pct",),
            "CrowS-Pairs pseudo-log-likelihood, nyu-mll metric.py (Nangia et al. 2020)", f"{_E}:_crows", files=f"{_F}:crows_files",
            prefix="crows_", facts={"crows_stereo_pct": MetricFacts("CrowS-Pairs stereotype %", 50.0, "50 = fair")},
            subsets=CROWS_BIAS_TYPES,
        ),
        MetricFamilySpec(
            "stereoset", "mlm", ("stereoset_ss", "stereoset_lms", "stereoset_icat"),
            "StereoSet intrasentence, the authors' scoring as bias-bench runs it (Nadeem et al. 2021)",
            f"{_E}:_stereoset", files=f"{_F}:stereoset_files", prefix="stereoset_",
            facts={"stereoset_ss": MetricFacts("StereoSet SS", 50.0, "50 = fair"),
                   "stereoset_icat": MetricFacts("StereoSet ICAT", 100.0, "100 = ideal, higher is better")},
        ),
        MetricFamilySpec(
            "winobias", "mlm", ("winobias_stereotype", "winobias_skew"),
            "WinoBias masked pronoun, per type (Zhao et al. 2018; de Vassimon Manela et al. 2021)",
            f"{_E}:_winobias", files=f"{_F}:winobias_files", prefix="winobias_",
        ),
        MetricFamilySpec(
            "winogender", "mlm", ("winogender_male_pref_pct", "winogender_bls_r"),
            "Winogender masked pronoun preference (Rudinger et al. 2018)", f"{_E}:_winogender", files=f"{_F}:winogender_files", prefix="winogender_",
        ),
    )
}  # fmt: skip
BUILT_IN: tuple[str, ...] = tuple(FAMILIES)  # the default of ``[metrics] metrics``


def register_family(spec: MetricFamilySpec) -> MetricFamilySpec:
    """Add ``spec`` to :data:`FAMILIES` (a plug-in's one step); the same record twice is a no-op.

    Raises:
        ValueError: another family has that name, or an intrinsic family names no metric prefix.
    """
    if spec.intrinsic and not spec.prefix:
        raise ValueError(f"metric family {spec.name!r} needs {spec.needs!r}: give the prefix of its metric names.")
    if FAMILIES.get(spec.name, spec) != spec:
        raise ValueError(f"a metric family named {spec.name!r} is already registered; choose another name.")
    FAMILIES[spec.name] = spec
    return spec


def unregister_family(spec: MetricFamilySpec) -> None:
    """Remove a plug-in's record again (tests; a built-in family stays)."""
    if spec.name not in BUILT_IN and FAMILIES.get(spec.name) == spec:
        del FAMILIES[spec.name]


def intrinsic_prefixes() -> tuple[str, ...]:
    """Metric-name prefixes of the intrinsic families (compared with the pretrained teacher)."""
    return tuple(f.prefix for f in FAMILIES.values() if f.intrinsic)


def metric_facts(metric: str) -> MetricFacts | None:
    """The label and fair value of a bias metric, from the family that reports it (None when none does)."""
    for family in FAMILIES.values():
        if metric in family.facts:
            return family.facts[metric]
    return None
