"""Benchmark: edge attribution patching (EAP, EAP-IG) vs exact edge patching of every edge, side by side.

On MiniLM (the offline default; a random classifier head over the BUG classes unless ``--model`` names a saved
fine-tuned classifier) and ``--n`` BUG test pairs of equal token length: the time of EAP (3 forward + 1 backward
pass per batch), of EAP-IG (``--steps`` forward + backward passes) and of exact edge patching (one forward pass per edge per
batch), and how well the estimates find the exact top edges: recall of the exact top 20 among the estimated top
20, and Spearman correlation over all edges. The metric is the skew-oriented gap (``SkewedClassProb`` with the
BUG data's skew orientation, times the gender sign; :mod:`attribution.eap`).

    OMP_NUM_THREADS=1 python -m bench.eap --n 8

Results are written up in docs/BENCHMARKS.md (with the machine and the command).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch
from scipy.stats import spearmanr

from attribution.data import AttributionData, aligned_pairs
from attribution.eap import EdgeAttributionPatching
from attribution.scores import SkewedClassProb
from pipeline.data.tasks import load_task
from pipeline.metrics.counterfactual import skew_orientation
from pipeline.models import load_model


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def run(model: str, n: int, steps: int, k: int, max_length: int) -> dict:
    bug = load_task("bug")
    loaded = load_model(model, head="classifier", label_names=list(bug.label_names))
    task = bug.relabel(loaded.label_names)
    rows = np.sort(np.random.default_rng(0).choice(len(task), 4 * n, replace=False))
    pairs = aligned_pairs(AttributionData.from_task(loaded, task.subset(rows), max_length=max_length), "bench")[0]
    data = pairs.subset(np.arange(min(n, len(pairs))))
    eap = EdgeAttributionPatching(loaded, SkewedClassProb(skew_orientation(task)))
    edges = list(eap.graph.edges())
    eap.estimates(data.subset([0]))  # warm-up

    def flat(scores):
        mean = scores.double().mean(0)
        return np.array([float(mean[eap.graph.row[u], eap.graph.col[v]]) for u, v in edges])

    est, eap_s = _timed(lambda: flat(eap.estimates(data, batch_size=n)))
    ig, ig_s = _timed(lambda: flat(eap.estimates(data, batch_size=n, steps=steps)))
    exact, exact_s = _timed(lambda: eap.exact(data, edges, batch_size=n).double().mean(1).numpy())
    top = set(np.argsort(-np.abs(exact), kind="stable")[:k].tolist())

    def recall(values):
        return len(top & set(np.argsort(-np.abs(values), kind="stable")[:k].tolist())) / k

    return {"model": os.path.basename(model.rstrip("/")) or model, "n": len(data), "edges": len(edges),
            "exact_s": exact_s, "eap_s": eap_s, "exact/eap": exact_s / eap_s, f"eap_ig{steps}_s": ig_s,
            "exact/eap_ig": exact_s / ig_s, f"eap recall@{k}": recall(est), f"eap_ig recall@{k}": recall(ig),
            "eap spearman": spearmanr(est, exact)[0], "eap_ig spearman": spearmanr(ig, exact)[0],
            "max|exact|": float(np.abs(exact).max())}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="minilm", help="minilm, or a saved fine-tuned classifier folder")
    parser.add_argument("--n", type=int, default=8, help="BUG test pairs (one batch)")
    parser.add_argument("--steps", type=int, default=5, help="EAP-IG steps")
    parser.add_argument("--k", type=int, default=20, help="top-k edges for the recall")
    parser.add_argument("--max-length", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, 1 thread")
    row = run(args.model, args.n, args.steps, args.k, args.max_length)
    print("| " + " | ".join(row) + " |\n|" + "---|" * len(row))
    print("| " + " | ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in row.values()) + " |")


if __name__ == "__main__":
    main()
