"""End to end: the command lines on a checkpoint laid out as the TinyBERT general checkpoints ship on the hub."""

from __future__ import annotations

import pandas as pd
import pytest
from hub_layouts import tinybert_layout

from pipeline.cli.main import main as atlas

TEXTS = [
    "she is a nurse",
    "he is a doctor",
    "the nurse said he was",
    "the doctor said she was",
    "his nurse and her doctor",
    "her nurse and his doctor",
    "she said the doctor was",
    "he said the nurse was",
]


@pytest.fixture()
def inputs(tmp_path, one_torch_thread):
    folder = tmp_path / "TinyBERT_General_4L_312D"
    tinybert_layout(folder)
    csv = tmp_path / "task.csv"
    pd.DataFrame(
        {"text": TEXTS * 2, "label": ["nurse", "doctor"] * 8, "gender": ["f", "m", "m", "f", "m", "f", "f", "m"] * 2}
    ).to_csv(csv, index=False)
    return folder, csv


def test_importance_runs_on_a_tinybert_hub_layout(inputs, tmp_path, capsys):
    folder, csv = inputs
    out = tmp_path / "importance.csv"
    code = atlas(
        [
            "importance",
            "--model",
            str(folder),
            "--data",
            str(csv),
            "--score",
            "loss",
            "--n-boot",
            "100",
            "--out",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert len(pd.read_csv(out)) > 0 and capsys.readouterr().out.startswith("top 10 by |grad_importance|")


def test_probe_runs_on_a_tinybert_hub_layout(inputs, tmp_path, capsys):
    folder, csv = inputs
    code = atlas(
        [
            "probe",
            "run",
            "--model",
            str(folder),
            "--data",
            str(csv),
            "--folds",
            "2",
            "--no-heads",
            "--no-label",
            "--no-control",
            "--pooling",
            "mean",
            "--out",
            str(tmp_path / "o"),
            "--cache-dir",
            str(tmp_path / "c"),
        ]
    )
    assert code == 0, capsys.readouterr().err
    layers = pd.read_parquet(tmp_path / "o" / "probes_layers.parquet")
    assert sorted(set(layers["layer"])) == [0, 1, 2, 3] and layers["ci_high"].le(1).all()
