"""The command line: ``python -m probes run`` on a saved tiny model and a table file, then ``figure`` and ``table``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.schema import read_table, tidy, write_table
from probes.cli import main, markdown_tables


@pytest.fixture()
def saved_model(tiny_loaded, tmp_path):
    folder = tmp_path / "tiny-model"
    tiny_loaded.model.save_pretrained(folder)
    tiny_loaded.tokenizer.save_pretrained(folder)
    return folder


def test_run_then_figure(saved_model, bug_small, tmp_path, capsys):
    csv = tmp_path / "task.csv"
    pd.DataFrame(
        {
            "text": bug_small.texts,
            "label": [bug_small.label_names[i] for i in bug_small.labels],
            "gender": ["female" if g else "male" for g in bug_small.genders],
        }
    ).to_csv(csv, index=False)
    out = tmp_path / "out"
    code = main(
        [
            "run",
            "--model",
            str(saved_model),
            "--data",
            str(csv),
            "--n",
            "0",
            "--folds",
            "3",
            "--no-heads",
            "--pooling",
            "mean",
            "--variant",
            "tiny",
            "--out",
            str(out),
            "--cache-dir",
            str(tmp_path / "cache"),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "probe accuracy per layer" in printed and "gender selectivity" in printed
    layers = read_table(out / "probes_layers.parquet")
    assert set(layers["variant"]) == {"tiny"} and set(layers["subset"]) == {"gender", "label"}
    assert {p.name for p in out.iterdir()} == {"probes_layers.parquet", "probes_control.parquet"}
    png = tmp_path / "fig" / "curves.png"
    assert main(["figure", str(out), "--out", str(png)]) == 0
    assert png.stat().st_size > 1000
    assert main(["table", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "**tiny, mean pooling**" in printed and "control acc | selectivity |" in printed
    assert [line.split(" |")[0] for line in printed.splitlines() if line.startswith("| ") and line[2].isdigit()] == [
        "| 0",
        "| 1",
        "| 2",
        "| 3",
    ]  # hidden states of the 3-block model, once each


def test_unknown_data_is_a_clear_error(saved_model):
    with pytest.raises(FileNotFoundError, match=r"--data 'nope.csv' is neither one of \('bug'"):
        main(["run", "--model", str(saved_model), "--data", "nope.csv"])


def _rows(values: dict, **keys) -> list[dict]:
    return [
        {"unit": "layer", "metric": m, "value": v, "ci_low": v - 0.01, "ci_high": v + 0.01, "n": 100, **keys}
        for m, v in values.items()
    ]


def test_table_cells_come_from_the_right_rows(tmp_path):
    layers = []
    for layer in (0, 1):
        layers += _rows(
            {
                "probe_accuracy": 0.6 + layer / 10,
                "probe_balanced_accuracy": 0.55 + layer / 10,
                "probe_auc": 0.7 + layer / 10,
            },
            layer=layer,
            subset="gender",
            pooling="mean",
            chance=0.5,
        )
        layers += _rows(
            {"probe_accuracy": 0.3 + layer / 10, "probe_balanced_accuracy": 0.2},
            layer=layer,
            subset="label",
            pooling="mean",
            chance=0.25,
        )
    control = [
        r
        for layer in (0, 1)
        for r in _rows(
            {"control_accuracy": 0.52, "selectivity": 0.08 + layer / 10},
            layer=layer,
            subset="gender",
            pooling="mean",
            chance=0.5,
        )
    ]
    erasure = _rows(
        {"probe_accuracy": 0.9},
        layer=1,
        subset="gender",
        pooling="mean",
        chance=0.5,
        condition="before",
        erased_layer=1,
    ) + _rows(
        {"probe_accuracy": 0.45},
        layer=1,
        subset="gender",
        pooling="mean",
        chance=0.5,
        condition="after",
        erased_layer=1,
    )
    heads = [
        {
            "unit": "head",
            "layer": 0,
            "head": h,
            "metric": "probe_accuracy",
            "subset": "gender",
            "value": v,
            "ci_low": v - 0.01,
            "ci_high": v + 0.01,
            "pooling": "mean",
        }
        for h, v in enumerate([0.5, 0.8, 0.6])
    ]
    for name, rows in [
        ("probes_layers", layers),
        ("probes_control", control),
        ("erasure", erasure),
        ("probes_heads", heads),
    ]:
        write_table(tidy(rows, variant="toy"), tmp_path / f"{name}.parquet")
    text = markdown_tables(tmp_path)
    assert (
        "| 1 | 0.700 [0.690, 0.710] | 0.650 [0.640, 0.660] | 0.800 [0.790, 0.810] | 0.400 [0.390, 0.410] | "
        "0.200 [0.190, 0.210] | 0.520 [0.510, 0.530] | 0.180 [0.170, 0.190] |" in text
    )
    assert "chance accuracy: gender 0.500, label 0.250, control 0.500" in text
    assert "| 1 | mean | gender | 1 | 0.900 [0.890, 0.910] | 0.450 [0.440, 0.460] | -0.450 | 0.500 |" in text
    assert text.index("| toy | mean | 0 | 1 | 0.800") < text.index("| toy | mean | 0 | 2 | 0.600")  # best first


# --- through `bias-atlas probe`: bad arguments end in `error: ...` and exit status 2, never a traceback ----------


@pytest.fixture()
def task_csv(bug_small, tmp_path):
    csv = tmp_path / "task.csv"
    pd.DataFrame(
        {
            "text": bug_small.texts,
            "label": [bug_small.label_names[i] for i in bug_small.labels],
            "gender": ["female" if g else "male" for g in bug_small.genders],
        }
    ).to_csv(csv, index=False)
    return csv


def _atlas(capsys, argv: list[str]) -> tuple[int, str]:
    from pipeline.cli.main import main as atlas

    code = atlas(["probe", "run", *argv])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--folds", "1"], "--folds 1 is out of range: give an integer >= 2 (outer cross-validation folds; 5 is usual)."),
    (["--n", "-3"], "--n -3 is out of range: give an integer >= 0 (examples to probe; 0 = all)."),
    (["--batch-size", "0"], "--batch-size 0 is out of range: give an integer >= 1 (texts per forward pass)."),
    (["--max-length", "100000"], "--max-length 100000 is out of range: this model takes 2..128 tokens per text"),
    (["--erase", "9"], "--erase 9: layers [9] are outside this 3-block model; give hidden-state indices 0..3"),
    (["--erase", "a"], "--erase 'a': give comma-separated integers, e.g. 3,6."),
    (["--pooling", "max"], "--pooling 'max': Input should be 'cls' or 'mean'"),
    (["--n", "5"], "--n = 5 is too small for --folds = 5: give 0 (all) or at least 10 (two per fold)"),
])  # fmt: skip
def test_bad_arguments_name_the_option(saved_model, task_csv, tmp_path, capsys, argv, message):
    code, err = _atlas(
        capsys,
        [
            "--model",
            str(saved_model),
            "--data",
            str(task_csv),
            "--out",
            str(tmp_path / "o"),
            "--cache-dir",
            str(tmp_path / "c"),
            *argv,
        ],
    )
    assert code == 2 and err.startswith("error: ") and message in err and "Traceback" not in err


def test_data_errors_name_this_commands_options(saved_model, bug_small, tmp_path, capsys):
    cols = tmp_path / "cols.csv"
    pd.DataFrame({"bio": bug_small.texts, "job": bug_small.labels, "sex": bug_small.genders}).to_csv(cols)
    code, err = _atlas(capsys, ["--model", str(saved_model), "--data", str(cols)])
    assert code == 2 and "Fix: pass --text-col, --label-col and --gender-col naming the right columns" in err
    few = tmp_path / "few_women.csv"  # 30 men, 5 women: a draw of 10 rows has too few women for 5 folds
    men, women = np.flatnonzero(bug_small.genders == 0), np.flatnonzero(bug_small.genders == 1)[:5]
    rows = np.r_[men, women]
    pd.DataFrame(
        {"text": [bug_small.texts[i] for i in rows], "label": bug_small.labels[rows], "gender": bug_small.genders[rows]}
    ).to_csv(few, index=False)
    code, err = _atlas(
        capsys,
        [
            "--model",
            str(saved_model),
            "--data",
            str(few),
            "--n",
            "10",
            "--no-balance",
            "--cache-dir",
            str(tmp_path / "c"),
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert code == 2 and "Fix: raise --n or lower --folds" in err and "max_examples" not in err


def test_classifier_probe_maps_labels_onto_a_trained_head(tiny_loaded, bug_small, task_csv, tmp_path, monkeypatch):
    import probes.cli

    folder = tmp_path / "trained"
    names = (bug_small.label_names[2], "zzz", bug_small.label_names[0])  # knows 2 of the 3 classes
    config = tiny_loaded.model.config
    before = dict(config.id2label), dict(config.label2id)
    config.id2label, config.label2id = dict(enumerate(names)), {n: i for i, n in enumerate(names)}
    try:
        tiny_loaded.model.save_pretrained(folder)
    finally:
        config.id2label, config.label2id = before
    tiny_loaded.tokenizer.save_pretrained(folder)

    class Seen(Exception):
        """Raised by the stand-in of run_probes with the data it was given."""

    def stand_in(loaded, data, cfg, **kwargs):
        raise Seen(data)

    monkeypatch.setattr(probes.cli, "run_probes", stand_in)
    argv = ["run", "--model", str(folder), "--data", str(task_csv), "--head", "classifier", "--out", str(tmp_path)]
    with pytest.raises(ValueError, match=r"classes are matched by name, never by position. Fix: map them with"):
        main(argv)  # 'zzz' is no class of the data
    with pytest.raises(Seen) as seen:
        main([*argv, "--label-map", f"zzz={bug_small.label_names[1]}"])
    data = seen.value.args[0]
    assert data.label_names == names and len(data) == 60  # every data class has a head class
    assert data.texts == bug_small.texts
    renamed = {bug_small.label_names[1]: "zzz"}
    assert [names[i] for i in data.labels] == [
        renamed.get(name, name) for name in (bug_small.label_names[k] for k in bug_small.labels)
    ]
