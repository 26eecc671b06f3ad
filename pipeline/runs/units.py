"""Helpers shared by the analysis stages: one cached unit per variant, the variants a section chooses.

Each analysis stage (:mod:`pipeline.runs.stage_bias_metrics`, :mod:`pipeline.runs.stage_attribution`,
:mod:`pipeline.runs.stage_probes`) loops over the exposed variants (:func:`~pipeline.runs.plan.exposed_steps`),
reloads each from its folder and runs one cached unit per variant, keyed by the model folder's hash, the data
fingerprint and the stage's settings, so a killed run resumes where it stopped and a changed setting recomputes
only its stage.

An analysis that cannot run on one variant does not end the run: an expected data or capability error
(:data:`EXPECTED_ERRORS`: ``ValueError`` and its kin, e.g. probes on a split where no class has both genders, or
``GateIndependentScoreError``) becomes one row in the stage's main table (value NaN, the error in ``skipped``,
``metric`` = the stage) and an entry of the manifest's ``skipped`` list, and the next variant runs. Programming
errors (``TypeError``, ``IndexError``...), schema and config errors still raise.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import pandas as pd
from tqdm.auto import tqdm

from pipeline.runs.config import ConfigError, RunConfig
from pipeline.runs.plan import Step, exposed_steps
from pipeline.runs.stages import StageContext, concat_tables
from pipeline.schema import COLUMNS, SchemaError, tidy

__all__ = ["EXPECTED_ERRORS", "Tables", "check_analysis_variants", "chosen_steps", "per_variant", "with_defaults"]

Tables = dict[str, pd.DataFrame]
EXPECTED_ERRORS: tuple[type[Exception], ...] = (ValueError,)  # incl. LinAlgError, GateIndependentScoreError
_NEVER_SKIPPED: tuple[type[Exception], ...] = (SchemaError, ConfigError)  # ValueErrors that mean a bug or bad config
_SKIPPED_UNIT = "skipped_unit"  # the cached table of a unit that could not run


def check_analysis_variants(cfg: RunConfig, variants: Sequence[str]) -> None:
    """Raise :class:`ConfigError` when ``attribution.variants`` or ``probes.variants`` names an unplanned variant."""
    for section in (a for a in ("attribution", "probes") if a in cfg.run.analyses):
        unknown = sorted(set(getattr(cfg, section).variants) - set(variants))
        if unknown:
            raise ConfigError(
                f"{section}.variants names {unknown}, which the run does not build; planned variants: "
                f"{', '.join(sorted(set(variants)))}."
            )


def with_defaults(section, **defaults):
    """The section with ``defaults`` filled in where the config file left the key unset."""
    return section.model_copy(update={k: v for k, v in defaults.items() if k not in section.model_fields_set})


def _guarded(ctx: StageContext, step: Step, analyse: Callable[[Step], Tables]) -> Tables:
    """``analyse(step)``, or a one-row skip table when it raises an expected error."""
    try:
        return analyse(step)
    except EXPECTED_ERRORS as err:
        if isinstance(err, _NEVER_SKIPPED):
            raise
        reason = f"{type(err).__name__}: {err}"
        row = {"unit": "model", "metric": ctx.stage, "value": float("nan"), "skipped": reason}
        return {_SKIPPED_UNIT: tidy([row], variant=step.variant, seed=step.seed)}


def per_variant(
    ctx: StageContext,
    steps: list[Step],
    desc: str,
    settings,
    analyse: Callable[[Step], Tables],
    *,
    skip_table: str,
    reads: dict[str, str] | None = None,
) -> Tables:
    """Run ``analyse`` once per step as a cached unit; concatenate the tables of all units.

    ``reads`` (content hashes of the benchmark files the analysis reads) enters every unit's key, so an edited
    benchmark file recomputes the units that read it.

    A unit that raises one of :data:`EXPECTED_ERRORS` gives a skip row in ``skip_table`` (the stage's main table)
    and an entry in the manifest's ``skipped`` list (on every run, cached or not); the other units go on.
    """
    found: dict[str, list[pd.DataFrame]] = {}
    for step in tqdm(steps, desc=desc, disable=not ctx.is_main):
        parts = {
            "model": ctx.unit_hash("build", step.key),
            "data": ctx.run.fingerprint,
            "settings": settings.model_dump(mode="json"),
        }
        if reads:
            parts["reads"] = reads
        tables = ctx.unit(step.key, parts, lambda step=step: _guarded(ctx, step, analyse))
        if _SKIPPED_UNIT in tables:
            skipped = tables.pop(_SKIPPED_UNIT)
            ctx.skip(str(skipped["skipped"].iloc[0]), variant=step.variant, seed=step.seed)
            tables[skip_table] = skipped
        for name, frame in tables.items():
            found.setdefault(name, []).append(frame)
    return {name: _fill_text(concat_tables(frames)) for name, frames in found.items()}


def _text_or_missing(value: object) -> bool:
    return isinstance(value, str) or value is None or (isinstance(value, float) and math.isnan(value))


def _fill_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Extra text columns (``skipped``, ``pooling``...) hold ``""`` where a unit's rows lacked them, not NaN."""
    for column in frame.columns[len(COLUMNS) :]:
        values = frame[column]
        if pd.api.types.is_string_dtype(values) or (values.dtype == object and values.map(_text_or_missing).all()):
            frame[column] = frame[column].fillna("")
    return frame


def chosen_steps(ctx: StageContext, variants: Sequence[str]) -> list[Step]:
    steps = exposed_steps(ctx)
    return [s for s in steps if s.variant in variants] if variants else steps
