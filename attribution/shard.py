"""Scale-out: the single-head sweep, integrated gradients and activation patching split over processes.

Under ``accelerate launch`` (torchrun underneath) every process loads the model and all the data, takes its share,
writes it to a shard next to the output table and waits for the others; the main process merges the shards into
exactly the table one process writes, and removes them::

    accelerate launch --multi_gpu --num_processes 4 -m attribution ig --over neurons ... --out ig.parquet --device cuda
    accelerate launch --multi_gpu --num_processes 2 -m attribution ablate ... --out ablation.parquet  # 2 CPU processes

(``--multi_gpu`` only picks accelerate's torchrun launcher: with ``--device cpu``, the default, the processes run
on CPU and meet over gloo. ``accelerate launch --cpu`` starts a single process unless MPI is set up.)

What is split, and why the merge is exact:

- the sweep (:func:`sweep`) by heads: each process ablates a contiguous block of whole layers (of heads, when there
  are more processes than layers) on every example, blocks cut to about equal cost (a head of layer l runs blocks
  l..L-1 of the prefix-cached sweep). A head's rows depend only on that head's values and the bootstrap seed,
  which all processes share, so the merged table is the ``model`` rows once, then each metric's head rows shard
  after shard. Whole-set scores (SEAT) split this way too.
- integrated gradients (:func:`integrated_gradients`, :func:`token_ig`) and patching (:func:`patching`) by
  examples: each process computes the per-example values of a contiguous block of examples (the mean baseline and
  the aligned pairs still come from all examples); the main process concatenates them in rank order, which is
  data order, and computes means and bootstrap intervals over all examples as one process would.

The merged numbers are bit-identical where every forward batch holds the rows it holds in one process (the sweep
split by whole layers). Elsewhere a batch can hold fewer rows (a layer split across processes; an example block
that starts inside a batch) and CPU kernels may round such a batch differently in float32: differences of the
order of 1e-6 (docs/BENCHMARKS.md).

Shards are ``OUT.shard{rank}-of-{world}.parquet`` (table rows) or ``.npz`` (per-example arrays), written atomically.
With one process nothing is written: the functions return the table directly.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from accelerate import PartialState
from torch import Tensor

from attribution.ablation import HeadAblation
from attribution.data import AttributionData
from attribution.effect_rows import with_q
from attribution.ig import HeadIntegratedGradients, NeuronIntegratedGradients, TokenIntegratedGradients
from attribution.patching import ActivationPatching, PatchingEffects
from attribution.sweep import sweep_heads
from pipeline.files import atomic_path
from pipeline.schema import read_table, write_table

__all__ = ["Shard", "current_shard", "integrated_gradients", "merge_tables", "patching", "sweep", "token_ig"]

# Processes wait at the merge for the slowest shard; torch's default of 30 minutes would end long CPU sweeps.
_MERGE_TIMEOUT = timedelta(hours=48)


@dataclass(frozen=True)
class Shard:
    """This process's place among ``world`` processes (rank 0 is the main process, which merges)."""

    rank: int = 0
    world: int = 1

    def block(self, weights: Sequence[float]) -> range:
        """This process's contiguous block of items, cut so that every block has about the same total weight.

        Raises:
            ValueError: fewer items than processes.
        """
        n = len(weights)
        if n < self.world:
            raise ValueError(f"{n} items cannot be split over {self.world} processes; launch at most {n} processes.")
        before = np.concatenate([[0.0], np.cumsum(np.asarray(weights, dtype=float))])  # (n + 1,) weight before item i
        targets = before[-1] * np.arange(1, self.world) / self.world  # (world - 1,) ideal cut weights
        cuts = [0, *np.abs(before[None, :] - targets[:, None]).argmin(1), n]  # nearest item boundaries
        for k in range(1, self.world):  # every block non-empty
            cuts[k] = min(max(int(cuts[k]), cuts[k - 1] + 1), n - (self.world - k))
        return range(cuts[self.rank], cuts[self.rank + 1])

    def path(self, out: Path, suffix: str) -> Path:
        """The shard file of this process next to ``out``: ``OUT.shard{rank}-of-{world}{suffix}``."""
        return out.with_name(f"{out.stem}.shard{self.rank}-of-{self.world}{suffix}")


