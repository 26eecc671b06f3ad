"""Task metrics of a model variant: quality, size and speed, as tidy rows.

Quality on the evaluation split (``subset = "test"``): accuracy, macro-F1 (mean of per-class F1 over the classes that
occur in the labels or predictions) and per-class recall (unit ``class``, the class name in ``subset``; recall of
class ``y`` is the TPR that docs/DESIGN.md's per-gender gap ``TPR(y, female) - TPR(y, male)`` is built from).
Size: parameter count, non-zero parameter count (sparse variants), the serialised state dict in MB (what the
model occupies; int8 weights count one byte) and the saved folder in MB (an int8 variant saves float weights, see
:mod:`pipeline.int8`). Speed: CPU latency in ms per example at batch sizes 1 and 32, the median of a
few timed runs after one warm-up (a measurement, never asserted). ``head_trained`` (0/1) flags variants whose
classifier head was never trained on the task: their quality rows are reported but mean nothing.

Predictions are kept per example (:func:`prediction_rows`) so reloads can be checked against in-run outputs and
later stages can reuse them.
"""

from __future__ import annotations

import copy
import io
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import f1_score
from tqdm.auto import tqdm

from pipeline.bootstrap import bootstrap_ci
from pipeline.data import TaskData
from pipeline.eo_hooks import data_genders
from pipeline.int8 import QuantisedLinear
from pipeline.metrics.predict import classifier_logits
from pipeline.models import LoadedModel
from pipeline.runs.plan import exposed_steps, load_variant
from pipeline.runs.stages import Stage, StageContext, concat_tables
from pipeline.schema import tidy

__all__ = [
    "STAGE",
    "classification_rows",
    "cpu_latency_ms",
    "parameter_counts",
    "prediction_rows",
    "size_rows",
    "state_size_mb",
    "task_metric_rows",
    "task_metrics_stage",
]


def classification_rows(
    labels: np.ndarray, preds: np.ndarray, label_names: Sequence[str], *, n_boot: int = 1000, seed: int = 0
) -> list[dict]:
    """Accuracy (with its percentile bootstrap interval over the examples, ``n_boot`` resamples), macro-F1 (unit
    ``model``) and recall per class present in ``labels`` (unit ``class``, the class name in ``subset`` as in the
    bias-metric tables)."""
    labels, preds = np.asarray(labels), np.asarray(preds)
    accuracy, low, high = bootstrap_ci(np.mean, (labels == preds).astype(np.float64), n_boot=n_boot, seed=seed)
    rows = [
        {
            "unit": "model",
            "metric": "accuracy",
            "value": float(accuracy),
            "ci_low": float(low),
            "ci_high": float(high),
            "n": len(labels),
        },
        {
            "unit": "model",
            "metric": "macro_f1",
            "value": float(f1_score(labels, preds, average="macro", zero_division=0)),
            "n": len(labels),
        },
    ]
    for y in np.unique(labels):
        hit = labels == y
        rows.append(
            {
                "unit": "class",
                "metric": "recall",
                "subset": str(label_names[y]),
                "value": float((preds[hit] == y).mean()),
                "n": int(hit.sum()),
            }
        )
    return rows


def _weights(model: torch.nn.Module) -> list[torch.Tensor]:
    """Every weight tensor once: parameters plus the packed weights of int8 linear layers (dequantised)."""
    seen, out = set(), []
    for module in model.modules():
        tensors = list(module.parameters(recurse=False))
        if isinstance(module, QuantisedLinear):
            weight, bias = module._packed_params._weight_bias()
            tensors += [weight.dequantize()] + ([bias] if bias is not None else [])
        for t in tensors:
            if id(t) not in seen:
                seen.add(id(t))
                out.append(t)
    return out


def parameter_counts(model: torch.nn.Module) -> tuple[int, int]:
    """(number of parameters, number of non-zero parameters)."""
    weights = _weights(model)
    return sum(t.numel() for t in weights), sum(int(torch.count_nonzero(t)) for t in weights)


