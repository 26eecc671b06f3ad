"""Fixtures for the findings tests: the planted-bias model of ``tests/attribution/conftest.py`` (loaded from that file,
whose package name would clash with the ``attribution`` package) and a small real run folder made by the pipeline.

The run (``small_run``) is :func:`run_fixtures.demo_config` cut to what the report reads in about 15 s on one CPU
thread: one seed; the teacher, the fine-tuned teacher and a DistilBERT-style student (2 blocks from teacher blocks
0 and 2); extrinsic, counterfactual and SEAT metrics; ablation, gradient importance, head IG (4 steps: deliberately
incomplete) and patching on the fine-tuned teacher and the student; probes, control task and erasure on the teacher.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest
from run_fixtures import demo_config, run_pipeline, save_teacher

from pipeline.findings.compute import FindingsConfig

_PLANTED = Path(__file__).resolve().parents[1] / "attribution" / "conftest.py"


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Small models run on one thread (``one_torch_thread`` in tests/conftest.py)."""


@pytest.fixture(scope="session")
def fast() -> FindingsConfig:
    """Findings settings with fewer resamples: enough for tests of behaviour, fast on one thread."""
    return FindingsConfig(n_boot=200, n_perm=999)


@pytest.fixture(scope="session")
def planted_lib():
    """The module ``tests/attribution/conftest.py`` (``build_planted``, ``make_tokenizer``, templates, truth)."""
    spec = importlib.util.spec_from_file_location("planted_conftest", _PLANTED)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def small_config(out: Path, teacher: Path, *, name: str = "small") -> dict:
    """The run config of :func:`small_run` (as parsed TOML)."""
    config = demo_config(out, teacher, name=name)
    config["run"]["seeds"] = [0]
    config["compress"] = {"distil": config["compress"]["distil"]}
    config["metrics"]["metrics"] = ["extrinsic", "counterfactual", "seat"]
    config["attribution"].update({"variants": ["teacher-ft", "distil-ft_before"], "token_ig": False,
                                  "cumulative": False, "neuron_ig": False})  # fmt: skip
    config["probes"].update({"variants": ["teacher-ft"], "heads": False})
    return config


@pytest.fixture(scope="session")
def small_run(tmp_path_factory) -> Path:
    """The run folder ``<tmp>/runs/small`` of :func:`small_config`."""
    start = time.perf_counter()
    teacher = save_teacher(tmp_path_factory.mktemp("teacher"))
    result = run_pipeline(small_config(tmp_path_factory.mktemp("runs"), teacher))
    print(f"\n[small run built in {time.perf_counter() - start:.1f} s: {result.actions}]")
    return result.run_dir
