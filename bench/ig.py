"""Benchmark: integrated gradients against its compute bound, all-layer vs single-layer neuron IG, batch size, memory.

IG with n_steps steps runs a forward and a backward pass on ``n * n_steps`` rows (example x step). The bound
(``fwd+bwd``) is measured on exactly the rows and forward batches IG uses: per captum call, the examples repeated
``n_steps`` times, cut into passes of ``batch_size`` rows, each a forward pass of the score and a backward pass to
the word-embedding output (no parameter gradients); ``x_fwd_bwd`` divides by the bound on the same forward
batches. Beyond it IG pays the gate hooks, four extra forward passes per example (F(x) and F(baseline), for the
table and inside captum for its delta) and captum's bookkeeping.

- ``token``: :class:`attribution.ig.TokenIntegratedGradients` (``attribute``, per-token rows included).
- ``neuron``: :class:`attribution.ig.NeuronIntegratedGradients` over the FFN neurons of every layer at once
  (``integrate``: the IG itself, without the bootstrap table).
- ``neuron@l``: the same class with ``layers=[l]``: only layer l is hooked and gradients stop there, so this is
  single-layer neuron IG through the very same code path. Layer 0 has the full backward depth (it isolates the
  cost of gating every layer); the last layer has the shortest backward (the cheapest single layer).

Each configuration runs in a fresh subprocess (warm-up on one example first, then timed), which reports its peak
memory: ``ru_maxrss`` on CPU (the whole process: Python, torch, model, data, work), ``max_memory_allocated`` on
GPU; ``load_mib`` is the same reading after loading the model and the data, before any work.

    python -m bench.ig                                   # minilm and bert-base, n 4, seq 64, 16 steps, CPU
    python -m bench.ig --models minilm --n 8 --seq 128 --steps 32 --batch-sizes 32,128,512 --device cuda

Random token ids; BERT-base has random weights, MiniLM a random classification head (see ``bench/sweep.py``);
nothing here is asserted. Results: docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import subprocess
import sys
import time
import warnings

import torch
from torch import Tensor
from transformers import AutoTokenizer

from attribution.batching import example_chunks
from attribution.data import AttributionData
from attribution.ig import NeuronIntegratedGradients, TokenIntegratedGradients
from attribution.scores import TrueClassProb
from bench.sweep import _bert_base, _data, _minilm
from pipeline.models import LoadedModel, resolve_source


def _bert_base_with_tokenizer(device: str) -> LoadedModel:
    """The random BERT-base of ``bench/sweep.py`` with MiniLM's tokenizer (the same 30,522-token uncased
    vocabulary): token IG reads the special tokens from it."""
    tokenizer = AutoTokenizer.from_pretrained(resolve_source("minilm"))
    return dataclasses.replace(_bert_base(device), tokenizer=tokenizer)


_BUILDERS = {"bert-base": _bert_base_with_tokenizer, "minilm": _minilm}
_LAYERS = {"bert-base": 12, "minilm": 6}


def peak_mib(device: str) -> float:
    """Peak memory so far: the process's max RSS on CPU (ru_maxrss is in KiB on Linux), allocated memory on GPU."""
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _fwd_bwd(loaded: LoadedModel, data: AttributionData, n_steps: int, batch_size: int) -> None:
    """The bound: forward + backward (to the word embeddings) on IG's rows, in IG's forward batches."""
    score, device = TrueClassProb(), loaded.device
    captured: list[Tensor] = []

    def leaf(module, args, output: Tensor) -> Tensor:
        captured.append(output.detach().requires_grad_())
        return captured[-1]

    handle = loaded.anatomy.word_embeddings.register_forward_hook(leaf)
    try:
        for ex in example_chunks(len(data), max(1, batch_size // n_steps)):  # examples per captum call
            rows = data.batch(ex, device).repeat(n_steps)  # (len(ex) * n_steps) rows, as captum expands them
            for chunk in example_chunks(len(ex) * n_steps, batch_size):
                captured.clear()
                torch.autograd.grad(score(loaded, rows.rows(chunk.to(device))).sum(), captured)
    finally:
        handle.remove()


def _method(case: dict, loaded: LoadedModel):
    """``run(data, n_steps)`` for the case's method."""
    score, batch_size = TrueClassProb(), case["batch_size"]
    kw = {"batch_size": batch_size, "progress": False}
    if case["method"] == "fwd+bwd":
        loaded.model.requires_grad_(False)  # as IG runs: autograd keeps no layer input for a weight gradient
        return lambda data, n_steps: _fwd_bwd(loaded, data, n_steps, batch_size)
    if case["method"] == "token":
        return lambda data, n_steps: TokenIntegratedGradients(loaded, score).attribute(data, n_steps=n_steps, **kw)
    ig = NeuronIntegratedGradients(loaded, score, layers=case.get("layers"))
    return lambda data, n_steps: ig.integrate(data, n_steps=n_steps, **kw)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run_case(case: dict) -> dict:
    """Measure one configuration in this process: seconds and peak memory (MiB)."""
    warnings.simplefilter("ignore")  # random weights: convergence warnings say nothing here
    if case["threads"]:
        torch.set_num_threads(case["threads"])
    device = case["device"]
    loaded = _BUILDERS[case["model"]](device)
    data = _data(loaded, case["n"], case["seq"])
    load_mib = peak_mib(device)
    run = _method(case, loaded)
    run(data.subset([0]), 2)  # warm-up
    best = float("inf")
    for _ in range(case["repeat"]):  # best of: a shared machine's load drifts
        _sync(device)
        start = time.perf_counter()
        run(data, case["steps"])
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return {"time_s": best, "peak_mib": peak_mib(device), "load_mib": load_mib}


def in_subprocess(module: str, case: dict) -> dict:
    """``python -m MODULE --case CASE`` in a fresh interpreter (so its peak memory is its own); its last JSON line."""
    done = subprocess.run([sys.executable, "-m", module, "--case", json.dumps(case)], capture_output=True, text=True,
                          check=False)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"case {case} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _cases(model: str, args: argparse.Namespace, n_layers: int) -> list[dict]:
    """The bound and all-layer neuron IG at every batch size; token IG and single-layer neuron IG at the first."""
    base = {"model": model, "n": args.n, "seq": args.seq, "steps": args.steps, "threads": args.threads,
            "device": args.device, "repeat": args.repeat}  # fmt: skip
    main = {**base, "batch_size": args.batch_size}
    cases = [{**main, "method": m} for m in ("fwd+bwd", "neuron", "token")]
    cases += [{**main, "method": f"neuron@{l}", "layers": [l]} for l in (0, n_layers - 1)]
    others = [b for b in args.batch_sizes if b != args.batch_size]
    return cases + [{**base, "method": m, "batch_size": b} for b in others for m in ("fwd+bwd", "neuron")]


_FORMATS = {"time_s": ".3g", "x_fwd_bwd": ".2f", "peak_mib": ".0f", "load_mib": ".0f"}


def _print_row(row: dict, header: list[str]) -> None:
    print("| " + " | ".join(format(row[k], _FORMATS.get(k, "")) for k in header) + " |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="minilm,bert-base", help="comma list of minilm, bert-base")
    parser.add_argument("--n", type=int, default=4, help="examples")
    parser.add_argument("--seq", type=int, default=64, help="tokens per example")
    parser.add_argument("--steps", type=int, default=16, help="integration steps")
    parser.add_argument("--batch-size", type=int, default=64, help="rows per forward pass of the comparisons")
    parser.add_argument("--batch-sizes", type=lambda s: [int(x) for x in s.split(",")], default=[8, 16],
                        help="other rows per forward pass to time neuron IG at")  # fmt: skip
    parser.add_argument("--repeat", type=int, default=1, help="best of this many timed runs per configuration")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0 = torch's default)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one configuration, print JSON
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(json.loads(args.case))))
        return
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"threads {args.threads or torch.get_num_threads()}, device {args.device}, n {args.n}, seq {args.seq}, "
          f"steps {args.steps}, best of {args.repeat}")  # fmt: skip
    header = ["model", "method", "batch", "time_s", "x_fwd_bwd", "peak_mib", "load_mib"]
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for model in args.models.split(","):
        n_layers = _LAYERS[model]
        times = {}
        for case in _cases(model, args, n_layers):
            result = in_subprocess("bench.ig", case)
            key = (case["method"], case["batch_size"])
            times[key] = result["time_s"]
            reference = times[("fwd+bwd", case["batch_size"])]  # the bound on the same forward batches
            _print_row({"model": model, "method": case["method"], "batch": case["batch_size"], **result,
                        "x_fwd_bwd": result["time_s"] / reference}, header)  # fmt: skip
        b = args.batch_size
        all_layers, first, last = times[("neuron", b)], times[("neuron@0", b)], times[(f"neuron@{n_layers - 1}", b)]
        mean = (first + last) / 2
        print(f"# {model}: all-layer / single-layer neuron IG = {all_layers / first:.2f} (layer 0), "
              f"{all_layers / last:.2f} (layer {n_layers - 1}), {all_layers / mean:.2f} (their mean)")  # fmt: skip


if __name__ == "__main__":
    main()
