"""The variant plan: which models a run builds, named by recipe, as a graph of build steps.

Every model a run makes is a *variant* named by its recipe (docs/DESIGN.md section 5), built once per seed:

==========================  ===================================================================================
``teacher``                 the pretrained teacher with a (random) classifier head; no training, first seed only
``teacher-mlm``             masked-LM domain fine-tuning on the training texts (``finetune.mlm_domain``)
``teacher-ft``              the teacher fine-tuned on the task
``<m>-ft_none``             method ``m`` applied to the pretrained teacher; no task fine-tuning anywhere
``<m>-ft_before``           method ``m`` applied to ``teacher-ft``
``<m>-ft_after``            ``<m>-ft_none`` fine-tuned on the task
``<m>-ft_both``             ``<m>-ft_before`` fine-tuned on the task again
``hub-<name>-ft_none|after``  a hub student as is, or fine-tuned on the task
==========================  ===================================================================================

with ``m`` one of ``distil``, ``distil_mixup``, ``tiny``, ``prune<pct>`` (heads removed), ``sparse<pct>``
(weights zeroed), ``int8``, and the mitigations ``biasprune<k>h`` / ``biasprune<pct>`` (bias-aware head pruning,
with its importance-pruned twins ``prune<k>h`` / ``prune<pct>``), ``erase`` (LEACE concept erasure), ``eoreg``
(a TPR-gap penalty: extra fine-tuning of the teacher compared with ``refit``, the same extra fine-tuning with the
plain loss), and ``fairdistil`` (distillation that also matches the teacher on
each text's gender-swapped twin; twin ``distil``); each method is a record of :mod:`pipeline.compress.registry`. A
mitigation
applied on another method's variant (``on``) is ``<base>_<m>-ft_<order>``, built from ``<base>-ft_<order>``
(an intermediate when the run does not evaluate that order of ``<base>``).
"Pretrained teacher" is ``teacher-mlm`` when domain fine-tuning is on. With several
training sets, variants that learnt from the training data get the suffix ``@balanced`` or ``@cda`` (none for
``original``).

Orders and what they mean when the task head is never trained: ``none`` keeps the classifier head untrained, so
its task metrics are reported but flagged (``head_trained = 0``); encoder-level analyses (SEAT, probes, MLM
metrics where an MLM head exists) are what such variants are for. Orders that cannot be built are config errors:
``prune`` needs a fine-tuned classifier for its importance scores (``before``, ``both``), ``int8`` cannot be
trained (``none``, ``before``), hub students are not compressed from this teacher (``none``, ``after``).
A variant another one needs but the config did not ask for (``distil-ft_none`` under ``distil-ft_after``) is built
as an intermediate (``exposed = False``) and is not evaluated.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from pipeline.compress.registry import fine_tune_params, is_data_free
from pipeline.models import HEAD_TRAINED_KEY, LoadedModel, load_model
from pipeline.runs.config import ConfigError, RunConfig
from pipeline.runs.stages import StageContext
from pipeline.variants import Variant

__all__ = ["HEAD_TRAINED_KEY", "Op", "Step", "exposed_steps", "format_plan", "load_variant", "plan_variants", "select"]

Op = str  # "load", "mlm", "finetune", or a compression op (its method's record, pipeline.compress.registry)


@dataclass(frozen=True)
class Step:
    """One model to build.

    Attributes:
        variant: recipe name (with ``@<training set>`` when several are configured).
        seed: training seed (data-free variants exist for the first seed only).
        op: what to do: ``load`` a model, ``mlm`` / ``finetune`` it, or compress it with a method.
        parent: ``"variant/seedK"`` of the input model, or None to start from ``source``.
        source: hub name or folder to start from when ``parent`` is None.
        params: op parameters (``fraction``, ``sparsity``, ``mixup``, ``keep_sparsity``).
        training_set: the training set the step or its inputs learnt from; None when no data was used.
        exposed: False for intermediates built only as inputs of other variants.
    """

    variant: str
    seed: int
    op: Op
    parent: str | None = None
    source: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    training_set: str | None = None
    exposed: bool = True

    @property
    def key(self) -> str:
        return f"{self.variant}/seed{self.seed}"

    @property
    def folder(self) -> str:
        """Folder of the built model, relative to the run folder."""
        return f"models/{self.variant}/seed{self.seed}"


class _Planner:
    """Accumulates steps; a name asked for twice is built once, by its first recipe (exposed if either asked)."""

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg
        self.steps: dict[str, Step] = {}
        self.multi_sets = len(cfg.task.training_sets) > 1

    def add(
        self,
        variant: Variant,
        seed: int,
        op: Op,
        parent: Step | None,
        training_set: str,
        *,
        exposed: bool,
        source: str | None = None,
        **params: Any,
    ) -> Step:
        uses = not is_data_free(op) or (parent is not None and parent.training_set is not None)
        data_set = training_set if uses else None
        name = variant.on(data_set if self.multi_sets else None).name
        step = Step(
            name,
            seed if uses else self.first,  # data-free steps are seed-independent
            op,
            parent.key if parent else None,
            source if parent is None else None,
            params,
            data_set,
            exposed,
        )
        if step.key in self.steps:  # the first recipe of a name is built (prune30 of [compress.prune] before the
            first = self.steps[step.key]  # importance twin of [compress.biasprune]); exposed if either asked
            step = Step(**{**first.__dict__, "exposed": first.exposed or exposed})
        self.steps[step.key] = step
        return step

    @property
    def first(self) -> int:
        return self.cfg.run.seeds[0]


def _method_chain(
    p: _Planner,
    name: str,
    op: Op,
    orders: Iterable[str],
    seed: int,
    ts: str,
    pretrained: Step | None,
    teacher_ft: Step,
    source: str,
    *,
    expose: bool = True,
    **params: Any,
) -> None:
    """Add ``name-ft_<order>`` for each order (and the intermediates they need); ``expose=False`` plans them as
    intermediates (inputs of a mitigation applied on them)."""
    orders = set(orders)
    if orders & {"none", "after"}:
        none = p.add(
            Variant(name, "none"),
            seed,
            op,
            pretrained,
            ts,
            exposed=expose and "none" in orders,
            source=source,
            **params,
        )
        if "after" in orders:
            p.add(Variant(name, "after"), seed, "finetune", none, ts, exposed=expose, **fine_tune_params(op))
    if orders & {"before", "both"}:
        before = p.add(
            Variant(name, "before"), seed, op, teacher_ft, ts, exposed=expose and "before" in orders, **params
        )
        if "both" in orders:
            p.add(Variant(name, "both"), seed, "finetune", before, ts, exposed=expose, **fine_tune_params(op))


@dataclass(frozen=True)
class _Roots:
    """What a method chain starts from: the pretrained and the fine-tuned teacher of one seed and training set."""

    pretrained: Step | None
    teacher_ft: Step
    source: str


def _base_step(p: _Planner, cfg: RunConfig, key: str, base: str, order: str, seed: int, ts: str, roots: _Roots) -> Step:
    """The step of ``<base>-ft_<order>``; planned as an intermediate when the run does not ask for that order.

    Raises:
        ConfigError: ``base`` is no method of the run, or cannot be built in ``order``.
    """
    wanted = Variant(base, order).on(ts if p.multi_sets else None).name
    found = p.steps.get(f"{wanted}/seed{seed}") or p.steps.get(f"{wanted}/seed{p.first}")
    if found is not None:
        return found
    methods = {
        m: (section, op, params) for _, section in cfg.compress.sections() for m, op, params in section.methods()
    }
    if base not in methods:
        raise ConfigError(
            f"compress.{key}.on = {base!r}: no method of this run is called so (its methods: "
            f"{', '.join(sorted(methods)) or 'none'}; or 'teacher'). Fix: name one of them."
        )
    section, op, params = methods[base]
    try:
        type(section).model_validate({**section.model_dump(), "orders": (order,)})
    except ValidationError as err:
        why = err.errors()[0]["msg"].removeprefix("Value error, ")
        raise ConfigError(
            f"compress.{key}.on = {base!r} with order {order!r} needs {wanted!r}, which cannot be "
            f"built: {why}. Fix: drop that order or base."
        ) from None
    _method_chain(
        p, base, op, (order,), seed, ts, roots.pretrained, roots.teacher_ft, roots.source, expose=False, **params
    )
    return p.steps.get(f"{wanted}/seed{seed}") or p.steps[f"{wanted}/seed{p.first}"]


def _on_base(
    p: _Planner,
    cfg: RunConfig,
    key: str,
    base: str,
    name: str,
    op: Op,
    orders: Iterable[str],
    seed: int,
    ts: str,
    roots: _Roots,
    **params: Any,
) -> None:
    """Add ``<base>_<name>-ft_<order>``: ``op`` applied to the variant ``<base>-ft_<order>`` (planned as an
    intermediate when the run does not evaluate it)."""
    for order in orders:
        parent = _base_step(p, cfg, key, base, order, seed, ts, roots)
        p.add(Variant(f"{base}_{name}", order), seed, op, parent, ts, exposed=True, **params)


def plan_variants(cfg: RunConfig) -> list[Step]:
    """Every build step of ``cfg``, parents before children (see the module docstring for the names)."""
    p = _Planner(cfg)
    src, comp = cfg.teacher.source, cfg.compress
    for ts in cfg.task.training_sets:
        for seed in cfg.run.seeds:
            p.add(Variant("teacher", "none"), seed, "load", None, ts, exposed=True, source=src)
            pretrained = (
                p.add(Variant("teacher-mlm", "none"), seed, "mlm", None, ts, exposed=True, source=src)
                if cfg.finetune.mlm_domain
                else None
            )
            teacher_ft = p.add(Variant("teacher", "ft"), seed, "finetune", pretrained, ts, exposed=True, source=src)
            for key, section in comp.sections():
                for name, op, params in section.methods():
                    for base in section.bases():
                        if base == "teacher":
                            _method_chain(p, name, op, section.orders, seed, ts, pretrained, teacher_ft, src, **params)
                        else:
                            _on_base(
                                p,
                                cfg,
                                key,
                                base,
                                name,
                                op,
                                section.orders,
                                seed,
                                ts,
                                _Roots(pretrained, teacher_ft, src),
                                **params,
                            )
            for hub in cfg.hub_students:
                if "none" in hub.orders:
                    p.add(Variant(f"hub-{hub.name}", "none"), seed, "load", None, ts, exposed=True, source=hub.source)
                if "after" in hub.orders:
                    p.add(
                        Variant(f"hub-{hub.name}", "after"), seed, "finetune", None, ts, exposed=True, source=hub.source
                    )
    return list(p.steps.values())


def select(plan: list[Step], only: Iterable[str] | None) -> list[Step]:
    """The steps of the variants ``only`` (all seeds) and their ancestors; everything when ``only`` is None.

    Raises:
        ConfigError: an unknown variant, listing the planned ones.
    """
    if not only:
        return plan
    by_key = {s.key: s for s in plan}
    names = sorted({s.variant for s in plan})
    unknown = [v for v in only if v not in names]
    if unknown:
        raise ConfigError(f"--only {unknown}: not in this run's plan; planned variants: {', '.join(names)}.")
    keep: set[str] = set()
    stack = [s.key for s in plan if s.variant in set(only)]
    while stack:
        key = stack.pop()
        if key not in keep:
            keep.add(key)
            parent = by_key[key].parent
            if parent:
                stack.append(parent)
    return [s if s.variant in set(only) else Step(**{**s.__dict__, "exposed": False}) for s in plan if s.key in keep]


def format_plan(plan: list[Step]) -> str:
    """A readable table of the plan (``--dry-run``)."""
    lines = [f"{'variant':<32} {'seed':>4}  {'op':<8} {'input':<34} {'params'}"]
    for s in plan:
        params = ", ".join(f"{k}={v}" for k, v in s.params.items())
        origin = s.parent or s.source or ""
        flag = "" if s.exposed else "  (intermediate)"
        lines.append(f"{s.variant:<32} {s.seed:>4}  {s.op:<8} {origin:<34} {params}{flag}")
    n_exposed = len({s.variant for s in plan if s.exposed})
    lines.append(f"{len(plan)} models to build; {n_exposed} variants evaluated.")
    return "\n".join(lines)


def exposed_steps(ctx: StageContext) -> list[Step]:
    """The planned variants that analyses evaluate (intermediates left out), in plan order.

    ``ctx.run.plan`` holds the run's (selected) plan; see :func:`pipeline.runs.run.run`.
    """
    return [s for s in ctx.run.plan if s.exposed]


def load_variant(ctx: StageContext, step: Step, *, head: str = "classifier") -> LoadedModel:
    """Load a built variant from the run folder on the run's device (int8 variants stay on CPU).

    ``head_trained`` of a classifier follows the saved ``config.task_head_trained``, so a variant whose head was
    never trained (order ``none``) is flagged even though its random head was saved and reloads.
    """
    loaded = load_model(ctx.run_dir / step.folder, head=head, device=ctx.run.device)
    if head == "classifier":
        loaded.head_trained = bool(getattr(loaded.model.config, HEAD_TRAINED_KEY, loaded.head_trained))
    return loaded
