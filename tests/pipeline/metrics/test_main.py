"""Tests for pipeline/metrics/cli.py: the documented SEAT command."""

from __future__ import annotations

from pipeline.metrics.cli import main
from pipeline.schema import read_table


def test_seat_command_prints_the_table_and_writes_rows(tmp_path, capsys):
    out = tmp_path / "seat.csv"
    code = main(["seat", "--model", "minilm", "--form", "word", "--pooling", "cls,mean", "--n-samples", "100",
                 "--n-boot", "100", "--out", str(out)])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "weat6b" in printed and "pooling" in printed and "wrote 24 rows" in printed
    table = read_table(out)
    assert len(table) == 6 * 2 * 2 and set(table.pooling) == {"cls", "mean"}


def test_seat_numbers_equal_the_direct_call_through_bias_atlas(tmp_path, capsys):
    """``bias-atlas metrics seat`` gives exactly the rows of ``seat_metrics`` called as before the command moved."""
    from pipeline.cli.main import main as bias_atlas
    from pipeline.data import load_gender_seat_tests
    from pipeline.metrics.seat import seat_metrics
    from pipeline.models import load_model

    out = tmp_path / "seat.parquet"
    assert bias_atlas(["metrics", "seat", "--form", "word", "--pooling", "mean", "--n-samples", "200", "--n-boot",
                       "100", "--out", str(out)]) == 0  # fmt: skip
    assert "SEAT effect size and permutation p" in capsys.readouterr().out
    direct = seat_metrics(load_model("minilm", head="encoder"), load_gender_seat_tests("word"), ("mean",),
                          n_samples=200, n_boot=100, seed=0)  # fmt: skip
    assert read_table(out)["value"].tolist() == direct["value"].tolist()


def test_masked_lm_benchmarks_say_why_they_cannot_run_on_an_encoder(capsys):
    assert main(["crows", "--model", "minilm", "--max-examples", "5"]) == 0
    printed = capsys.readouterr().out
    assert "nyu-mll metric.py" in printed and "skipped: no trained MLM head" in printed


def test_bad_arguments_exit_2_with_a_message(capsys):
    from pipeline.cli.main import main as bias_atlas

    assert bias_atlas(["metrics", "seat", "--pooling", "max"]) == 2
    assert "--pooling 'max'" in capsys.readouterr().err
    assert bias_atlas(["metrics", "seat", "--n-boot", "10"]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("error: --n-boot 10 is too few bootstrap resamples") and "Fix: give 0 (no intervals) or" in err
    )
    assert bias_atlas(["metrics", "weat"]) == 2
