"""Benchmark: naive vs prefix-cached single-head sweep, against the prefix-cached compute bound.

The naive sweep runs one full forward pass per head (L * H passes over the examples). The fast sweep runs, per
block of examples, one pass to cache the state entering every layer, then for each layer l only blocks l..L-1,
on (heads of l x examples) rows. Its compute bound is ``sum_l H * rows * cost(blocks l..L-1)``; with equal blocks
that is ``(L + 1) / (2 L)`` of the naive compute, so the best possible speed-up is ``2 L / (L + 1)`` (1.85 for
L = 12, 1.71 for L = 6) before the prefix pass. The bound printed here is measured, not assumed: the time of one
block on the very row counts the fast sweep uses (a full pass divided by L), times ``sum_l (L - l)``, plus the
measured prefix passes.

    python -m bench.sweep                       # both models, 16 examples x 64 tokens, CPU
    python -m bench.sweep --models minilm --n 32 --seq 128 --device cuda

Results are written up in docs/BENCHMARKS.md (with the machine and the command).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch
from transformers import BertConfig, BertForSequenceClassification

from attribution.data import AttributionData
from attribution.scores import TrueClassProb, view_features
from attribution.sweep import fast_sweep, naive_sweep
from pipeline.anatomy import Anatomy
from pipeline.models import LoadedModel, load_model


def _bert_base(device: str) -> LoadedModel:
    """A random BERT-base-shaped classifier: 12 layers x 12 heads, d_model 768, d_ff 3072."""
    torch.manual_seed(0)
    config = BertConfig(num_labels=2, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = BertForSequenceClassification(config).eval().to(device)
    return LoadedModel(model, None, Anatomy(model), "classifier", True, "random-bert-base")


def _minilm(device: str) -> LoadedModel:
    return load_model("minilm", head="classifier", num_labels=2, device=device)


def _data(loaded: LoadedModel, n: int, seq: int) -> AttributionData:
    """Random token ids, all ``seq`` long (no padding), random labels."""
    g = torch.Generator().manual_seed(0)
    vocab = loaded.model.config.vocab_size
    ids = torch.randint(1000, vocab, (n, seq), generator=g)
    none = torch.full((n,), -1, dtype=torch.long)
    return AttributionData(
        input_ids=ids, attention_mask=torch.ones_like(ids), target_pos=none, cf_input_ids=None,
        cf_attention_mask=None, cf_target_pos=None, labels=torch.randint(0, 2, (n,), generator=g), genders=none,
        pronoun_ids=torch.full((n, 2), -1, dtype=torch.long), groups=none, name="random", texts=("",) * n,
    )  # fmt: skip


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timed(fn, device: str) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


@torch.no_grad()
def _bound(loaded: LoadedModel, data: AttributionData, batch_size: int, device: str) -> float:
    """Measured prefix-cached bound: per example block, one full pass (the prefix) plus, per layer l, the cost of
    blocks l..L-1 on heads x examples rows, each block costing a full pass on those rows divided by L."""
    anatomy, score = loaded.anatomy, TrueClassProb()
    n_layers, n_heads = anatomy.n_layers, anatomy.n_heads
    per_block = max(1, batch_size // n_heads)
    total = 0.0
    for start in range(0, len(data), per_block):
        ex = torch.arange(start, min(start + per_block, len(data)))
        batch = data.batch(ex, device)
        rows = batch.repeat(n_heads).view("orig")
        full_rows = _timed(lambda rows=rows: view_features(loaded, score, rows), device)
        prefix = _timed(lambda b=batch: anatomy.hidden_states(b.input_ids, b.attention_mask), device)
        total += prefix + full_rows / n_layers * sum(n_layers - l for l in range(n_layers))
    return total


def run(name: str, loaded: LoadedModel, n: int, seq: int, batch_size: int, device: str, repeat: int) -> dict:
    data = _data(loaded, n, seq)
    score = TrueClassProb()
    kw = {"progress": False}
    fast_sweep(loaded, score, data.subset([0]), batch_size=batch_size, **kw)  # warm-up
    naive = fast = bound = float("inf")
    for _ in range(repeat):  # interleaved rounds, best of each: a shared machine's load drifts during a run
        naive = min(naive, _timed(lambda: naive_sweep(loaded, score, data, batch_size=n, **kw), device))
        fast = min(fast, _timed(lambda: fast_sweep(loaded, score, data, batch_size=batch_size, **kw), device))
        bound = min(bound, _bound(loaded, data, batch_size, device))
    a, _ = fast_sweep(loaded, score, data, batch_size=batch_size, **kw)
    b, _ = naive_sweep(loaded, score, data, batch_size=n, **kw)
    return {"model": name, "layers": loaded.anatomy.n_layers, "heads": loaded.anatomy.n_heads, "n": n, "seq": seq,
            "rows": batch_size, "naive_s": naive, "fast_s": fast, "bound_s": bound, "naive/fast": naive / fast,
            "fast/bound": fast / bound, "max_abs_diff": float((a.values - b.values).abs().max())}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="bert-base,minilm", help="comma list of bert-base, minilm")
    parser.add_argument("--n", type=int, nargs="+", default=[16], help="numbers of examples")
    parser.add_argument("--seq", type=int, nargs="+", default=[64], help="sequence lengths")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeat", type=int, default=1, help="best of this many interleaved rounds")
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0 = torch's default)")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=0,
        help="rows (head x example) per pass of the fast sweep and the bound (0 = all heads x n)",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    builders = {"bert-base": _bert_base, "minilm": _minilm}
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {args.device}"
          + (f" ({torch.cuda.get_device_name()})" if args.device.startswith("cuda") else ""))  # fmt: skip
    header = None
    for name in args.models.split(","):
        loaded = builders[name](args.device)
        for n in args.n:
            for seq in args.seq:
                rows = args.batch_size or n * loaded.anatomy.n_heads
                result = run(name, loaded, n, seq, rows, args.device, args.repeat)
                if header is None:
                    header = list(result)
                    print("| " + " | ".join(header) + " |")
                    print("|" + "---|" * len(header))
                print("| " + " | ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in result.values()) + " |",
                      flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
