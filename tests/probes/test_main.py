"""The command line: ``python -m probes run`` on a saved tiny model and a table file, then ``figure``."""

from __future__ import annotations

import pandas as pd
import pytest

from pipeline.schema import read_table
from probes.__main__ import main


@pytest.fixture()
def saved_model(tiny_loaded, tmp_path):
    folder = tmp_path / "tiny-model"
    tiny_loaded.model.save_pretrained(folder)
    tiny_loaded.tokenizer.save_pretrained(folder)
    return folder


def test_run_then_figure(saved_model, bug_small, tmp_path, capsys):
    csv = tmp_path / "task.csv"
    pd.DataFrame({"text": bug_small.texts, "label": [bug_small.label_names[i] for i in bug_small.labels],
                  "gender": ["female" if g else "male" for g in bug_small.genders]}).to_csv(csv, index=False)
    out = tmp_path / "out"
    code = main(["run", "--model", str(saved_model), "--data", str(csv), "--n", "0", "--folds", "3", "--no-heads",
                 "--pooling", "mean", "--variant", "tiny", "--out", str(out), "--cache-dir", str(tmp_path / "cache")])
    assert code == 0
    printed = capsys.readouterr().out
    assert "probe accuracy per layer" in printed and "gender selectivity" in printed
    layers = read_table(out / "probes_layers.parquet")
    assert set(layers["variant"]) == {"tiny"} and set(layers["subset"]) == {"gender", "label"}
    assert {p.name for p in out.iterdir()} == {"probes_layers.parquet", "probes_control.parquet"}
    png = tmp_path / "fig" / "curves.png"
    assert main(["figure", str(out), "--out", str(png)]) == 0
    assert png.stat().st_size > 1000


def test_unknown_data_is_a_clear_error(saved_model):
    with pytest.raises(FileNotFoundError, match=r"--data 'nope.csv' is neither one of \('bug'"):
        main(["run", "--model", str(saved_model), "--data", "nope.csv"])
