"""Settings of the bias metrics of every variant (``[metrics]`` of a run; docs/METRICS.md)."""

from __future__ import annotations

import difflib
from typing import Literal

from pydantic import Field, field_validator

from pipeline.metrics.registry import BUILT_IN, FAMILIES
from pipeline.metrics.seat import SEAT_POOLINGS, SeatPooling
from pipeline.settings import Settings, distinct, resamples

__all__ = ["METRIC_FAMILIES", "POOLINGS", "BiasMetricsConfig"]

METRIC_FAMILIES: tuple[str, ...] = BUILT_IN  # the built-in families (pipeline.metrics.registry), the default
POOLINGS: tuple[str, ...] = SEAT_POOLINGS


class BiasMetricsConfig(Settings):
    """Settings of the bias metrics of every variant (docs/DESIGN.md section 6; docs/METRICS.md).

    Attributes:
        metrics: Families to run: names of :data:`pipeline.metrics.registry.FAMILIES` (default the built-in ones).
        n_boot: Bootstrap resamples per aggregate; 0 leaves the intervals NaN.
        seed: Seed of bootstraps, SEAT permutation sampling and ``max_examples`` draws (not the model's seed).
        max_examples: Per benchmark, score at most this many items (a seeded draw, the same for every variant);
            None scores everything. The task test set is never subsampled.
        poolings: SEAT poolings: ``mean`` (as bias-bench), ``first`` (sent-bias's first word piece), ``cls``.
        seat_form: SEAT tests in ``word`` form, ``sentence`` form or ``both`` (6 + 6 gender tests).
        seat_layer: Hidden state SEAT reads: -1 the last block, 0 the embeddings.
        seat_n_samples: Random partitions for a SEAT p-value when exact enumeration is too large.
        winobias_split: WinoBias split(s): ``dev``, ``test`` or ``both``; both sentence types are used.
        stereoset_scorings: ``official`` (the StereoSet authors' scoring, comparable with published tables) and/or
            ``logprob`` (this tool's earlier variant, reported under ``stereoset_*_logprob``).
        winobias_giveaways: Templates whose second pronoun gives the answer away: dropped as the authors did
            (``authors``), all of them dropped (``all``) or kept (``keep``, metric names get a suffix).
        winobias_anti: Anti-stereotypical set as the authors scored it (``flip`` the pro sentence's gold) or the
            anti file's own sentences (``file``).
        winobias_by_type: Report type 1 and type 2 separately (published), or pooled.
        crows_ties: CrowS-Pairs ties as nyu-mll metric.py (``official``: neutral, scores rounded to 3 decimals) or
            ``strict`` (the earlier variant, under ``crows_*_strict``).
        crows_bias_types: CrowS-Pairs bias types reported as subsets besides ``all`` (default ``gender``; any of
            the family record's ``subsets``, e.g. ``race-color``, ``religion``).
        mlm_head_check: An MLM head that does not beat the unigram baseline of :mod:`pipeline.metrics.mlm_check`
            gets its benchmarks skipped (``require``) or scored anyway with the check's numbers in the rows
            (``report``: e.g. to study what an untrained head gives).
        batch_size: Texts (or masked rows) per forward pass.
        max_length: Token limit for classifier inputs.
        data_root: Folder of the shared benchmark data; None uses :func:`pipeline.data.data_root` (a pipeline run
            fills it from ``run.data_root``).
    """

    metrics: tuple[str, ...] = Field(default=METRIC_FAMILIES, min_length=1)
    n_boot: int = Field(default=1000, ge=0)
    seed: int = Field(default=0, ge=0)
    max_examples: int | None = Field(default=None, ge=1)
    poolings: tuple[SeatPooling, ...] = Field(default=("cls", "mean"), min_length=1)
    seat_form: Literal["word", "sentence", "both"] = "both"
    seat_layer: int = -1
    seat_n_samples: int = Field(default=100_000, ge=1)
    winobias_split: Literal["dev", "test", "both"] = "test"
    stereoset_scorings: tuple[Literal["official", "logprob"], ...] = Field(default=("official",), min_length=1)
    winobias_giveaways: Literal["authors", "all", "keep"] = "authors"
    winobias_anti: Literal["flip", "file"] = "flip"
    winobias_by_type: bool = True
    crows_ties: Literal["official", "strict"] = "official"
    crows_bias_types: tuple[str, ...] = Field(default=("gender",), min_length=1)
    mlm_head_check: Literal["require", "report"] = "require"
    batch_size: int = Field(default=32, ge=1)
    max_length: int = Field(default=128, ge=2)
    data_root: str | None = None

    @field_validator("metrics")
    @classmethod
    def _registered(cls, v: tuple) -> tuple:
        for name in v:
            if name not in FAMILIES:
                close = difflib.get_close_matches(name, FAMILIES, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(f"unknown metric family {name!r}{hint}; registered: {', '.join(FAMILIES)} (a plug-in "
                                 "adds one with pipeline.metrics.registry.register_family)")  # fmt: skip
        return v

    @field_validator("crows_bias_types")
    @classmethod
    def _crows_subset(cls, v: tuple) -> tuple:
        known = FAMILIES["crows"].subsets
        unknown = [t for t in v if t not in known]
        if unknown:
            raise ValueError(f"unknown CrowS-Pairs bias type(s) {unknown}; choose from {', '.join(known)}")
        return v

    @field_validator("metrics", "poolings", "stereoset_scorings", "crows_bias_types")
    @classmethod
    def _once(cls, v: tuple, info) -> tuple:
        return distinct(v, info.field_name)

    @field_validator("n_boot")
    @classmethod
    def _enough_resamples(cls, v: int) -> int:
        return resamples(v, "n_boot", zero="no intervals")
