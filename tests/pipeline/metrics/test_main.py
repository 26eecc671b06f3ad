"""Tests for pipeline/metrics/cli.py: the documented SEAT command."""

from __future__ import annotations

from pipeline.metrics.cli import main
from pipeline.schema import read_table


def test_seat_command_prints_the_table_and_writes_rows(tmp_path, capsys):
    out = tmp_path / "seat.csv"
    code = main(["seat", "--model", "minilm", "--form", "word", "--pooling", "cls,mean", "--n-samples", "100",
                 "--n-boot", "10", "--out", str(out)])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "weat6b" in printed and "pooling" in printed and "wrote 24 rows" in printed
    table = read_table(out)
    assert len(table) == 6 * 2 * 2 and set(table.pooling) == {"cls", "mean"}
