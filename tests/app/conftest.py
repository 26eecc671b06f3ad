"""Run folders for the viewer tests, made by the pipeline itself in the test session: a full one, an empty one
and a partial one.

The full run (``demo``) is ``pipeline.run.run`` on a config sized for a test (:func:`demo_config`), with every
analysis stage on. Its teacher is a small random BERT (4 layers x 4 heads, width 64) saved with
``save_pretrained`` into a temporary folder and given as ``teacher.source``; its word embeddings are MiniLM's,
randomly projected to width 64, so that fine-tuning has something to work with, and MiniLM's tokenizer is saved
beside it. The run builds, for seeds 0 and 1, the variants

    teacher (seed 0 only: the pretrained model with a random head), teacher-ft, distil-ft_before (2 blocks from
    teacher blocks 0 and 2), int8-ft_before

and writes every table of the stages build, task_metrics, bias_metrics, attribution (+ comparison) and probes
to ``<tmp>/runs/demo/tables``, the models to ``models/<variant>/seed<k>/`` and ``manifest.json``.

The partial run (``partial``) is the same config with ``run.analyses = []``: the pipeline stops after the build
and the task metrics, as a run does before its analyses have been asked for. It is built in its own folder from
the models of the full run (copied, so the build stage finds them cached and only the task metrics run).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
import torch
from threadpoolctl import threadpool_limits
from transformers import BertConfig, BertModel

from pipeline.config import config_from_dict
from pipeline.models import load_model
from pipeline.run import run

TEACHER_SHAPE = {"hidden_size": 64, "num_hidden_layers": 4, "num_attention_heads": 4, "intermediate_size": 128,
                 "max_position_embeddings": 64}
SEEDS = [0, 1]
ATTRIBUTED = ["teacher-ft", "distil-ft_before", "int8-ft_before"]
PROBED = ["teacher-ft", "distil-ft_before"]
N_CLASSES, N_EVAL, TOKEN_EXAMPLES = 4, 48, 3


def demo_config(out_dir: Path, teacher: Path, *, name: str = "demo", analyses=None) -> dict:
    """The run config (as parsed TOML) of the test run; every stage sized to seconds on one CPU thread."""
    config = {
        "run": {"name": name, "out_dir": str(out_dir), "seeds": SEEDS, "device": "cpu"},
        "teacher": {"source": str(teacher)},
        "task": {"dataset": "bug", "max_classes": N_CLASSES, "max_train": 320, "max_eval": N_EVAL, "max_length": 32},
        "finetune": {"epochs": 3, "lr": 2e-3, "batch_size": 16, "eval_batch_size": 64, "warmup_ratio": 0.0},
        "compress": {
            "distil": {"orders": ["before"], "epochs": 1, "lr": 2e-3, "batch_size": 16, "warmup_ratio": 0.0},
            "int8": {"orders": ["before"]},
        },
        "metrics": {"latency_batch_sizes": [1], "latency_repeats": 1,
                    "metrics": ["extrinsic", "counterfactual", "seat", "crows", "stereoset"], "n_boot": 50,
                    "poolings": ["cls"], "seat_form": "word", "seat_n_samples": 200},
        "attribution": {"variants": ATTRIBUTED, "n_examples": 12, "token_examples": TOKEN_EXAMPLES, "ig_steps": 4,
                        "cumulative_steps": 5, "n_boot": 50, "top_k": 4},
        "probes": {"variants": PROBED, "poolings": ["mean"], "n_folds": 2, "inner_cv": 2, "Cs": [1.0],
                   "max_examples": N_EVAL, "min_class_size": 2, "heads": True, "erasure_layers": [-1], "n_boot": 50},
    }
    if analyses is not None:
        config["run"]["analyses"] = list(analyses)
    return config


def save_teacher(folder: Path, seed: int = 0) -> Path:
    """A random 4-layer, 4-head, 64-wide BERT encoder whose word embeddings are MiniLM's, randomly projected.

    The attention value and output maps are random orthogonal matrices instead of BERT's N(0, 0.02) draws: with
    the small random queries and keys, every token (the [CLS] token read by the classifier among them) then starts
    as itself plus a near-uniform average of the sentence's word embeddings. From the default initialisation, whose
    [CLS] output barely depends on the input, a few epochs on 320 sentences learn only the class prior (every
    prediction is the majority class, 45% of 400 test sentences); from this one they learn to tell some classes
    apart (about 52%), and the fine-tuned variants' predictions differ between inputs, genders and seeds.
    """
    minilm = load_model("minilm", head="encoder")
    torch.manual_seed(seed)
    model = BertModel(BertConfig(vocab_size=minilm.tokenizer.vocab_size, **TEACHER_SHAPE))
    words = minilm.anatomy.word_embeddings.weight.detach()  # (vocab, 384)
    projection = torch.linalg.qr(torch.randn(words.shape[1], TEACHER_SHAPE["hidden_size"]))[0]  # orthonormal columns
    with torch.no_grad():
        model.embeddings.word_embeddings.weight.copy_(words @ projection)
        for layer in model.encoder.layer:
            torch.nn.init.orthogonal_(layer.attention.self.value.weight)
            torch.nn.init.orthogonal_(layer.attention.output.dense.weight)
    model.save_pretrained(folder)
    minilm.tokenizer.save_pretrained(folder)
    return folder


def run_pipeline(config: dict):
    """``pipeline.run.run`` on one thread (torch and numpy's BLAS).

    These forward passes are small, and on a shared 2-core machine a second intra-op thread makes every op wait
    for a busy core (measured: ``tanh`` on 128 x 64 takes 8 ms on 2 threads, 19 us on 1).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            return run(config_from_dict(config))
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def demo_teacher(tmp_path_factory) -> Path:
    """The teacher folder given as ``teacher.source``."""
    return save_teacher(tmp_path_factory.mktemp("teacher"))


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory, demo_teacher) -> Path:
    """The full run folder ``<tmp>/runs/demo`` (every stage of ``python -m pipeline run``)."""
    start = time.perf_counter()
    result = run_pipeline(demo_config(tmp_path_factory.mktemp("runs"), demo_teacher))
    print(f"\n[demo run built in {time.perf_counter() - start:.1f} s: {result.actions}]")
    return result.run_dir


