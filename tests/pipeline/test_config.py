"""Config validation: every bad input of the issue is a clear error before any model is built."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.cli.full_run import run
from pipeline.runs.config import ConfigError, RunConfig, config_from_dict, load_config
from pipeline.runs.run import preflight

REPO = Path(__file__).resolve().parents[2]


def _cfg(tmp_path: Path, **sections) -> RunConfig:
    return config_from_dict({"run": {"name": "t", "out_dir": str(tmp_path / "runs")}, **sections})


def test_typo_names_the_key_suggests_the_fix_and_lists_allowed(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[run]\nname = "x"\n[finetune]\nepoch = 2\n')
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert "`finetune.epoch`: unknown key. Did you mean `epochs`?" in msg
    assert "Allowed keys in [finetune]: epochs, lr, batch_size" in msg


@pytest.mark.parametrize(
    "sections,expected",
    [
        (
            {"compress": {"prune": {"sparsities": [0.5, 1.0]}}},
            r"compress.prune.sparsities.*sparsities\[1\] = 1.0 is outside \[0, 1\)",
        ),
        ({"compress": {"prune": {"fractions": [-0.1]}}}, r"fractions\[0\] = -0.1 is outside \[0, 1\)"),
        (
            {"compress": {"prune": {"orders": ["none"]}}},
            r"head importance needs a fine-tuned classifier\); allowed: \['before', 'both'\]",
        ),
        ({"compress": {"int8": {"orders": ["after"]}}}, "an int8 model cannot be fine-tuned"),
        ({"compress": {"distil": {"layer_map": [0, 4, 2]}}}, "strictly increasing"),
        ({"compress": {"tiny": {"hidden_size": 100, "n_heads": 12}}}, "not a multiple of n_heads"),
        ({"task": {"dataset": "imdb"}}, r"`task.dataset` = 'imdb': Input should be 'bug', 'bias_in_bios' or 'table'"),
        ({"task": {"dataset": "table", "path": "x.csv"}}, r"needs \['text_col', 'label_col', 'gender_col'\]"),
        ({"run": {"name": "t", "seeds": [1, 1]}}, "seeds lists a value twice"),
        ({"run": {"name": "t", "amp": "fp8"}}, r"`run.amp` = 'fp8'"),
        ({"teachr": {"source": "x"}}, r"`teachr`: unknown key. Did you mean `teacher`\?"),
        ({"probes": {"layers": 3}}, r"`probes.layers`: unknown key. Did you mean `erasure_layers`\?"),
        ({"probes": {"max_examples": 6}}, r"max_examples = 6 is too small for n_folds = 5"),
        ({"attribution": {"ablation_modes": ["single", "pairs"]}}, r"`attribution.ablation_modes\[1\]` = 'pairs'"),
        (
            {"metrics": {"metrics": ["seat", "weat"]}},
            r"`metrics.metrics` = \['seat', 'weat'\]: unknown metric family 'weat' \(did you mean 'seat'\?\)",
        ),
        ({"metrics": {"poolings": ["cls", "cls"]}}, r"poolings lists a value twice"),
        ({"attribution": {"n_boot": 10}}, r"n_boot = 10: intervals from fewer than 100 resamples are too coarse"),
        ({"metrics": {"n_boot": 50}}, r"use 0 \(no intervals\) or at least 100"),
        ({"probes": {"n_boot": 0}}, r"n_boot = 0: .* use at least 100"),
    ],
)
def test_bad_values_name_key_value_and_allowed(sections, expected):
    data = {"run": {"name": "t"}, **sections}
    with pytest.raises(ConfigError, match=expected):
        config_from_dict(data)


def test_missing_name_and_bad_toml(tmp_path):
    with pytest.raises(ConfigError, match=r"`run`: required key is missing"):
        config_from_dict({})
    path = tmp_path / "bad.toml"
    path.write_text("[run\nname = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)
    with pytest.raises(FileNotFoundError, match="configs/demo.toml"):
        load_config(tmp_path / "nope.toml")


def test_unknown_model_family_fails_preflight(tmp_path):
    folder = tmp_path / "roberta"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "roberta"}))
    cfg = _cfg(tmp_path, teacher={"source": str(folder)})
    with pytest.raises(
        ConfigError, match=r"teacher.source = .* is a 'roberta' model; supported families: bert, distilbert"
    ):
        preflight(cfg, load_data=False)
    hub = _cfg(tmp_path, hub_students=[{"source": str(folder), "name": "r"}])
    with pytest.raises(ConfigError, match=r"hub_students\[0\].source"):
        preflight(hub, load_data=False)


def test_layer_maps_out_of_range_fail_preflight(tmp_path):
    cfg = _cfg(tmp_path, compress={"distil": {"layer_map": [0, 2, 7]}})
    with pytest.raises(ConfigError, match=r"compress.distil.layer_map = \[0, 2, 7\]: \[7\] is out of range.*0\.\.5"):
        preflight(cfg, load_data=False)
    cfg = _cfg(tmp_path, compress={"tiny": {"n_layers": 2, "layer_map": [3, 6]}})
    with pytest.raises(ConfigError, match=r"compress.tiny.layer_map"):
        preflight(cfg, load_data=False)
    cfg = _cfg(tmp_path, compress={"tiny": {"hidden_size": 100}})  # 12 heads by default
    with pytest.raises(ConfigError, match="not a multiple of n_heads 12"):
        preflight(cfg, load_data=False)


def test_unwritable_output_folder_fails_before_work(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    cfg = config_from_dict({"run": {"name": "t", "out_dir": str(blocker / "runs")}})
    with pytest.raises(ConfigError, match=r"run.out_dir = .* is not writable .*not a folder"):
        run(cfg)
    assert not (blocker.parent / "runs").exists()


def test_fp16_on_cpu_is_refused(tmp_path):
    cfg = config_from_dict({"run": {"name": "t", "out_dir": str(tmp_path), "amp": "fp16", "device": "cpu"}})
    with pytest.raises(ConfigError, match="fp16"):
        preflight(cfg, load_data=False)


def test_dataset_with_one_class_fails_before_work(tmp_path):
    table = tmp_path / "one.csv"
    table.write_text("text,job,gender\nshe sings,singer,f\nhe sings,singer,m\nhe sings too,singer,m\n")
    cfg = _cfg(
        tmp_path,
        task={"dataset": "table", "path": str(table), "text_col": "text", "label_col": "job", "gender_col": "gender"},
    )
    with pytest.raises(ConfigError, match=r"task \(dataset = 'table'.*least two classes"):
        run(cfg)
    assert not (tmp_path / "runs").exists()


def test_shipped_configs_validate_and_paper_dry_runs_offline(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    demo = load_config(REPO / "configs/demo.toml")
    assert demo.teacher.source == "minilm" and demo.compress.int8 is not None
    paper = load_config(REPO / "configs/paper.toml")
    assert len(paper.run.seeds) >= 3 and paper.task.training_sets == ("original", "balanced", "cda")
    paper = paper.model_copy(update={"run": paper.run.model_copy(update={"out_dir": tmp_path})})
    result = run(paper, dry_run=True)
    out = capsys.readouterr().out
    assert "hub-tinybert-ft_after@balanced" in out and "distil_mixup-ft_both" in out
    assert "distil_biasprune12h-ft_before@cda" in out and "tiny_erase-ft_before@balanced" in out
    assert {s.seed for s in result.plan} == {0, 1, 2} and not (tmp_path / "paper").exists()
