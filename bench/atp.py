"""Benchmark: attribution patching (one forward + one backward per example) vs the exact prefix-cached sweep.

Three tables, each measured side by side in one run:

- speed: on a random BERT-base-shaped classifier (12 x 12 heads, 12 x 3,072 FFN neurons), the same examples: the
  exact single-head sweep (prefix-cached, :func:`attribution.sweep.fast_sweep`) vs attribution patching of all
  heads, and of all heads + all neurons; the exact neuron sweep's time is extrapolated from the exact head sweep's
  cost per unit (it is out of reach to run);
- fidelity: Spearman correlation between estimated and exact single-head effects over all heads; the recall of the
  exact top-10 heads within the estimated top-20 (estimates on all examples); and the recall of what the tool
  reports, ``AttributionPatching.attribute(confirm_top=20)`` (= ``--screen 10``): the share of the exact top 10
  (exact sweep over all examples) among the 20 confirmed units, which the screen picks on half of the examples.
  For the zero, mean and patching (counterfactual) baselines (patching: pairs of equal token length only), on the
  planted model of the tests and on a saved classifier (``--model``, e.g. the demo's teacher-ft; ``minilm`` gets a
  random classifier head over the BUG classes);
- memory: peak RSS of the neuron-level pass (``--memory-n``), each in a fresh process.

    python -m bench.atp --threads 1 --n 16 --model runs/demo/models/teacher-ft/seed0

Results are written up in docs/BENCHMARKS.md (with the machine and the command).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import resource
import subprocess
import sys
import time

import numpy as np
import torch
from scipy.stats import spearmanr

from attribution.atp import AttributionPatching
from attribution.data import AttributionData, aligned_pairs
from attribution.scores import CounterfactualGap, TrueClassProb
from attribution.sweep import fast_sweep
from bench.sweep import _bert_base, _data, _timed
from pipeline.data import TaskData
from pipeline.data.tasks import load_task
from pipeline.models import load_model


def speed(n: int, seq: int, batch_size: int) -> dict:
    loaded = _bert_base("cpu")
    data, score = _data(loaded, n, seq), TrueClassProb()
    atp = AttributionPatching(loaded, score)
    kw = {"batch_size": batch_size, "progress": False}
    atp.estimates(data.subset([0]), units=("head",), **kw)  # warm-up
    exact = _timed(lambda: fast_sweep(loaded, score, data, batch_size=batch_size * 12, progress=False), "cpu")
    heads = _timed(lambda: atp.estimates(data, units=("head",), per_example=("head",), **kw), "cpu")
    both = _timed(lambda: atp.estimates(data, per_example=("head",), **kw), "cpu")
    anatomy = loaded.anatomy
    n_heads, n_neurons = sum(anatomy.heads_per_layer), anatomy.n_layers * anatomy.d_ff
    neurons_exact = exact / n_heads * n_neurons
    return {"n": n, "seq": seq, "exact_heads_s": exact, "atp_heads_s": heads, "exact/atp (heads)": exact / heads,
            "atp_heads+neurons_s": both, "exact_neurons_s (extrapolated)": neurons_exact,
            "atp_heads+neurons_1000ex_min (extrapolated)": both / n * 1000 / 60}  # fmt: skip


def _fidelity_rows(name: str, loaded, data: AttributionData, k: int = 10) -> list[dict]:
    out = []
    heads = [(l, h) for l in range(loaded.anatomy.n_layers) for h in range(loaded.anatomy.heads_per_layer[l])]
    for baseline in ("zero", "mean", "counterfactual"):
        score = TrueClassProb() if baseline == "counterfactual" else CounterfactualGap()
        atp = AttributionPatching(loaded, score, baseline=baseline)
        pairs = aligned_pairs(data, "bench")[0] if baseline == "counterfactual" else data
        est = atp.estimates(pairs, units=("head",), progress=False)["head"].mean(0)  # (layer, head)
        est = np.array([float(est[l, h]) for l, h in heads])
        exact = atp.exact(pairs, "head", heads).double().mean(1).numpy()
        top_exact = set(np.argsort(-np.abs(exact), kind="stable")[:k].tolist())
        top_est = set(np.argsort(-np.abs(est), kind="stable")[: 2 * k].tolist())
        frame = atp.attribute(pairs, units=("head",), confirm_top=2 * k, n_boot=0, progress=False)
        confirmed = set(np.flatnonzero(frame.loc[frame["unit"] == "head", "confirmed"].to_numpy() == 1).tolist())
        out.append({"model": name, "baseline": baseline, "n": len(pairs), "spearman": spearmanr(est, exact)[0],
                    f"recall@{k}in{2 * k}": len(top_exact & top_est) / k,
                    f"screen {k}: recall of exact top {k} among {2 * k} confirmed": len(top_exact & confirmed) / k,
                    "max|exact|": float(np.abs(exact).max())})  # fmt: skip
    return out


def _test_fixtures():
    """The planted model's builder from tests/attribution/conftest.py (imported from its file)."""
    tests = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests")
    sys.path.insert(0, tests)
    spec = importlib.util.spec_from_file_location("planted_fixtures", os.path.join(tests, "attribution", "conftest.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fidelity(model: str | None, n: int) -> list[dict]:
    fixtures = _test_fixtures()
    planted = fixtures.build_planted(fixtures.make_tokenizer())
    texts = [fixtures.TEMPLATES[i % len(fixtures.TEMPLATES)].format(o="doctor", p=("he", "she")[i % 2], n=("john", "mary")[i % 2])
             for i in range(24)]  # fmt: skip
    task = TaskData("planted", tuple(texts), np.ones(24, dtype=np.int64), np.arange(24) % 2, ("m", "f"))
    rows = _fidelity_rows("planted", planted, AttributionData.from_task(planted, task))
    if model:
        bug = load_task("bug")
        loaded = load_model(model, head="classifier", label_names=list(bug.label_names))
        test = bug.relabel(loaded.label_names)
        test = test.subset(np.sort(np.random.default_rng(0).choice(len(test), n, replace=False)))
        rows += _fidelity_rows(os.path.basename(model.rstrip("/")) or model, loaded,
                               AttributionData.from_task(loaded, test, max_length=64))  # fmt: skip
    return rows


def _peak(n: int, seq: int) -> None:
    """Child process: the neuron-level pass over n examples; prints peak RSS in MB."""
    loaded = _bert_base("cpu")
    AttributionPatching(loaded, TrueClassProb()).estimates(_data(loaded, n, seq), per_example=(), batch_size=16,
                                                           progress=False)  # fmt: skip
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def memory(ns: list[int], seq: int, threads: int) -> list[dict]:
    out = []
    for n in ns:
        code = f"import torch; torch.set_num_threads({threads or 1}); from bench.atp import _peak; _peak({n}, {seq})"
        start = time.perf_counter()
        peak = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()[
            -1
        ]
        out.append({"n": n, "seq": seq, "peak_rss_mb": float(peak), "seconds": time.perf_counter() - start})
    return out


def _table(rows: list[dict]) -> None:
    print("| " + " | ".join(rows[0]) + " |\n|" + "---|" * len(rows[0]))
    for r in rows:
        print("| " + " | ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in r.values()) + " |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=16, help="examples of the speed table")
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16, help="examples per attribution-patching pass")
    parser.add_argument("--model", default=None, help="a saved fine-tuned classifier for the fidelity table")
    parser.add_argument("--fidelity-n", type=int, default=32, help="BUG examples of the fidelity table (--model)")
    parser.add_argument("--memory-n", default="16,128", help="comma list of example counts for the memory table")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--no-speed", action="store_true", help="skip the speed table (BERT-base, minutes)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    if not args.no_speed:
        _table([speed(args.n, args.seq, args.batch_size)])
    _table(fidelity(args.model, args.fidelity_n))
    if args.memory_n:
        _table(memory([int(n) for n in args.memory_n.split(",")], args.seq, args.threads))


if __name__ == "__main__":
    main()
