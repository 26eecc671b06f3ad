"""Sharded runs: blocks cover the items evenly, and merged shards equal the single-process table, in process
(shards written one rank after the other) and under a real two-process ``accelerate launch``."""

from __future__ import annotations

import socket
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from attribution import shard as sharding
from attribution.ablation import HeadAblation
from attribution.cli import main
from attribution.data import AttributionData
from attribution.ig import NeuronIntegratedGradients, TokenIntegratedGradients
from attribution.patching import ActivationPatching
from attribution.scores import CounterfactualGap, TrueClassProb
from pipeline.schema import read_table


def _assert_same(merged: pd.DataFrame, single: pd.DataFrame) -> None:
    """Equal up to float32 rounding; ``delta_rel``, itself a rounding-sized ratio once IG converged, and the
    resampling p- and q-values (a per-example value that moves by float rounding can cross one resample's
    threshold: one count is 1e-4 of 9,999), to 1e-3."""
    noise = [c for c in ("delta_rel", "p", "q") if c in single]
    pd.testing.assert_frame_equal(merged.drop(columns=noise).reset_index(drop=True),
                                  single.drop(columns=noise).reset_index(drop=True), check_dtype=False, atol=1e-6,
                                  rtol=1e-5)  # fmt: skip
    for column in noise:
        np.testing.assert_allclose(merged[column], single[column], atol=1e-4 if column == "delta_rel" else 1e-3)


@pytest.mark.parametrize("world", [1, 2, 3, 7])
def test_blocks_cover_the_items_in_order_at_equal_cost(world):
    weights = [12 - layer for layer in range(12) for _ in range(12)]  # heads of a 12-layer sweep
    blocks = [sharding.Shard(rank, world).block(weights) for rank in range(world)]
    assert [i for block in blocks for i in block] == list(range(len(weights)))
    costs = [sum(weights[i] for i in block) for block in blocks]
    assert min(len(b) for b in blocks) > 0 and max(costs) - min(costs) <= 2 * max(weights)


def test_more_processes_than_items_is_refused():
    assert list(sharding.Shard(1, 2).block([100.0, 1.0])) == [1]  # a heavy first item still leaves one for rank 1
    with pytest.raises(ValueError, match="3 items cannot be split over 4 processes; launch at most 3"):
        sharding.Shard(0, 4).block([1, 1, 1])


def _cases(loaded, data):
    """(sharded function, method, kwargs, the single-process table) for every split."""
    gap, prob = CounterfactualGap(), TrueClassProb()
    kw = {"batch_size": 8, "n_boot": 50, "seed": 3, "progress": False}
    ig = {"n_steps": 8, "baseline": "mean", **kw}
    token = {"n_steps": 8, "batch_size": 16, "progress": False}
    patch = {"neurons": [(1, 7), (2, 0)], **kw}
    return {
        "sweep": (sharding.sweep, HeadAblation(loaded, gap), {"baseline": "mean", **kw},
                  HeadAblation(loaded, gap).attribute(data, mode="single", baseline="mean", **kw)),
        "neuron_ig": (sharding.integrated_gradients, NeuronIntegratedGradients(loaded, gap), ig,
                      NeuronIntegratedGradients(loaded, gap).attribute(data, **ig)),
        "token_ig": (sharding.token_ig, TokenIntegratedGradients(loaded, prob), token,
                     TokenIntegratedGradients(loaded, prob).attribute(data, **token)),
        "patching": (sharding.patching, ActivationPatching(loaded, prob), patch,
                     ActivationPatching(loaded, prob).attribute(data, **patch)),
    }  # fmt: skip


@pytest.mark.parametrize("world", [1, 3, 7])  # 7 > 3 layers: the sweep splits inside layers
def test_merged_shards_equal_the_single_process_table(tiny_loaded, tiny_task, tmp_path, world):
    loaded = tiny_loaded("bert")
    data = AttributionData.from_task(loaded, tiny_task)
    for name, (run, method, kwargs, single) in _cases(loaded, data).items():
        out = tmp_path / f"{name}.parquet"
        for rank in reversed(range(1, world)):  # the other processes write their shards first
            assert run(method, data, out, sharding.Shard(rank, world), **kwargs) is None
        merged = run(method, data, out, sharding.Shard(0, world), **kwargs)
        _assert_same(merged, single)
        assert not list(tmp_path.glob(f"{name}.shard*")), "shards are removed after the merge"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_loaded, tiny_task):
    folder = tmp_path_factory.mktemp("shard")
    loaded = tiny_loaded("bert", num_labels=3)
    loaded.model.config.id2label = dict(enumerate(tiny_task.label_names))  # classes matched by name: the data's
    loaded.model.config.label2id = {name: i for i, name in enumerate(tiny_task.label_names)}
    loaded.model.save_pretrained(folder / "model")
    loaded.tokenizer.save_pretrained(folder / "model")
    labels = [tiny_task.label_names[i] for i in tiny_task.labels]
    genders = ["m" if g == 0 else "f" for g in tiny_task.genders]
    pd.DataFrame({"text": tiny_task.texts, "label": labels, "gender": genders}).to_csv(folder / "bios.csv")
    return folder


@pytest.mark.parametrize("argv", [
    ["ablate", "--baseline", "mean"],
    pytest.param(["ig", "--over", "neurons", "--baseline", "mean", "--steps", "8"], marks=pytest.mark.slow),
    pytest.param(["patch"], marks=pytest.mark.slow),
])  # fmt: skip
def test_accelerate_launch_with_two_processes_equals_one_process(model_dir, argv):
    args = [*argv, "--model", str(model_dir / "model"), "--data", str(model_dir / "bios.csv"), "--n", "12",
            "--n-boot", "100", "--batch-size", "16", "--device", "cpu"]  # fmt: skip
    single, sharded = model_dir / f"{argv[0]}-1.parquet", model_dir / f"{argv[0]}-2.parquet"
    assert main([*args, "--out", str(single)]) == 0
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
              "--main_process_port", str(_free_port()), "-m", "attribution"]  # fmt: skip
    done = subprocess.run([*launch, *args, "--out", str(sharded)], capture_output=True, text=True, timeout=300,
                          check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("top 10 by") == 1  # only the main process reports
    _assert_same(read_table(sharded), read_table(single))
    assert not list(model_dir.glob(f"{argv[0]}-2.shard*"))
    assert np.isfinite(read_table(sharded)["value"]).all()
