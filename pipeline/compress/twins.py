"""The unmitigated twin of each remedy variant (the records' :attr:`pipeline.compress.registry.Remedy.twin`): the
same recipe without that one remedy, which the findings compare it with (:func:`pipeline.variants.mitigation_twins`).

Each function takes the variant, the parts of its method name (split on ``_``) and the index of the remedy's part,
and returns twin names in order of preference (empty: no twin).
"""

from __future__ import annotations

from dataclasses import replace

from pipeline.variants import Variant

__all__ = ["biasprune_twin", "eo_twin", "erase_twin", "fairdistil_twin", "mixup_twin", "refit_twin"]


def mixup_twin(v: Variant, parts: list[str], i: int) -> list[str]:
    """``distil_mixup`` -> ``distil`` (mixup is an option of a method, never a method alone)."""
    return [replace(v, method="_".join(parts[:i] + parts[i + 1 :])).name] if i > 0 else []


def biasprune_twin(v: Variant, parts: list[str], i: int) -> list[str]:
    """``biasprune<size>`` -> ``prune<size>``: importance pruning of as many heads."""
    return [replace(v, method="_".join([*parts[:i], parts[i].removeprefix("bias"), *parts[i + 1 :]])).name]


def erase_twin(v: Variant, parts: list[str], i: int) -> list[str]:
    """``<base>_erase-ft_<o>`` -> ``<base>-ft_<o>``; ``erase-ft_none`` -> the pretrained teacher (``teacher-mlm``
    when the run has one, else ``teacher``); ``erase-ft_<o>`` -> ``teacher-ft``."""
    rest = parts[:i] + parts[i + 1 :]
    if rest:
        return [replace(v, method="_".join(rest)).name]
    if v.order != "none":
        return [Variant("teacher", "ft", v.training_set).name]
    return [Variant("teacher-mlm", "none", v.training_set).name, "teacher"]


def refit_twin(v: Variant, parts: list[str], i: int) -> list[str]:
    """``eoreg`` -> ``refit`` (``distil_eoreg`` -> ``distil_refit``): the same further fine-tuning
    with the plain loss."""
    return [replace(v, method="_".join([*parts[:i], "refit", *parts[i + 1 :]])).name]


def fairdistil_twin(v: Variant, parts: list[str], i: int) -> list[str]:
    """``fairdistil`` -> ``distil``: plain distillation with the same settings."""
    return [replace(v, method="_".join([*parts[:i], "distil", *parts[i + 1 :]])).name]


def eo_twin(v: Variant, parts: list[str], i: int) -> list[str]:
    """``<base>_eo-ft_<o>`` -> ``<base>-ft_<o>``, ``eo-ft_<o>`` -> ``teacher-ft``: the model the rule post-processes
    (the part must be ``eo`` itself, so ``eoreg`` is not read as it)."""
    return erase_twin(v, parts, i) if parts[i] == "eo" else []
