"""Benchmark: the tiny test grid on 1 vs 2 Ray workers, the scheduling overhead per unit, and a paper-scale projection.

The grid is the test run of ``tests/run_fixtures.py`` (a random 4-layer teacher, a DistilBERT-style and an int8
student, seeds 0 and 1, every analysis stage): run once with the local executor, then with the Ray executor on a
local cluster of 1 and of 2 CPUs (one unit per CPU), each into a fresh folder, all in this process, side by side.
The overhead per unit is (Ray wall time on 1 worker - local wall time) / units run: what submitting, pickling and
collecting a unit costs on top of running it. The projection counts the units ``configs/paper.toml`` plans.

    python -m bench.ray_grid --threads 1

Results are written up in docs/BENCHMARKS.md (with the machine and the command).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from run_fixtures import demo_config, run_pipeline, save_teacher

from pipeline.runs.config import load_config
from pipeline.runs.plan import plan_variants


def _units(run_dir: Path) -> int:
    manifest = json.loads((run_dir / "manifest.json").read_text())
    return sum(len(s.get("units", {})) for s in manifest["stages"].values())


def grid(workers: list[int]) -> list[dict]:
    import ray

    root = Path(tempfile.mkdtemp(prefix="ray-bench-"))
    teacher = save_teacher(root / "teacher")
    rows = []
    start = time.perf_counter()
    local = run_pipeline(demo_config(root / "local", teacher))
    local_s = time.perf_counter() - start
    units = _units(local.run_dir)
    rows.append({"executor": "local", "workers": 1, "wall_s": local_s, "units": units, "overhead_s_per_unit": 0.0})
    for n in workers:
        ray.init(num_cpus=n, log_to_driver=False, include_dashboard=False)
        config = demo_config(root / f"ray{n}", teacher)
        config["run"]["executor"] = "ray"
        start = time.perf_counter()
        run_pipeline(config)
        wall = time.perf_counter() - start
        ray.shutdown()
        rows.append({"executor": "ray", "workers": n, "wall_s": wall, "units": units,
                     "overhead_s_per_unit": (wall - local_s) / units if n == 1 else float("nan")})  # fmt: skip
    shutil.rmtree(root, ignore_errors=True)
    return rows


def projection(config: str, hours_per_unit: dict[str, float]) -> dict:
    """Units of the paper config per stage, and GPU-hours under the stated per-unit costs."""
    plan = plan_variants(load_config(config))
    cfg = load_config(config)
    exposed = [s for s in plan if s.exposed]
    attributed = [s for s in exposed if not cfg.attribution.variants or s.variant in cfg.attribution.variants]
    probed = [s for s in exposed if not cfg.probes.variants or s.variant in cfg.probes.variants]
    counts = {"build": len(plan), "task_metrics": len(exposed), "bias_metrics": len(exposed),
              "attribution": len(attributed), "probes": len(probed)}  # fmt: skip
    hours = {k: v * hours_per_unit.get(k, 0.0) for k, v in counts.items()}
    return {**{f"{k}_units": v for k, v in counts.items()}, "gpu_hours": sum(hours.values())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="1,2", help="comma list of local Ray cluster sizes")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--paper", default="configs/paper.toml")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads per process"
    )
    rows = grid([int(w) for w in args.workers.split(",")])
    print("| " + " | ".join(rows[0]) + " |\n|" + "---|" * len(rows[0]))
    for r in rows:
        print("| " + " | ".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in r.values()) + " |")
    # Per-unit GPU-hours on one A100-class GPU, stated assumptions (not measured here): a BERT-base fine-tune or
    # distillation on Bias in Bios ~0.5 h, evaluation ~0.05 h, attribution of one variant ~0.5 h, probes ~0.2 h.
    costs = {"build": 0.5, "task_metrics": 0.05, "bias_metrics": 0.05, "attribution": 0.5, "probes": 0.2}
    print(json.dumps({"paper_projection": projection(args.paper, costs), "assumed_gpu_hours_per_unit": costs}))


if __name__ == "__main__":
    main()
