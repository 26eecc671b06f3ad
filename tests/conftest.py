"""Shared fixtures: the offline MiniLM, and a small real pipeline run (``demo_run``, see ``tests/run_fixtures.py``)
built once per session; tiny random models come from ``tests/tiny.py``."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch
from run_fixtures import demo_config, run_pipeline, save_teacher

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def minilm():
    """The offline all-MiniLM-L6-v2 encoder (real pretrained weights)."""
    from pipeline.models import load_model

    return load_model("minilm", head="encoder")


@pytest.fixture
def one_torch_thread():
    """One intra-op thread for the test, restored after it: on tiny tensors, waking a second thread costs more than
    it saves, and on a shared 2-core machine a tiny linear layer took 0.03 ms with one thread and 12 ms with two."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="session")
def demo_teacher(tmp_path_factory) -> Path:
    """The teacher folder given as ``teacher.source``."""
    return save_teacher(tmp_path_factory.mktemp("teacher"))


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory, demo_teacher) -> Path:
    """The full run folder ``<tmp>/runs/demo`` (every stage of ``bias-atlas run``)."""
    start = time.perf_counter()
    result = run_pipeline(demo_config(tmp_path_factory.mktemp("runs"), demo_teacher))
    print(f"\n[demo run built in {time.perf_counter() - start:.1f} s: {result.actions}]")
    return result.run_dir
