"""Executors: where the units of a stage run. ``local`` runs them one after another in this process; ``ray``
submits every unit whose inputs are ready as a Ray task, to the cluster at ``RAY_ADDRESS`` or a local one.

The Ray executor reuses the stages unchanged. A stage is first run in *collect* mode
(:attr:`pipeline.runs.stages.StageContext.collecting`): every unit that is not cached is collected instead of run,
unless it depends on a unit that has not finished (its key needs the parent model's hash), and the collected units
of that wave run as Ray tasks in parallel. Waves repeat until nothing new is collected (a student after its
teacher); then the stage runs in this process as usual and finds every unit in the cache. The driver writes every
unit's tables and manifest record as it finishes, so the run folder stays the single source of truth: a killed
driver or a lost worker loses only the units in flight, and the same command resumes. Workers write model
folders atomically into the run folder, which must be on a file system every worker sees (a cluster's shared
one). A unit that raises is reported once, with its stage and name and traceback, and the others go on; the
stage then fails naming every failed unit.
"""

from __future__ import annotations

import logging
import os
import platform
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from pipeline.files import atomic_dir
from pipeline.runs.stages import Stage, StageContext, UnitSpec

__all__ = ["EXECUTORS", "RayResources", "UnitsFailedError", "check_cluster", "ray_prefill"]

log = logging.getLogger("pipeline.runs.run")
EXECUTORS = ("local", "ray")


class UnitsFailedError(RuntimeError):
    """Some units of a stage raised on their workers; the message names each with its error."""


@dataclass(frozen=True)
class RayResources:
    """What each unit task asks the cluster for (``[run]`` ray_cpus / ray_gpus / ray_memory_gb)."""

    cpus: float = 1.0
    gpus: float = 0.0
    memory_gb: float | None = None


def _capturing(fn: Callable, ctx: StageContext) -> Callable:
    """``fn`` returning ``(tables, skipped)``: what it recorded with ``ctx.skip`` on the worker (pickled with ``fn``,
    ``ctx`` is the very context ``fn`` uses there) comes back to the driver; the worker's copy never writes."""

    def run(*args):
        ctx.manifest.write = False
        ctx.manifest.data["skipped"] = []
        return fn(*args), list(ctx.manifest.data["skipped"])

    return run


def _run_unit(fn: Callable, folder: str | None, threads: int) -> dict[str, Any]:
    """The body of a Ray task: run one unit, return its tables (or its traceback), where and how long it ran."""
    import torch

    torch.set_num_threads(max(1, threads))
    start = time.perf_counter()
    worker = f"{platform.node()}:{os.getpid()}"
    try:
        if folder is None:
            tables, skipped = fn()
        else:
            with atomic_dir(Path(folder)) as tmp:
                tables, skipped = fn(tmp)
    except Exception:  # noqa: BLE001 (any failure of a unit is reported to the driver, which goes on)
        return {"error": traceback.format_exc(), "worker": worker}
    return {"tables": tables, "seconds": time.perf_counter() - start, "worker": worker, "skipped": skipped}


def _ray():
    try:
        import ray
    except ImportError:
        raise ValueError(
            "executor = 'ray' needs Ray: pip install -e \".[ray]\" (or pip install ray), or use the "
            "default executor = 'local'."
        ) from None
    if not ray.is_initialized():  # RAY_ADDRESS names a cluster; without it Ray starts a local one
        ray.init(address=os.environ.get("RAY_ADDRESS"), ignore_reinit_error=True, log_to_driver=False)
    return ray


