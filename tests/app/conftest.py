"""Run folders for the viewer tests: a full one built from real computations, an empty one and a partial one.

The full run (``demo``) is made with the project's own code, on a small BERT-shaped classifier (4 layers x 4
heads, width 64, MiniLM's tokenizer) so that it builds in well under a minute on CPU:

* models: ``teacher-ft`` (seeds 0 and 1: two random encoders) whose classifier is fitted on four BUG occupations
  by logistic regression on the frozen pooled output (back-propagation through the encoder takes minutes on a
  shared CPU); ``distil-ft_before``, a DistilBERT-style student initialised from every other teacher layer by
  :func:`pipeline.compress.distil.init_student`, head refitted; all saved with
  :func:`pipeline.compress.build.save_model` and reloaded through :func:`pipeline.models.load_model`;
* ``task_metrics`` / ``predictions``: :func:`pipeline.task_metrics.task_metric_rows`;
* ``bias_metrics``: :func:`pipeline.metrics.bias_metrics` (extrinsic, counterfactual, SEAT word tests; CrowS and
  StereoSet come out as skipped rows, as they do for any classifier without an MLM head);
* attribution tables: :func:`attribution.analysis.run_attribution` (ablation, cumulative curves, gradient
  importance, integrated gradients over heads, neurons and tokens, patching; the counterfactual-gap score);
  ``comparison``: :func:`attribution.compare.homogeneity` and :func:`~attribution.compare.seed_stability`;
* probe tables: :func:`probes.analysis.run_probes` (layers, heads, control task, LEACE erasure at the last layer),
  for the seed-0 models.

``pipeline.run`` writes the same tables, but fine-tunes MiniLM, which takes far longer than a test may.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits
from transformers import BertConfig, BertForSequenceClassification

from attribution.analysis import AttributionConfig, run_attribution
from attribution.compare import homogeneity, seed_stability
from attribution.data import AttributionData
from pipeline.compress.build import save_model
from pipeline.compress.distil import init_student
from pipeline.data import GenderSwapper, load_bug
from pipeline.metrics import BiasMetricsConfig, bias_metrics
from pipeline.models import load_model
from pipeline.schema import tidy, write_table
from pipeline.task_metrics import task_metric_rows
from probes.analysis import ProbeConfig, run_probes

MAX_LEN, N_TRAIN, N_TEST, N_BOOT = 32, 320, 32, 100


def _split():
    data = load_bug(min_per_class=1300)  # author, person, singer, writer
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(data))
    return data.subset(idx[:N_TRAIN]), data.subset(idx[N_TRAIN:N_TRAIN + N_TEST])


def _random_teacher(folder: Path, label_names, seed: int, minilm) -> None:
    """A random 4 x 4-head BERT whose word embeddings are MiniLM's, randomly projected to width 64."""
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=minilm.tokenizer.vocab_size, hidden_size=64, num_hidden_layers=4,
                        num_attention_heads=4, intermediate_size=128, max_position_embeddings=64,
                        num_labels=len(label_names), id2label=dict(enumerate(label_names)),
                        label2id={n: i for i, n in enumerate(label_names)})
    model = BertForSequenceClassification(config)
    words = minilm.anatomy.word_embeddings.weight.detach()  # (vocab, 384)
    projection = torch.linalg.qr(torch.randn(words.shape[1], 64))[0]  # (384, 64), orthonormal columns
    with torch.no_grad():
        model.bert.embeddings.word_embeddings.weight.copy_(words @ projection)
    model.save_pretrained(folder)
    minilm.tokenizer.save_pretrained(folder)


@torch.no_grad()
def _fit_head(loaded, train) -> None:
    """Fit the classifier on the frozen pooled [CLS] output by logistic regression (the encoder stays as is)."""
    enc = loaded.tokenize(list(train.texts), max_length=MAX_LEN)
    pooled = loaded.anatomy.base(**enc).pooler_output.numpy()  # (n, d_model)
    mean, std = pooled.mean(0), pooled.std(0) + 1e-6
    fit = LogisticRegression(max_iter=1000).fit((pooled - mean) / std, train.labels)
    weight = fit.coef_ / std  # the standardisation folded into the linear layer
    loaded.model.classifier.weight.copy_(torch.as_tensor(weight))
    loaded.model.classifier.bias.copy_(torch.as_tensor(fit.intercept_ - weight @ mean))
    loaded.head_trained = True