def state_size_mb(model: torch.nn.Module) -> float:
    """Size of ``torch.save(model.state_dict())`` in MB (10^6 bytes)."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell() / 1e6


def size_rows(loaded: LoadedModel, folder: Path | None) -> list[dict]:
    """Parameter counts, state-dict size and (when given) saved-folder size."""
    total, nonzero = parameter_counts(loaded.model)
    rows = [
        {"unit": "model", "metric": "params", "value": total},
        {"unit": "model", "metric": "params_nonzero", "value": nonzero},
        {"unit": "model", "metric": "size_mb", "value": state_size_mb(loaded.model)},
    ]
    if folder is not None:
        disk = sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())
        rows.append({"unit": "model", "metric": "disk_mb", "value": disk / 1e6})
    return rows


@torch.no_grad()
def cpu_latency_ms(
    loaded: LoadedModel,
    texts: Sequence[str],
    *,
    batch_size: int,
    repeats: int = 5,
    max_length: int = 128,
    genders: Sequence[int] | None = None,
) -> float:
    """Median wall time per example (ms) of a forward pass at ``batch_size`` on CPU (one warm-up run first).

    A model on another device is copied to CPU for the measurement. Texts are cycled to fill the batch. ``genders``
    (one per text) are read only by an eo variant with given genders (:func:`pipeline.eo_hooks.data_genders`).
    """
    if not texts:
        raise ValueError("cpu_latency_ms needs at least one text.")
    cycle = [i % len(texts) for i in range(batch_size)]
    batch_texts = [texts[i] for i in cycle]
    batch_genders = None if genders is None else np.asarray(genders)[cycle]
    with data_genders(loaded, batch_texts, batch_genders, max_length=max_length):
        model = loaded.model if loaded.device.type == "cpu" else copy.deepcopy(loaded.model).cpu()
        model.eval()
        batch = dict(
            loaded.tokenizer(batch_texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        )
        model(**batch)  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            model(**batch)
            times.append(time.perf_counter() - start)
    return statistics.median(times) / batch_size * 1000


def prediction_rows(logits: np.ndarray, data: TaskData, subset: str = "test") -> list[dict]:
    """One row per example: ``value`` = probability of the true class; extra columns example, label, gender, pred."""
    shifted = logits - logits.max(1, keepdims=True)
    probs = np.exp(shifted) / np.exp(shifted).sum(1, keepdims=True)
    true = probs[np.arange(len(data)), data.labels]
    preds = logits.argmax(1)
    return [
        {
            "unit": "model",
            "metric": "prob_true",
            "subset": subset,
            "value": float(true[i]),
            "n": 1,
            "example": i,
            "label": int(data.labels[i]),
            "gender": int(data.genders[i]),
            "pred": int(preds[i]),
        }
        for i in range(len(data))
    ]


def task_metric_rows(
    loaded: LoadedModel,
    data: TaskData,
    *,
    folder: Path | None,
    batch_size: int,
    max_length: int,
    latency_batch_sizes: Sequence[int] = (1, 32),
    latency_repeats: int = 5,
    subset: str = "test",
    n_boot: int = 1000,
) -> tuple[list[dict], list[dict]]:
    """All task metrics of one variant on ``data``: (metric rows, prediction rows), ready for ``tidy``; ``n_boot``
    resamples give the accuracy's interval."""
    logits = classifier_logits(loaded, data.texts, batch_size=batch_size, max_length=max_length,
                               genders=data.genders).numpy()  # fmt: skip
    scores = classification_rows(data.labels, logits.argmax(1), data.label_names, n_boot=n_boot)
    rows = [{"subset": subset, **r} for r in scores]
    rows += size_rows(loaded, folder)
    rows.append({"unit": "model", "metric": "head_trained", "value": float(loaded.head_trained)})
    for size in latency_batch_sizes:
        ms = cpu_latency_ms(loaded, data.texts, batch_size=size, repeats=latency_repeats, max_length=max_length,
                            genders=data.genders)  # fmt: skip
        rows.append({"unit": "model", "metric": f"latency_ms_b{size}", "value": ms, "n": latency_repeats})
    return rows, prediction_rows(logits, data, subset)


def task_metrics_stage(ctx: StageContext) -> dict[str, pd.DataFrame]:
    """Evaluate every exposed variant reloaded from its folder; tables ``task_metrics`` and ``predictions``."""
    cfg, splits = ctx.config, ctx.run.splits
    metrics, preds = [], []
    for step in tqdm(exposed_steps(ctx), desc="task metrics", disable=not ctx.is_main):

        def evaluate(step=step) -> dict[str, pd.DataFrame]:
            loaded = load_variant(ctx, step)
            rows, pred_rows = task_metric_rows(
                loaded,
                splits.test,
                folder=ctx.run_dir / step.folder,
                batch_size=cfg.finetune.eval_batch_size,
                max_length=cfg.task.max_length,
                latency_batch_sizes=cfg.metrics.latency_batch_sizes,
                latency_repeats=cfg.metrics.latency_repeats,
                n_boot=cfg.metrics.n_boot,
            )
            return {
                "task_metrics": tidy(rows, variant=step.variant, seed=step.seed),
                "predictions": tidy(pred_rows, variant=step.variant, seed=step.seed),
            }

        parts = {
            "model": ctx.unit_hash("build", step.key),
            "data": ctx.run.fingerprint,
            "max_length": cfg.task.max_length,
            "batch_size": cfg.finetune.eval_batch_size,
            "metrics": cfg.metrics.model_dump(mode="json"),
        }
        tables = ctx.unit(step.key, parts, evaluate)
        metrics.append(tables["task_metrics"])
        preds.append(tables["predictions"])
    return {"task_metrics": concat_tables(metrics), "predictions": concat_tables(preds)}


STAGE = Stage("task_metrics", task_metrics_stage, sections=("task", "metrics"), needs=("build",))
