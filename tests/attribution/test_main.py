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
    loaded.model.config.id2label = dict(enumerate(tiny_task.label_names))  # classes matched by name: the data's
    loaded.model.config.label2id = {name: i for i, name in enumerate(tiny_task.label_names)}
    loaded.model.save_pretrained(folder / "model")
    loaded.tokenizer.save_pretrained(folder / "model")
    pd.DataFrame(
        {
            "text": tiny_task.texts,
            "label": [tiny_task.label_names[i] for i in tiny_task.labels],
            "gender": ["m" if g == 0 else "f" for g in tiny_task.genders],
        }
    ).to_csv(folder / "bios.csv")
    return folder


@pytest.mark.parametrize("argv", [
    ["ablate", "--mode", "layer"], ["ablate", "--mode", "cumulative"], ["importance", "--score", "loss"],
    ["ig", "--over", "neurons", "--steps", "24"], ["ig", "--over", "tokens", "--steps", "8", "--score", "prob"],
    ["patch", "--engine", "lens"],
])  # fmt: skip
def test_subcommands_write_tables_and_print_top_k(model_dir, capsys, argv):
    out = model_dir / f"{'_'.join(argv)}.csv"
    code = main([*argv, "--model", str(model_dir / "model"), "--data", str(model_dir / "bios.csv"), "--n", "12",
                 "--n-boot", "100", "--top-k", "3", "--out", str(out)])  # fmt: skip
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


# --- through `bias-atlas`: bad arguments end in `error: ...` and exit status 2, never a traceback -----------------


def _atlas(capsys, argv: list[str]) -> tuple[int, str]:
    from pipeline.cli.main import main as atlas

    code = atlas(argv)
    return code, capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["ig", "--steps", "0"], "--steps 0 is out of range: give an integer >= 1 (integration steps; 32 is usual)."),
    (["importance", "--n", "-3"], "--n -3 is out of range: give an integer >= 0 (examples drawn; 0 = all)."),
    (["importance", "--batch-size", "0"], "--batch-size 0 is out of range: give an integer >= 1 (rows per forward"),
    (["importance", "--n-boot", "10"], ("--n-boot 10 is too few bootstrap resamples: intervals from fewer than 100 "
                                         "are too coarse to trust")),
    (["ablate", "--top-k", "0"], "--top-k 0 is out of range: give an integer >= 1 (units printed)."),
    (["importance", "--max-length", "100000"], ("--max-length 100000 is out of range: this model takes 2..64 tokens "
                                                "per text (config.max_position_embeddings); give a value in that "
                                                "range, e.g. 64.")),
    (["patch", "--score", "prob", "--max-length", "1"], "--max-length 1 is out of range: this model takes 2..64"),
])  # fmt: skip
def test_bad_arguments_name_the_option(model_dir, capsys, argv, message):
    code, err = _atlas(capsys, [*argv, "--model", str(model_dir / "model"), "--data", str(model_dir / "bios.csv")])
    assert code == 2 and err.startswith("error: ") and message in err and "Traceback" not in err


def test_table_errors_name_this_commands_options(model_dir, tmp_path, capsys):
    bad_cols = tmp_path / "cols.csv"
    pd.DataFrame({"bio": ["she is a nurse", "he is a pilot"], "job": ["a", "b"], "sex": ["f", "m"]}).to_csv(bad_cols)
    code, err = _atlas(capsys, ["importance", "--model", str(model_dir / "model"), "--data", str(bad_cols)])
    assert code == 2 and "Fix: pass --text-col, --label-col and --gender-col naming the right columns" in err
    bad_gender = tmp_path / "gender.csv"
    pd.DataFrame({"text": ["she is a nurse", "he is a pilot"], "label": ["a", "b"], "gender": ["f", "x"]}).to_csv(
        bad_gender
    )
    code, err = _atlas(capsys, ["importance", "--model", str(model_dir / "model"), "--data", str(bad_gender)])
    assert code == 2 and "recode those values in the file as male / female" in err and "gender_map" not in err


# --- a trained classifier head keeps its classes; the data are mapped onto them by name ---------------------------


@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory, tiny_loaded):
    """A tiny classifier whose trained head knows the classes c, a and 'nurse' (in that order), not b."""
    folder = tmp_path_factory.mktemp("trained") / "teacher-ft"
    loaded = tiny_loaded("bert", num_labels=3, seed=5)
    loaded.model.config.id2label = {0: "c", 1: "a", 2: "nurse"}
    loaded.model.config.label2id = {"c": 0, "a": 1, "nurse": 2}
    loaded.model.save_pretrained(folder)
    loaded.tokenizer.save_pretrained(folder)
    return folder, loaded.model.classifier.weight.detach().clone()


