"""Benchmark of the probes on the offline MiniLM with BUG: extraction (cold and cached) and probe fitting.

    python bench/probes.py --n 1000 --batch-size 32

Prints wall-clock seconds per step. Extraction runs one forward pass per batch for all layers, heads and both
poolings; the cached call only hashes the model and the texts. Probe timings are per (layer or head, pooling)
under 5-fold outer cross-validation. Timings depend on the machine and its load; nothing here is asserted.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

from pipeline.data import load_bug, rebalance_genders
from pipeline.models import load_model
from probes.control import control_task
from probes.extract import extract
from probes.linear import probe_heads, probe_layers
from probes.mdl import mdl_layers


def _timed(label: str, fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    print(f"{label:<44s} {time.perf_counter() - start:8.2f} s")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="gender-balanced BUG examples")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    loaded = load_model("minilm")
    data = rebalance_genders(load_bug(), seed=args.seed)
    data = data.subset(np.sort(np.random.default_rng(args.seed).choice(len(data), args.n, replace=False)))
    with tempfile.TemporaryDirectory() as cache:
        reps = _timed(
            f"extract {args.n} texts (cold)",
            extract,
            loaded,
            data.texts,
            batch_size=args.batch_size,
            cache_dir=cache,
            progress=False,
        )
        _timed(f"extract {args.n} texts (cached)", extract, loaded, data.texts, cache_dir=cache, progress=False)
    n_layer_fits = len(reps.poolings) * (reps.n_layers + 1)
    n_head_fits = len(reps.poolings) * sum(map(len, reps.head_ids))
    _timed(f"gender probes, {n_layer_fits} layer x pooling", probe_layers, reps, data.genders)
    _timed(f"gender probes, {n_head_fits} head x pooling", probe_heads, reps, data.genders)
    _timed(f"control task, {n_layer_fits} layer x pooling", control_task, reps, data.genders, types=data.labels)
    _timed(f"MDL, {n_layer_fits} layer x pooling", mdl_layers, reps, data.genders)


if __name__ == "__main__":
    main()
