"""The base of every settings section: frozen pydantic models that refuse unknown keys, and shared validators.

Each concept owns its settings next to its code (``pipeline.train.FinetuneSection``, ``pipeline.compress.config``,
``pipeline.metrics.config``, ``attribution.config``, ``probes.config``); the run config
(:mod:`pipeline.runs.config`) composes them, so each field is defined once and a typo anywhere fails on load.
Numbers are finite: ``inf`` and ``nan`` are refused everywhere (``allow_inf_nan=False``).
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

__all__ = ["FT_ORDERS", "MIN_BOOT", "Order", "Settings", "check_orders", "distinct", "resamples", "unit_interval"]

Order = Literal["none", "before", "after", "both"]  # fine-tuning orders (docs/DESIGN.md section 6)
FT_ORDERS: tuple[str, ...] = get_args(Order)


class Settings(BaseModel):
    """Frozen, unknown keys forbidden, finite numbers only; build a changed copy with ``model_copy(update=...)``."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False, strict=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        """``epochs = true`` is a typo, not 1: a boolean is refused where the field is not a boolean."""
        if isinstance(value, bool):
            annotation = cls.model_fields[info.field_name].annotation
            if annotation is not bool and bool not in get_args(annotation) and annotation != "bool":
                raise ValueError(f"{value!r} is a boolean; give a number (or the value the key takes)")
        return value


MIN_BOOT = 100  # fewer bootstrap resamples give percentile intervals so coarse they can miss their own estimate


def resamples(value: int, what: str, *, zero: str | None = None) -> int:
    """``value`` when it is at least :data:`MIN_BOOT` (or 0 where ``zero`` says what 0 means), else a ValueError with
    the fix."""
    if value >= MIN_BOOT or (zero is not None and value == 0):
        return value
    allowed = f"0 ({zero}) or " if zero is not None else ""
    raise ValueError(
        f"{what} = {value}: intervals from fewer than {MIN_BOOT} resamples are too coarse (an estimate "
        f"can fall outside its own interval); use {allowed}at least {MIN_BOOT}, e.g. 1000"
    )


def distinct(values: tuple, what: str) -> tuple:
    """``values`` unchanged, or a ValueError naming the duplicate."""
    if len(set(values)) != len(values):
        raise ValueError(f"{what} lists a value twice ({list(values)}); list each value once")
    return values


def unit_interval(values: tuple[float, ...], what: str) -> tuple[float, ...]:
    """``values`` unchanged when each is in [0, 1), else a ValueError naming the first bad one."""
    for i, v in enumerate(values):
        if not 0.0 <= v < 1.0:
            raise ValueError(f"{what}[{i}] = {v!r} is outside [0, 1); give a fraction such as 0.3")
    return values


def check_orders(orders: tuple[str, ...], allowed: tuple[str, ...], why: str) -> tuple[str, ...]:
    """``orders`` unchanged when distinct, non-empty and all in ``allowed``."""
    distinct(orders, "orders")
    if not orders:
        raise ValueError(f"orders is empty, which would drop the method silently; give some of {list(allowed)}")
    bad = [o for o in orders if o not in allowed]
    if bad:
        raise ValueError(f"orders {bad} are not possible here ({why}); allowed: {list(allowed)}")
    return orders