def _spy(monkeypatch) -> dict:
    from attribution import cli

    seen: dict = {}
    load, build = cli.load_classifier_for, cli._attribution_data

    def load_classifier_for(*args, **kwargs):
        seen["loaded"], data = load(*args, **kwargs)
        return seen["loaded"], data

    def attribution_data(loaded, source, *args):
        seen["source"] = source
        return build(loaded, source, *args)

    monkeypatch.setattr(cli, "load_classifier_for", load_classifier_for)
    monkeypatch.setattr(cli, "_attribution_data", attribution_data)
    return seen


def test_a_head_class_the_data_lacks_is_refused_then_mapped_by_label_map(model_dir, trained_dir, monkeypatch, capsys):
    folder, weight = trained_dir
    argv = ["importance", "--model", str(folder), "--data", str(model_dir / "bios.csv"), "--score", "loss", "--n", "0",
            "--n-boot", "100"]  # fmt: skip
    code, err = _atlas(capsys, argv)  # the head's 'nurse' is no class of the data (a, b, c)
    assert code == 2 and "trained classifier head for the classes ['c', 'a', 'nurse']" in err
    assert "Fix: map them with --label-map c=a,..." in err and "Traceback" not in err
    seen = _spy(monkeypatch)
    code, err = _atlas(capsys, [*argv, "--label-map", "nurse=b"])  # c and a keep their names
    assert code == 0, err
    source, csv = seen["source"], pd.read_csv(model_dir / "bios.csv")
    assert source.label_names == ("c", "a", "nurse")  # the model's ids, not the CSV's sorted a, b, c
    assert source.texts == tuple(csv["text"])  # every data class has a head class: no row dropped
    assert [source.label_names[i] for i in source.labels] == [{"b": "nurse"}.get(x, x) for x in csv["label"]]
    assert torch.equal(seen["loaded"].model.classifier.weight, weight)  # the head as saved, rows not reordered


def test_unnamed_label_k_heads_need_a_label_map(tiny_loaded, model_dir, tmp_path, capsys):
    unnamed = tmp_path / "unnamed"
    loaded = tiny_loaded("bert", num_labels=3)  # transformers' default names LABEL_0..LABEL_2
    loaded.model.save_pretrained(unnamed)
    loaded.tokenizer.save_pretrained(unnamed)
    argv = ["importance", "--model", str(unnamed), "--data", str(model_dir / "bios.csv"), "--score", "loss", "--n",
            "6", "--n-boot", "100"]  # fmt: skip
    code, err = _atlas(capsys, argv)
    assert code == 2 and "unnamed classes (transformers' default LABEL_k names)" in err and "LABEL_0=a" in err
    code, err = _atlas(capsys, [*argv, "--label-map", "LABEL_0=a,LABEL_1=b,LABEL_2=a"])  # a twice
    assert code == 2 and "to a distinct class of the data" in err
    code, err = _atlas(capsys, [*argv, "--label-map", "LABEL_0"])
    assert code == 2 and "give HEAD=DATA pairs separated by commas" in err
    code, err = _atlas(capsys, [*argv, "--label-map", "LABEL_0=c,LABEL_1=b,LABEL_2=a"])
    assert code == 0, err
    code, err = _atlas(capsys, ["importance", "--model", "minilm", "--score", "loss", "--label-map", "LABEL_0=a"])
    assert code == 2 and "'minilm' has no trained classifier head, so --label-map has nothing to map" in err


def test_bug_on_a_trained_head_maps_the_named_classes(trained_dir, monkeypatch, capsys):
    folder, weight = trained_dir
    seen = _spy(monkeypatch)
    argv = ["importance", "--model", str(folder), "--data", "bug", "--score", "loss", "--n", "8", "--n-boot", "100"]
    code, err = _atlas(capsys, argv)
    assert code == 2 and "['c', 'a', 'nurse']" in err  # c and a are no BUG classes
    code, err = _atlas(capsys, [*argv, "--label-map", "c=administrator,a=agent"])
    assert code == 0, err
    loaded, source = seen["loaded"], seen["source"]
    assert loaded.model.config.num_labels == 3 and torch.equal(loaded.model.classifier.weight, weight)
    assert source.label_names == ("c", "a", "nurse") and len(source) == 8  # BUG's other classes are dropped


def test_disjoint_labels_are_refused_naming_both_sets(trained_dir, tmp_path, capsys):
    folder, _ = trained_dir
    other = tmp_path / "other.csv"
    pd.DataFrame({"text": ["she is a cook", "he is a pilot"], "label": ["cook", "pilot"], "gender": ["f", "m"]}).to_csv(
        other
    )
    code, err = _atlas(capsys, ["importance", "--model", str(folder), "--data", str(other), "--score", "loss"])
    assert code == 2 and "trained classifier head for the classes ['c', 'a', 'nurse']" in err
    assert "but the data's classes are ['cook', 'pilot']" in err