def current_shard(device: str | None) -> tuple[Shard, str | None]:
    """This process's shard and device under ``accelerate launch``; ``(Shard(), device)`` in a single process.

    On GPU (``device`` not CPU) each process takes its own GPU (``cuda:LOCAL_RANK``).
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Shard(), device
    cpu = device is None or torch.device(device).type == "cpu"
    state = PartialState(cpu=cpu, timeout=_MERGE_TIMEOUT)
    return Shard(state.process_index, state.num_processes), device if cpu else str(state.device)


def merge_tables(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """The ``model`` rows of the first shard, then each metric's other rows of every shard in rank order; q-values
    are recomputed over the units of all shards (each shard's q saw only its own units)."""
    units = [frame[frame["unit"] != "model"] for frame in frames]
    metrics = pd.unique(pd.concat([u["metric"] for u in units]))
    model = frames[0][frames[0]["unit"] == "model"]
    return with_q(pd.concat([model] + [u[u["metric"] == m] for m in metrics for u in units], ignore_index=True))


def _save_arrays(path: Path, arrays: dict[str, Tensor]) -> None:
    """``np.savez`` to a temp file, then rename (a shard is never read half-written)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **{k: v.detach().cpu().numpy() for k, v in arrays.items()})


def _load_arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as arrays:
        return {k: arrays[k] for k in arrays.files}


def _exchange(out: Path, shard: Shard, suffix: str, write: Callable[[Path], object]) -> list[Path] | None:
    """Write this shard, wait for every process; the main process gets all shard paths, the others None."""
    out.parent.mkdir(parents=True, exist_ok=True)
    write(shard.path(out, suffix))
    PartialState().wait_for_everyone()
    if shard.rank != 0:
        return None
    paths = [Shard(r, shard.world).path(out, suffix) for r in range(shard.world)]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise FileNotFoundError(f"shards {missing} were not written; see the log of those processes.")
    return paths


def _gather_tables(part: pd.DataFrame, out: Path, shard: Shard) -> pd.DataFrame | None:
    """Every shard's rows merged by :func:`merge_tables` (main process), None elsewhere."""
    if shard.world == 1:
        return part
    paths = _exchange(out, shard, ".parquet", lambda p: write_table(part, p))
    if paths is None:
        return None
    merged = merge_tables([read_table(p) for p in paths])
    for p in paths:
        p.unlink()
    return merged


def _gather_arrays(part: dict[str, Tensor], out: Path, shard: Shard) -> dict[str, Tensor] | None:
    """Per-example arrays (example axis first) of every shard, concatenated in rank order (main process)."""
    if shard.world == 1:
        return part
    paths = _exchange(out, shard, ".npz", lambda p: _save_arrays(p, part))
    if paths is None:
        return None
    shards = [_load_arrays(p) for p in paths]
    merged = {k: torch.from_numpy(np.concatenate([s[k] for s in shards])) for k in part}
    for p in paths:
        p.unlink()
    return merged


def sweep(
    ablation: HeadAblation, data: AttributionData, out: Path, shard: Shard, *, fast: bool = True, **kwargs
) -> pd.DataFrame | None:
    """Single-head ablation (``HeadAblation.attribute(mode="single")``) split by heads; ``kwargs`` go to
    ``attribute``. Returns the merged table on the main process, None on the others."""
    loaded, n_layers = ablation.loaded, ablation.loaded.anatomy.n_layers

    def cost(layer: int) -> int:  # blocks one head's rows run through
        return n_layers - layer if fast else n_layers

    if n_layers >= shard.world:  # whole layers: every forward batch as in one process, so bit-identical numbers
        mine = shard.block([loaded.anatomy.heads_per_layer[layer] * cost(layer) for layer in range(n_layers)])
        part_heads = sweep_heads(loaded, list(mine))
    else:  # more processes than layers: split inside layers
        heads = sweep_heads(loaded)
        part_heads = [heads[i] for i in shard.block([cost(layer) for layer, _ in heads])]
    part = ablation.attribute(data, mode="single", heads=part_heads, fast=fast, **kwargs)
    return _gather_tables(part, out, shard)


def integrated_gradients(
    method: HeadIntegratedGradients | NeuronIntegratedGradients,
    data: AttributionData,
    out: Path,
    shard: Shard,
    *,
    n_steps: int = 50,
    baseline: str = "zero",
    n_boot: int = 1000,
    seed: int = 0,
    **kwargs,
) -> pd.DataFrame | None:
    """Head or neuron IG split by examples (a per-example score); ``kwargs`` go to ``integrate``. Returns the
    table of ``method.attribute`` on the main process, None on the others."""
    mine = shard.block(np.ones(len(data)))
    attr, delta, diff = method.integrate(data, n_steps=n_steps, baseline=baseline,
                                         examples=None if shard.world == 1 else mine, **kwargs)  # fmt: skip
    merged = _gather_arrays({"attr": attr, "delta": delta, "diff": diff}, out, shard)
    if merged is None:
        return None
    return method.tabulate(**merged, n=len(data), n_steps=n_steps, baseline=baseline, n_boot=n_boot, seed=seed)


def token_ig(
    method: TokenIntegratedGradients, data: AttributionData, out: Path, shard: Shard, **kwargs
) -> pd.DataFrame | None:
    """Token IG split by examples (rows keep their example id); ``kwargs`` go to ``attribute``."""
    mine = shard.block(np.ones(len(data)))
    part = method.attribute(data, examples=None if shard.world == 1 else mine, **kwargs)
    return _gather_tables(part, out, shard)


def patching(
    method: ActivationPatching,
    data: AttributionData,
    out: Path,
    shard: Shard,
    *,
    neurons: Sequence[tuple[int, int]] | None = None,
    orient: bool = True,
    n_boot: int = 1000,
    seed: int = 0,
    **kwargs,
) -> pd.DataFrame | None:
    """Activation patching split by aligned pairs; ``kwargs`` go to ``effects``. Returns the table of
    ``method.attribute`` on the main process, None on the others."""
    pairs, dropped = method.pairs(data)
    mine = shard.block(np.ones(len(pairs)))
    effects = method.effects(pairs, neurons=neurons, orient=orient, examples=None if shard.world == 1 else mine,
                             **kwargs)  # fmt: skip
    merged = _gather_arrays(dict(vars(effects)), out, shard)
    if merged is None:
        return None
    return method.tabulate(PatchingEffects(**merged), neurons=neurons, dropped=dropped, orient=orient,
                           n_boot=n_boot, seed=seed)  # fmt: skip