def check_cluster(nodes: list[dict], resources: RayResources) -> None:
    """Refuse a request no live node of the cluster can meet (``ray.nodes()``): its tasks would wait forever."""
    memory = (resources.memory_gb or 0) * 2**30
    live = [n.get("Resources", {}) for n in nodes if n.get("Alive", True)]
    if not any(
        r.get("CPU", 0) >= resources.cpus and r.get("GPU", 0) >= resources.gpus and r.get("memory", 0) >= memory
        for r in live
    ):
        largest = max(live, key=lambda r: (r.get("GPU", 0), r.get("CPU", 0)), default={})
        raise ValueError(
            f"each unit asks Ray for {resources.cpus:g} CPU(s), {resources.gpus:g} GPU(s)"
            + (f", {resources.memory_gb:g} GB" if resources.memory_gb else "")
            + f", and no node of the cluster has that (largest: {largest.get('CPU', 0):g} CPU(s), "
            f"{largest.get('GPU', 0):g} GPU(s)); its tasks would wait forever. Fix: lower run.ray_cpus / ray_gpus / "
            "ray_memory_gb, or add such a node."
        )


def ray_prefill(stage: Stage, ctx: StageContext, resources: RayResources) -> None:
    """Run every uncached unit of ``stage`` as Ray tasks, wave by wave, writing each into the cache as it ends.

    Raises:
        UnitsFailedError: some units raised (the others finished and are recorded).
    """
    ray = _ray()
    check_cluster(ray.nodes(), resources)
    task = ray.remote(_run_unit).options(
        num_cpus=resources.cpus,
        num_gpus=resources.gpus,
        max_retries=0,
        **({"memory": int(resources.memory_gb * 2**30)} if resources.memory_gb else {}),
    )
    failed: dict[str, str] = {}
    while True:
        specs = _collect(stage, ctx, exclude=failed)
        if not specs:
            break
        _wave(ray, task, specs, ctx, resources, failed)
    if failed:
        names = "; ".join(f"{name}: {error.strip().splitlines()[-1]}" for name, error in failed.items())
        raise UnitsFailedError(
            f"[{stage.name}] {len(failed)} unit(s) failed on their workers ({names}); the other "
            "units finished and are cached. Fix the cause and run the same command again."
        )


def _collect(stage: Stage, ctx: StageContext, exclude: dict[str, str]) -> list[UnitSpec]:
    """The units of this stage that are not cached and whose inputs are ready (the next wave)."""
    ctx.collecting, counts = [], dict(ctx.counts)
    try:
        stage.fn(ctx)
    except Exception as err:  # noqa: BLE001 placeholders can upset a stage's own post-processing; the units are collected
        log.warning("[%s] collect pass stopped early: %r", stage.name, err)
    finally:
        specs, ctx.collecting, ctx.counts = ctx.collecting, None, counts
    return [s for s in specs if s.name not in exclude]


def _wave(ray, task, specs: list[UnitSpec], ctx: StageContext, resources: RayResources, failed: dict) -> None:
    """Submit ``specs`` as tasks and record each as it finishes (progress: done / total, running, failed)."""
    refs = {}
    for spec in specs:
        ctx.begin(spec.name, spec.key)
        ctx.pending.add(spec.name)
        folder = str(spec.folder) if spec.folder is not None else None
        refs[task.remote(_capturing(spec.fn, ctx), folder, int(resources.cpus))] = spec
    bar = tqdm(total=len(refs), desc=f"{ctx.stage} on ray", unit="unit")
    waiting = list(refs)
    try:
        while waiting:
            done, waiting = ray.wait(waiting, num_returns=1)
            spec = refs[done[0]]
            ctx.pending.discard(spec.name)
            try:
                out = ray.get(done[0])
            except Exception as err:  # noqa: BLE001 the worker died (lost node, killed process)
                out = {"error": f"{type(err).__name__}: {err}", "worker": "lost"}
            if "error" in out:
                failed[spec.name] = out["error"]
                record = ctx.manifest.unit(ctx.stage, spec.name)
                record.update(status="failed", error=out["error"].strip().splitlines()[-1], worker=out["worker"])
                ctx.manifest.save()
                log.error("[%s] unit %s failed on %s:\n%s", ctx.stage, spec.name, out["worker"], out["error"])
            else:
                ctx.manifest.data["skipped"] += [e for e in out["skipped"] if e not in ctx.manifest.data["skipped"]]
                ctx.complete(spec.name, out["tables"], out["seconds"], spec.folder, worker=out["worker"])
            bar.update(1)
            bar.set_postfix(running=len(waiting), failed=len(failed))
    finally:
        bar.close()
