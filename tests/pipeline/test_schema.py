"""The tidy schema is API: pin the names, check defaults, atomic writes and clear errors."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from pipeline.schema import COLUMNS, UNITS, SchemaError, read_table, tidy, write_table


def test_schema_names_are_pinned():
    assert COLUMNS == (
        "variant",
        "seed",
        "unit",
        "layer",
        "head",
        "metric",
        "subset",
        "value",
        "ci_low",
        "ci_high",
        "n",
    )
    assert UNITS == ("model", "layer", "head", "neuron", "token", "class", "edge")


def test_tidy_fills_defaults_and_keeps_extras():
    frame = tidy([{"metric": "accuracy", "value": 0.5, "delta": 0.01}], variant="teacher-ft", seed=1)
    row = frame.iloc[0]
    assert list(frame.columns) == [*COLUMNS, "delta"]
    assert (row["unit"], row["layer"], row["head"], row["subset"], row["n"], row["seed"]) == ("model", -1, -1, "", 0, 1)
    assert math.isnan(row.ci_low)


def test_tidy_rejects_missing_columns_and_units():
    with pytest.raises(SchemaError, match="missing required columns"):
        tidy([{"metric": "x"}], variant="v")
    with pytest.raises(SchemaError, match="unknown unit"):
        tidy([{"metric": "x", "value": 1.0, "unit": "blob"}], variant="v")


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_write_is_atomic_and_round_trips(tmp_path, suffix):
    frame = tidy([{"metric": "m", "value": 1.5, "unit": "head", "layer": 2, "head": 3}], variant="v")
    path = write_table(frame, tmp_path / f"t{suffix}")
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left behind
    back = read_table(path)
    assert back.loc[0, "value"] == 1.5 and back.loc[0, "head"] == 3


def test_read_table_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="bias-atlas run"):
        read_table(tmp_path / "absent.parquet")
    pd.DataFrame({"a": [1]}).to_parquet(tmp_path / "x.parquet")
    with pytest.raises(SchemaError, match="missing schema columns"):
        read_table(tmp_path / "x.parquet")
