"""Command line: each subcommand on a saved tiny model and a table file, output table and printed top-k."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from attribution.cli import main
from pipeline.schema import read_table


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tiny_loaded, tiny_task):
    folder = tmp_path_factory.mktemp("cli")
    loaded = tiny_loaded("bert", num_labels=3)
    loaded.model.save_pretrained(folder / "model")
    loaded.tokenizer.save_pretrained(folder / "model")
    pd.DataFrame({"text": tiny_task.texts, "label": [tiny_task.label_names[i] for i in tiny_task.labels],
                  "gender": ["m" if g == 0 else "f" for g in tiny_task.genders]}).to_csv(folder / "bios.csv")
    return folder


@pytest.mark.parametrize("argv", [
    ["ablate", "--mode", "layer"], ["ablate", "--mode", "cumulative"], ["importance", "--score", "loss"],
    ["ig", "--over", "neurons", "--steps", "24"], ["ig", "--over", "tokens", "--steps", "8", "--score", "prob"],
    ["patch", "--engine", "lens"],
])  # fmt: skip
def test_subcommands_write_tables_and_print_top_k(model_dir, capsys, argv):
    out = model_dir / f"{'_'.join(argv)}.csv"
    code = main([*argv, "--model", str(model_dir / "model"), "--data", str(model_dir / "bios.csv"), "--n", "12",
                 "--n-boot", "10", "--top-k", "3", "--out", str(out)])  # fmt: skip
    assert code == 0
    table = read_table(out)
    assert set(table["variant"]) == {str(model_dir / "model")} and len(table) > 3
    printed = capsys.readouterr().out
    assert printed.startswith("top 3 by |") and len(printed.strip().splitlines()) == 5


def test_gate_independent_score_exits_with_a_message(model_dir, tmp_path, capsys, tiny_tokenizer):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(model_dir / "model")
    with torch.no_grad():
        model.classifier.weight.zero_()
    model.save_pretrained(tmp_path / "flat")
    tiny_tokenizer.save_pretrained(tmp_path / "flat")
    code = main(["importance", "--model", str(tmp_path / "flat"), "--data", str(model_dir / "bios.csv"),
                 "--score", "loss", "--n", "6"])  # fmt: skip
    assert code == 2 and "does not depend on the heads" in capsys.readouterr().err


def test_unknown_data_is_refused(model_dir):
    with pytest.raises(SystemExit, match="not a known dataset"):
        main(["ablate", "--model", str(model_dir / "model"), "--data", "no_such_table.csv"])


@pytest.mark.parametrize("argv", [["importance"], ["ablate", "--mode", "layer", "--out", "x.csv"], ["ig"]])
def test_sharded_runs_need_a_splittable_command_and_out(model_dir, monkeypatch, argv):
    from attribution import shard

    monkeypatch.setattr(shard, "current_shard", lambda device: (shard.Shard(0, 2), device))
    with pytest.raises(SystemExit, match="accelerate launch needs --out"):
        main([*argv, "--model", str(model_dir / "model"), "--data", str(model_dir / "bios.csv")])
