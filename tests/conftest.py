"""Shared fixtures: the offline MiniLM; tiny random models come from ``tests/tiny.py``."""

from __future__ import annotations

import os

import pytest
import torch

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
