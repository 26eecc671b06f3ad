"""Benchmark: peak memory of the single-head sweep and of head / neuron IG on the BERT-base shape, by example count.

The budget (issue 8): a BERT-base-sized model, 1,000 examples of 128 tokens, within 8 GiB of RAM on CPU. Each case
runs in a fresh subprocess and reports its peak RSS (``ru_maxrss``: Python, torch, the model, the data and the
work) and the RSS after loading the model and the data (``load_mib``), so ``peak - load`` is what the method adds.

- ``sweep``: :func:`attribution.sweep.fast_sweep` restricted to the heads of the last layer (``layers=[L-1]``).
  The prefix pass still runs every example through every layer and caches the state entering every layer, one
  block of ``batch_size // heads`` examples at a time, which is what could hold activations; the restriction only
  saves the (L-1) other layers' head passes, which have the same per-block memory, so the peak is the full
  sweep's. A full 144-head sweep of 1,000 examples takes hours on 2 CPU cores.
- ``head-ig`` / ``neuron-ig``: :class:`attribution.ig.HeadIntegratedGradients` /
  :class:`~attribution.ig.NeuronIntegratedGradients` ``attribute`` (IG plus the bootstrap table, n_boot 1000).
  The forward batches have ``batch_size`` rows whatever ``n_steps`` is, so few steps measure the same peak.
- ``neuron-table``: the table step of neuron IG alone (``tabulate``: per-unit means and bootstrap intervals) on
  random attributions of n examples, for n too large to integrate here; it holds the one thing that grows with
  n, the per-example attributions (n x layers x d_ff floats), and runs after the last forward batch is freed.

    python -m bench.memory                                   # sweep n 50, 1000; IG n 16, 64, 128; table n 1000
    python -m bench.memory --sweep-n 1000 --ig-n "" --table-n ""    # the sweep only

Timings are printed too, but they are single runs on a shared machine. Results: docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch

from attribution.ig import HeadIntegratedGradients, NeuronIntegratedGradients
from attribution.scores import TrueClassProb
from attribution.sweep import fast_sweep
from bench.ig import _BUILDERS, in_subprocess, peak_mib
from bench.sweep import _data

_IG = {"head-ig": HeadIntegratedGradients, "neuron-ig": NeuronIntegratedGradients}


def run_case(case: dict) -> dict:
    """Run one case in this process: seconds, peak and after-load memory (MiB)."""
    if case["threads"]:
        torch.set_num_threads(case["threads"])
    device, score = case["device"], TrueClassProb()
    loaded = _BUILDERS[case["model"]](device)
    data = _data(loaded, case["n"], case["seq"])
    load_mib = peak_mib(device)
    start = time.perf_counter()
    if case["method"] == "sweep":
        last = loaded.anatomy.n_layers - 1
        fast_sweep(loaded, score, data, layers=[last], batch_size=case["batch_size"], progress=False)
    elif case["method"] == "neuron-table":
        anatomy, n = loaded.anatomy, case["n"]
        attr = torch.randn(n, anatomy.n_layers, anatomy.d_ff)  # what integrate returns for n examples
        NeuronIntegratedGradients(loaded, score).tabulate(attr, torch.zeros(n), torch.ones(n), n=n, n_steps=1,
                                                          baseline="zero", n_boot=1000)  # fmt: skip
    else:
        _IG[case["method"]](loaded, score).attribute(data, n_steps=case["steps"], batch_size=case["batch_size"],
                                                     n_boot=1000, progress=False)  # fmt: skip
    return {"time_s": time.perf_counter() - start, "peak_mib": peak_mib(device), "load_mib": load_mib}


def _counts(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="bert-base", choices=sorted(_BUILDERS))
    parser.add_argument("--seq", type=int, default=128, help="tokens per example")
    parser.add_argument("--sweep-n", type=_counts, default=[50, 1000], help="example counts for the sweep")
    parser.add_argument("--ig-n", type=_counts, default=[16, 64, 128], help="example counts for IG")
    parser.add_argument("--table-n", type=_counts, default=[1000], help="example counts for the neuron IG table")
    parser.add_argument("--steps", type=int, default=2, help="IG steps (the peak does not depend on them)")
    parser.add_argument("--batch-size", type=int, default=32, help="rows per forward pass (the CLI's default)")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0 = torch's default)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case, print JSON
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(json.loads(args.case))))
        return
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"threads {args.threads or torch.get_num_threads()}, device {args.device}, model {args.model}, "
          f"seq {args.seq}, batch {args.batch_size} rows, IG steps {args.steps}")  # fmt: skip
    header = ["method", "n", "time_s", "peak_mib", "load_mib", "work_mib"]
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    base = {"model": args.model, "seq": args.seq, "steps": args.steps, "batch_size": args.batch_size,
            "threads": args.threads, "device": args.device}  # fmt: skip
    cases = [("sweep", n) for n in args.sweep_n] + [(m, n) for m in _IG for n in args.ig_n]
    cases += [("neuron-table", n) for n in args.table_n]
    for method, n in cases:
        result = in_subprocess("bench.memory", {**base, "method": method, "n": n})
        row = [method, n, *(f"{result[k]:.4g}" for k in ("time_s", "peak_mib", "load_mib")),
               f"{result['peak_mib'] - result['load_mib']:.4g}"]  # fmt: skip
        print("| " + " | ".join(map(str, row)) + " |", flush=True)


if __name__ == "__main__":
    main()
