"""Small pipeline runs for tests: a test-sized run config and a random teacher that fine-tunes in seconds.

Used by the viewer tests (``tests/app/conftest.py``) and the reliability tests (``tests/reliability``).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from threadpoolctl import threadpool_limits
from transformers import BertConfig, BertModel

from pipeline.cli.full_run import run
from pipeline.models import load_model
from pipeline.runs.config import config_from_dict

TEACHER_SHAPE = {
    "hidden_size": 64,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "intermediate_size": 128,
    "max_position_embeddings": 64,
}
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
        "metrics": {
            "latency_batch_sizes": [1],
            "latency_repeats": 1,
            "metrics": ["extrinsic", "counterfactual", "seat", "crows", "stereoset"],
            "n_boot": 100,
            "poolings": ["cls"],
            "seat_form": "word",
            "seat_n_samples": 200,
        },
        "attribution": {
            "variants": ATTRIBUTED,
            "n_examples": 12,
            "token_examples": TOKEN_EXAMPLES,
            "ig_steps": 4,
            "cumulative_steps": 5,
            "n_boot": 100,
            "top_k": 4,
        },
        "probes": {
            "variants": PROBED,
            "poolings": ["mean"],
            "n_folds": 2,
            "inner_cv": 2,
            "Cs": [1.0],
            "max_examples": N_EVAL,
            "min_class_size": 2,
            "heads": True,
            "erasure_layers": [-1],
            "n_boot": 100,
        },
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


def run_pipeline(config: dict, **options):
    """``pipeline.runs.run.run`` on one thread (torch and numpy's BLAS); ``options`` go to ``run`` (``only``...).

    These forward passes are small, and on a shared 2-core machine a second intra-op thread makes every op wait
    for a busy core (measured: ``tanh`` on 128 x 64 takes 8 ms on 2 threads, 19 us on 1).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            return run(config_from_dict(config), **options)
    finally:
        torch.set_num_threads(threads)


def write_toml(config: dict, path: Path) -> Path:
    """Write a run config (as parsed TOML, sections and one level of subsections) to ``path`` as TOML."""

    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return json.dumps(v)

    lines = []
    for section, body in config.items():
        lines += [f"[{section}]", *(f"{k} = {value(v)}" for k, v in body.items() if not isinstance(v, dict))]
        for sub, inner in ((k, v) for k, v in body.items() if isinstance(v, dict)):
            lines += [f"[{section}.{sub}]", *(f"{k} = {value(v)}" for k, v in inner.items())]
    path.write_text("\n".join(lines) + "\n")
    return path