@pytest.fixture(scope="session")
def empty_run(tmp_path_factory) -> Path:
    """A run that has started but written nothing yet: a manifest and an empty tables/ folder."""
    run_dir = tmp_path_factory.mktemp("runs_empty") / "empty"
    (run_dir / "tables").mkdir(parents=True)
    (run_dir / "manifest.json").write_text(json.dumps({"name": "empty", "stages": {}}))
    return run_dir


@pytest.fixture(scope="session")
def partial_run(tmp_path_factory, demo_run, demo_teacher) -> Path:
    """The demo config with ``run.analyses = []``: models and task metrics, no bias metrics, attribution or probes.

    Its build stage reuses the demo run's models (copied, with the manifest that records their hashes), so only
    the task metrics are computed.
    """
    out = tmp_path_factory.mktemp("runs_partial")
    run_dir = out / "partial"
    shutil.copytree(demo_run / "models", run_dir / "models")
    (run_dir / "tables").mkdir()
    for table in ("training", "build_predictions"):  # the build stage's own tables
        shutil.copy(demo_run / "tables" / f"{table}.parquet", run_dir / "tables")
    manifest = json.loads((demo_run / "manifest.json").read_text())
    kept = {"build": manifest["stages"]["build"]}
    (run_dir / "manifest.json").write_text(json.dumps({**manifest, "name": "partial", "stages": kept}))
    result = run_pipeline(demo_config(out, demo_teacher, name="partial", analyses=[]))
    assert result.actions == {"build": "cached", "task_metrics": "ran"}, result.actions
    return run_dir
