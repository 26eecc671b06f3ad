"""Variant names: the one grammar that names a model variant by its recipe, and parses the name back.

A variant is (method, fine-tuning order, training set), docs/DESIGN.md section 5; :class:`Variant` builds the name and
:meth:`Variant.parse` reads it, so the plan that writes names (:mod:`pipeline.runs.plan`) and every reader (the
viewer, figures, the report) agree by construction; a test round-trips every name the paper and demo configs plan.

==========================  ===================================================================================
``teacher``                 the pretrained teacher (order ``none``)
``teacher-ft``              the teacher fine-tuned on the task (order ``ft``)
``teacher-mlm``             the teacher after masked-LM domain fine-tuning (order ``none``)
``<method>-ft_<order>``     a compression method in one of the orders none | before | after | both
``...@<set>``               trained on training set ``<set>`` (absent for the original training set)
``<run>/...``               a run prefix, added when the viewer combines several runs (ignored by the parser)
==========================  ===================================================================================

Methods: ``distil``, ``distil_mixup``, ``tiny``, ``prune<pct>`` (heads removed), ``sparse<pct>`` (weights zeroed),
``int8``, ``hub-<name>`` (a ready-made student), and the mitigations ``biasprune<k>h`` / ``biasprune<pct>``
(bias-aware head pruning; its importance-pruned twins are ``prune<k>h`` / ``prune<pct>``) and ``erase`` (LEACE
concept erasure); a mitigation applied on another method's variant is ``<method>_<mitigation>``
(``distil_erase-ft_before``). The families' display order and the remedies come from the compression-method
records (:mod:`pipeline.compress.registry`); :func:`mitigation_twins` gives the unmitigated twin each remedy variant
is compared with.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from pipeline.compress.registry import method_families, remedies, resolve

__all__ = [
    "ORDER_RANK",
    "TRAINING_SET_REMEDIES",
    "Variant",
    "mitigation_twins",
    "parse_variant",
    "variant_sort_key",
]

# Remedies that are training sets (docs/DESIGN.md section 9); the method remedies are records' (mixup, biasprune, ...)
TRAINING_SET_REMEDIES: tuple[str, ...] = ("cda", "balanced", "reweighed")
ORDER_RANK: tuple[str, ...] = ("none", "before", "after", "both", "ft")  # "ft": the fine-tuned teacher itself
_COMPRESSED = r"hub-[A-Za-z0-9._-]+?|(?!teacher)[a-z][a-z0-9_]*?(?:\d+(?:\.\d+)?)?"
_NAME = re.compile(
    r"^(?:[^/]+/)?"  # run prefix when several runs are combined
    rf"(?:(?P<teacher>teacher(?:-mlm)?)(?P<ft>-ft)?|(?P<method>{_COMPRESSED})-ft_(?P<order>none|before|after|both))"
    r"(?:@(?P<set>[A-Za-z0-9_]+))?$"
)


@dataclass(frozen=True)
class Variant:
    """A model variant's identity.

    Attributes:
        method: ``teacher``, ``teacher-mlm``, ``hub-<name>`` or a compression method name (``prune30``).
        order: ``none`` | ``before`` | ``after`` | ``both``, or ``ft`` for the fine-tuned teacher.
        training_set: the training set it learnt from when not the original one (``balanced``), else None.
    """

    method: str
    order: str
    training_set: str | None = None

    @property
    def name(self) -> str:
        if self.method.startswith("teacher"):
            base = f"{self.method}-ft" if self.order == "ft" else self.method
        else:
            base = f"{self.method}-ft_{self.order}"
        return f"{base}@{self.training_set}" if self.training_set else base

    @property
    def family(self) -> str:
        """The method without its strength and variant suffix (``prune30`` -> prune, ``distil_mixup`` -> distil)."""
        known = [f for f in method_families() if self.method.startswith(f)]
        return known[0] if known else re.sub(r"[\d.]+$", "", self.method).split("_")[0]

    def on(self, training_set: str | None) -> Variant:
        """The same recipe trained on ``training_set`` (None or ``original``: the original set)."""
        return replace(self, training_set=None if training_set in (None, "original") else training_set)

    @classmethod
    def parse(cls, name: str) -> Variant:
        """Read a variant name (a run prefix ``<run>/`` is ignored).

        Raises:
            ValueError: the name follows none of the patterns of the module docstring.
        """
        match = _NAME.match(str(name))
        if match is None:
            raise ValueError(
                f"variant {name!r} does not follow the recipe naming: expected 'teacher', 'teacher-ft', 'teacher-mlm' "
                "or '<method>-ft_<order>' with method in distil|distil_mixup|tiny|prune<NN>|sparse<NN>|int8|hub-<name> "
                "and order in none|before|after|both (optionally '@<training set>'). Rename the variant folder."
            )
        if match["teacher"]:
            return cls(match["teacher"], "ft" if match["ft"] else "none", match["set"])
        return cls(match["method"], match["order"], match["set"])


def parse_variant(name: str) -> tuple[str, str]:
    """(method, order) of a variant name; see :meth:`Variant.parse`."""
    variant = Variant.parse(name)
    return variant.method, variant.order


def variant_sort_key(name: str) -> tuple:
    """Teacher first, then by method family, method, order and training set; unparseable names last."""
    try:
        v = Variant.parse(name)
    except ValueError:
        return (len(method_families()) + 1, name, 0, "", name)
    families = method_families()
    rank = families.index(v.family) if v.family in families else len(families)
    return (rank, v.method, ORDER_RANK.index(v.order), v.training_set or "", name)


def mitigation_twins(name: str) -> list[tuple[str, list[str]]]:
    """``(mitigation, twin names in order of preference)`` for each remedy in the recipe of ``name``: the same
    recipe without that one remedy (same compression, order and training set otherwise).

    ``X@cda`` / ``X@balanced`` / ``X@reweighed`` -> ``X``; a method remedy's twin is its record's rule
    (:mod:`pipeline.compress.twins`: ``distil_mixup`` -> ``distil``, ``biasprune<size>`` -> ``prune<size>``,
    ``<base>_erase`` -> ``<base>``, ``erase`` -> the teacher). Unparseable names and unmitigated variants give ``[]``.
    """
    try:
        v = Variant.parse(name)
    except ValueError:
        return []
    out: list[tuple[str, list[str]]] = []
    if not (v.method.startswith("hub-") or v.method.startswith("teacher")):
        parts = v.method.split("_")
        for i, part in enumerate(parts):
            for remedy in remedies():
                twins = resolve(remedy.twin)(v, parts, i) if part.startswith(remedy.part) else []
                if twins:
                    out.append((remedy.name, twins))
    if v.training_set in TRAINING_SET_REMEDIES:
        out.append((v.training_set, [replace(v, training_set=None).name]))
    return out
