"""``bias-atlas validate`` catches before any work what ``run`` would fail on later (or compute wrongly)."""

from __future__ import annotations

import json

import pytest

from pipeline.cli.main import main
from pipeline.runs.config import ConfigError, config_from_dict
from pipeline.runs.preflight import preflight


@pytest.mark.parametrize(("section", "expected"), [
    ({"finetune": {"epochs": True}}, "`finetune.epochs` = True: True is a boolean"),
    ({"run": {"name": "t", "seeds": [2**32]}}, "seeds must be below 2\\*\\*32"),
    ({"compress": {"int8": {"orders": []}}}, "orders is empty, which would drop the method silently"),
    ({"finetune": {"lr": float("inf")}}, "`finetune.lr` = inf: Input should be a finite number"),
    ({"attribution": {"n_examples": float("nan")}}, "`attribution.n_examples`"),
])  # fmt: skip
def test_bad_values_are_refused_on_load(section, expected):
    with pytest.raises(ConfigError, match=expected):
        config_from_dict({"run": {"name": "t"}, **section})


def test_unplanned_analysis_variants_fail_validate_not_only_run(tmp_path):
    cfg = config_from_dict(
        {"run": {"name": "t", "out_dir": str(tmp_path)}, "attribution": {"variants": ["tiny-ft_after"]}}
    )
    with pytest.raises(ConfigError, match=r"attribution.variants names \['tiny-ft_after'\]"):
        preflight(cfg, load_data=False)


def test_a_teacher_folder_without_weights_or_tokenizer_is_refused(tmp_path, capsys):
    folder = tmp_path / "teacher"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    config = tmp_path / "c.toml"
    config.write_text(f'[run]\nname = "t"\nout_dir = "{tmp_path}"\n[teacher]\nsource = "{folder}"\n')
    assert main(["validate", str(config)]) == 2
    assert "has no weights and no tokenizer" in capsys.readouterr().err


def test_a_corrupt_manifest_names_the_file_and_the_fix(tmp_path, capsys):
    run = tmp_path / "r"
    run.mkdir()
    (run / "manifest.json").write_text("{not json")
    assert main(["verify", str(run)]) == 2
    err = capsys.readouterr().err
    assert "manifest.json is not valid JSON" in err and "run again" in err
