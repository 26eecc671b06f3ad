"""Learning curve of the offline teacher on the study's task: dev accuracy after fine-tuning on more rows or epochs.

Sizes the study (configs/study.toml): how many training rows and epochs make the classifiers clearly useful on the
10-class BUG task, and what each costs. Every point fine-tunes a fresh MiniLM classifier (seed 0) with the study's
optimiser settings and reports its dev accuracy (400 rows) and training seconds.

    python -m bench.learning_curve                      # the grid below
    python -m bench.learning_curve --points 1000x1 2000x1 --threads 2
"""

from __future__ import annotations

import argparse
import time

import torch

from pipeline.models import load_model
from pipeline.runs.config import config_from_dict
from pipeline.runs.task_data import load_task_splits
from pipeline.train import finetune_classifier

POINTS = ("1000x1", "1000x2", "1000x3", "2000x1", "2000x2", "4000x1")  # training rows x epochs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", nargs="+", default=list(POINTS), help="rows x epochs, e.g. 2000x1")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--lr", type=float, default=2e-4)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    points = [tuple(int(v) for v in p.split("x")) for p in args.points]
    cfg = config_from_dict(
        {
            "run": {"name": "curve", "device": "cpu"},
            "teacher": {"source": "minilm"},
            "task": {
                "dataset": "bug",
                "max_classes": 10,
                "max_train": max(r for r, _ in points),
                "max_eval": 400,
                "max_length": 48,
            },
        }
    )
    splits = load_task_splits(cfg.task)
    full = splits.train["original"]
    print(f"BUG, {len(full.label_names)} classes, dev {len(splits.dev)} rows; threads {args.threads}")
    print(f"{'rows':>6} {'epochs':>6} {'dev accuracy':>12} {'seconds':>8}")
    for rows, epochs in points:
        train = full.subset(list(range(rows)))
        section = cfg.finetune.model_copy(update={"epochs": epochs, "lr": args.lr, "batch_size": 16})
        loaded = load_model("minilm", head="classifier", label_names=list(full.label_names))
        start = time.perf_counter()
        result = finetune_classifier(loaded, train, splits.dev, section, 0, max_length=cfg.task.max_length)
        print(f"{rows:>6} {epochs:>6} {result.dev_accuracy:>12.3f} {time.perf_counter() - start:>8.0f}", flush=True)


if __name__ == "__main__":
    main()
