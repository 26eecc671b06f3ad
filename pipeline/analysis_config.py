"""Settings of the analysis stages: ``[metrics]`` (bias metrics), ``[attribution]`` and ``[probes]``.

They live in the base floor of ``pipeline`` (DESIGN.md section 2) so that the run config validates them on load
(unknown keys are errors naming the closest key, bad values name the key and what is allowed), while
:mod:`pipeline.metrics`, :mod:`attribution` and :mod:`probes` take the same objects as their settings, so each
field is defined once. Every model is frozen; build a changed copy with ``cfg.model_copy(update={...})``.
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, StrictInt, field_validator, model_validator

__all__ = [
    "DEFAULT_CS",
    "FIT_ON",
    "METRIC_FAMILIES",
    "POOLINGS",
    "AttributionConfig",
    "BiasMetricsConfig",
    "FitOn",
    "MetricFamily",
    "Pooling",
    "ProbeConfig",
]

MetricFamily = Literal["extrinsic", "counterfactual", "seat", "crows", "stereoset", "winobias", "winogender"]
METRIC_FAMILIES: tuple[str, ...] = get_args(MetricFamily)
Pooling = Literal["cls", "mean"]
POOLINGS: tuple[str, ...] = get_args(Pooling)
FitOn = Literal["tokens", "cls", "mean"]  # what a LEACE eraser is fitted on
FIT_ON: tuple[str, ...] = get_args(FitOn)
DEFAULT_CS: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0)  # inverse regularisation strengths a probe tries


class _Settings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _distinct(values: tuple, what: str) -> tuple:
    if len(set(values)) != len(values):
        raise ValueError(f"{what} lists a value twice ({list(values)}); list each once")
    return values


class BiasMetricsConfig(_Settings):
    """Settings of the bias metrics of every variant (DESIGN.md section 6; docs/METRICS.md).

    Attributes:
        metrics: Families to run, any of :data:`METRIC_FAMILIES`.
        n_boot: Bootstrap resamples per aggregate; 0 leaves the intervals NaN.
        seed: Seed of bootstraps, SEAT permutation sampling and ``max_examples`` draws (not the model's seed).
        max_examples: Per benchmark, score at most this many items (a seeded draw, the same for every variant);
            None scores everything. The task test set is never subsampled.
        poolings: SEAT poolings, ``cls`` and/or ``mean``.
        seat_form: SEAT tests in ``word`` form, ``sentence`` form or ``both`` (6 + 6 gender tests).
        seat_layer: Hidden state SEAT reads: -1 the last block, 0 the embeddings.
        seat_n_samples: Random partitions for a SEAT p-value when exact enumeration is too large.
        winobias_split: WinoBias split(s): ``dev``, ``test`` or ``both``; both sentence types are used.
        batch_size: Texts (or masked rows) per forward pass.
        max_length: Token limit for classifier inputs.
        data_root: Folder of the shared benchmark data; None uses :func:`pipeline.data.data_root` (a pipeline run
            fills it from ``run.data_root``).
    """

    metrics: tuple[MetricFamily, ...] = Field(default=METRIC_FAMILIES, min_length=1)
    n_boot: int = Field(default=1000, ge=0)
    seed: int = Field(default=0, ge=0)
    max_examples: int | None = Field(default=None, ge=1)
    poolings: tuple[Pooling, ...] = Field(default=POOLINGS, min_length=1)
    seat_form: Literal["word", "sentence", "both"] = "both"
    seat_layer: int = -1
    seat_n_samples: int = Field(default=100_000, ge=1)
    winobias_split: Literal["dev", "test", "both"] = "test"
    batch_size: int = Field(default=32, ge=1)
    max_length: int = Field(default=128, ge=2)
    data_root: str | None = None

    @field_validator("metrics", "poolings")
    @classmethod
    def _once(cls, v: tuple, info) -> tuple:
        return _distinct(v, info.field_name)


class AttributionConfig(_Settings):
    """Settings of the attribution stage (docs/ATTRIBUTION.md).

    The defaults keep one MiniLM-sized variant to a few minutes on a CPU; raise ``n_examples`` (and
    ``cumulative_steps``) for paper runs on a GPU.
    """

    ablation: bool = True
    ablation_modes: tuple[Literal["single", "layer", "leave_one_in"], ...] = ("single", "layer")
    cumulative: bool = True  # curves ordered by gradient importance (by single-head ablation for int8 models)
    cumulative_steps: int = Field(default=13, ge=0)  # points on each curve, evenly spaced; 0 = every head count
    importance: bool = True
    head_ig: bool = True
    neuron_ig: bool = True
    token_ig: bool = True
    patching: bool = True
    patch_top_neurons: int = Field(default=0, ge=0)  # also patch the top-k neurons of neuron IG (0 = heads only)
    n_examples: int = Field(default=64, ge=0)  # examples drawn (seeded) from the data; 0 = all
    token_examples: int = Field(default=8, ge=0)  # examples explained token by token
    batch_size: int = Field(default=64, ge=1)  # rows (gate setting x example) per forward pass
    ig_steps: int = Field(default=32, ge=1)
    ig_batch_size: int = Field(default=64, ge=1)  # rows (example x integration step) per IG forward pass
    baseline: Literal["zero", "mean"] = "zero"  # what an ablated head outputs
    n_boot: int = Field(default=500, ge=0)
    seed: int = Field(default=0, ge=0)
    variants: tuple[str, ...] = ()  # in a pipeline run: the variants to attribute (empty = every variant)
    seat_test: str = "sent-weat6"  # in a pipeline run: the SEAT test explained for variants without a trained head
    compare: bool = True  # in a pipeline run: also write the ``comparison`` table across variants and seeds
    top_k: int = Field(default=10, ge=1)  # top-k overlap of head effects between seeds


class ProbeConfig(_Settings):
    """Settings of the probes stage (docs/PROBES.md).

    Layer numbers are hidden-state indices: 0 = embeddings, k = output of block k - 1; negative numbers count
    from the top (-1 = last block).
    """

    poolings: tuple[Pooling, ...] = Field(default=POOLINGS, min_length=1)
    n_folds: int = Field(default=5, ge=2)  # outer cross-validation folds behind every interval
    max_examples: int | None = 2000  # random (seeded) subsample bounding the cost; None = all
    balance_genders: bool = True  # downsample to as many women as men per class first (chance = 50%)
    heads: bool = True  # head-wise gender probes
    label: bool = True  # also probe the task label per layer
    control: bool = True  # control task for gender; word type = the task label
    mdl: bool = False  # online-code MDL of gender per layer
    erasure_layers: tuple[StrictInt, ...] = ()  # layers to erase gender at (amnesic probing); empty = none
    fit_on: FitOn = "tokens"  # what the eraser is fitted on
    n_boot: int = Field(default=1000, ge=1)  # bootstrap resamples of the task / bias rows of the erasure table
    min_class_size: int = Field(default=10, ge=1)  # label probe: classes with fewer examples are left out
    Cs: tuple[PositiveFloat, ...] = Field(default=DEFAULT_CS, min_length=1)  # strengths tried by inner CV
    inner_cv: int = Field(default=3, ge=2)
    batch_size: int = Field(default=32, ge=1)
    max_length: int = Field(default=128, ge=1)
    seed: int = Field(default=0, ge=0)
    variants: tuple[str, ...] = ()  # in a pipeline run: the variants to probe (empty = every variant)

    @field_validator("poolings")
    @classmethod
    def _once(cls, v: tuple) -> tuple:
        return _distinct(v, "poolings")

    @model_validator(mode="after")
    def _fits_folds(self) -> ProbeConfig:
        if self.max_examples is not None and self.max_examples < 2 * self.n_folds:
            raise ValueError(f"max_examples = {self.max_examples} is too small for n_folds = {self.n_folds}: give "
                             f"None or at least {2 * self.n_folds} (two per fold)")
        if self.min_class_size < self.n_folds:
            raise ValueError(f"min_class_size = {self.min_class_size} is below n_folds = {self.n_folds}; every "
                             "class needs at least one example per fold")
        return self