def build_demo_run(run_dir: Path) -> Path:
    """Build the full ``demo`` run folder (see the module docstring) and return it.

    Runs on one thread: these forward passes are small, and on a shared 2-core machine a second intra-op thread
    makes every op wait for a busy core (measured: ``tanh`` on 128 x 64 takes 8 ms on 2 threads, 19 us on 1).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):  # the same for numpy's BLAS under sklearn
            return _build(run_dir)
    finally:
        torch.set_num_threads(threads)


def _build(run_dir: Path) -> Path:
    train, test = _split()
    swapper = GenderSwapper.from_winobias()
    minilm = load_model("minilm")
    models = {}
    for seed in (0, 1):
        _random_teacher(run_dir / ".teacher" / str(seed), train.label_names, seed, minilm)
        models[("teacher-ft", seed)] = load_model(run_dir / ".teacher" / str(seed), head="classifier")
    models[("distil-ft_before", 0)] = init_student(models[("teacher-ft", 0)], [0, 2])
    shutil.rmtree(run_dir / ".teacher")
    for loaded in models.values():
        _fit_head(loaded, train)
    bias_cfg = BiasMetricsConfig(metrics=("extrinsic", "counterfactual", "seat", "crows", "stereoset"), n_boot=N_BOOT,
                                 poolings=("cls",), seat_form="word", seat_n_samples=200, max_length=MAX_LEN)
    attribution_cfg = AttributionConfig(n_examples=N_TEST, token_examples=3, ig_steps=8, n_boot=N_BOOT,
                                      cumulative_steps=9)
    probe_cfg = ProbeConfig(n_folds=2, max_examples=96, Cs=(1.0,), inner_cv=2, erasure_layers=(-1,),
                            max_length=MAX_LEN)
    tables: dict[str, list[pd.DataFrame]] = {}
    for (variant, seed), loaded in models.items():
        folder = run_dir / "models" / variant / f"seed{seed}"
        save_model(loaded, folder)
        rows, preds = task_metric_rows(loaded, test, folder=folder, batch_size=64, max_length=MAX_LEN,
                                       latency_batch_sizes=(1,), latency_repeats=1)
        data = AttributionData.from_task(loaded, test, swapper=swapper, max_length=MAX_LEN)
        found = {
            "task_metrics": tidy([{"unit": "model", **r} for r in rows], variant=variant, seed=seed),
            "predictions": tidy(preds, variant=variant, seed=seed),
            "bias_metrics": bias_metrics(loaded, test=test, train_female_share=train.female_share(), variant=variant,
                                         seed=seed, config=bias_cfg),
            **run_attribution(loaded, data, attribution_cfg, variant=variant, seed=seed),
        }
        if seed == 0:  # probes are the slowest stage here (many small sklearn fits): first seed only
            found.update(run_probes(loaded, train, probe_cfg, variant=variant, seed=seed,
                                    cache_dir=str(run_dir / ".cache"), progress=False))
        for name, frame in found.items():
            tables.setdefault(name, []).append(frame)
    shutil.rmtree(run_dir / ".cache", ignore_errors=True)
    merged = {name: pd.concat(frames, ignore_index=True) for name, frames in tables.items()}
    merged["comparison"] = pd.concat([homogeneity(merged["head_ablation"], "delta_score"),
                                      seed_stability(merged["head_ablation"], "delta_score", k=4)], ignore_index=True)
    for name, frame in merged.items():
        write_table(frame, run_dir / "tables" / f"{name}.parquet")
    manifest = {"name": run_dir.name, "stages": {name: {"status": "done"} for name in merged},
                "variants": sorted({v for v, _ in models}), "seeds": [0, 1]}
    (run_dir / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return run_dir


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> Path:
    """The full run folder ``<tmp>/runs/demo``."""
    return build_demo_run(tmp_path_factory.mktemp("runs") / "demo")


@pytest.fixture(scope="session")
def empty_run(tmp_path_factory) -> Path:
    """A run that has started but written nothing yet: a manifest and an empty tables/ folder."""
    run = tmp_path_factory.mktemp("runs_empty") / "empty"
    (run / "tables").mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps({"name": "empty", "stages": {}}))
    return run


@pytest.fixture(scope="session")
def partial_run(tmp_path_factory, demo_run) -> Path:
    """A run with only its task metrics (the later stages have not run)."""
    run = tmp_path_factory.mktemp("runs_partial") / "partial"
    (run / "tables").mkdir(parents=True)
    shutil.copy(demo_run / "tables" / "task_metrics.parquet", run / "tables")
    return run
