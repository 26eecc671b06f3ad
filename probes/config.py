"""Settings of the probes stage (``[probes]`` of a run; docs/PROBES.md)."""

from __future__ import annotations

from typing import get_args

from pydantic import Field, PositiveFloat, StrictInt, field_validator, model_validator

from pipeline.anatomy import Pooling
from pipeline.erasure_hooks import FitOn  # what a LEACE eraser is fitted on
from pipeline.settings import Settings, distinct, resamples

__all__ = ["DEFAULT_CS", "FIT_ON", "POOLINGS", "FitOn", "ProbeConfig"]

POOLINGS: tuple[str, ...] = get_args(Pooling)
FIT_ON: tuple[str, ...] = get_args(FitOn)
DEFAULT_CS: tuple[float, ...] = (0.001, 0.01, 0.1, 1.0)  # inverse regularisation strengths a probe tries


class ProbeConfig(Settings):
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
    fit_on: FitOn = "cls"  # what the eraser is fitted on: [CLS], the vector the classifier (and the probe) reads
    n_boot: int = Field(default=1000, ge=0)  # bootstrap resamples behind the probe intervals and erasure task rows
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
        return distinct(v, "poolings")

    @model_validator(mode="after")
    def _fits_folds(self) -> ProbeConfig:
        if self.max_examples is not None and self.max_examples < 2 * self.n_folds:
            raise ValueError(
                f"max_examples = {self.max_examples} is too small for n_folds = {self.n_folds}: give "
                f"None or at least {2 * self.n_folds} (two per fold)"
            )
        if self.min_class_size < self.n_folds:
            raise ValueError(
                f"min_class_size = {self.min_class_size} is below n_folds = {self.n_folds}; every "
                "class needs at least one example per fold"
            )
        return self

    @field_validator("n_boot")
    @classmethod
    def _enough_resamples(cls, v: int) -> int:
        return resamples(v, "n_boot")
