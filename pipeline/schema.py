"""The tidy-table schema: unit names and columns shared by the pipeline, analyses, app and figures.

Every result in a run folder is a long table with one row per (variant, seed, unit, metric). Renaming a
column or a unit is a breaking change (``tests/pipeline/test_schema.py`` pins them). Tables are written
with :func:`write_table` (atomic: temp file then rename) and read with :func:`read_table`.

Columns:
    variant   model variant, named by recipe (``teacher-ft``, ``distil-ft_after``, ``prune30-ft_before``...)
    seed      fine-tuning / training seed of the variant
    unit      what the row is about: ``model``, ``layer``, ``head``, ``neuron``, ``token``, ``class``, ``edge``
    layer     0-based layer index (-1 when not applicable; 0 = embeddings in probe tables where stated)
    head      head index within the layer, or neuron index for unit ``neuron`` (-1 when not applicable)
    metric    what was measured (``accuracy``, ``gap_rms``, ``delta_score``...)
    subset    data subset or condition (``all``, ``gender``, ``female``, ``cls``...; ``""`` when none)
    value     the number
    ci_low, ci_high   confidence interval (NaN when none)
    n         number of examples behind the value

An ``edge`` row (edge attribution, circuits) is written by its receiving node: ``layer`` and ``head`` of the reader
(an FFN block: ``head`` -1; the readout: both -1), ``subset`` the edge's name ``"<sender>-><reader>"`` (nodes named
``emb``, ``L1.H3``, ``L1.FFN``, ``readout``, with original head ids), and the sender again in the extra columns
``source``, ``source_layer``, ``source_head`` (the embeddings: layer -1).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.files import atomic_path

__all__ = ["COLUMNS", "UNITS", "SchemaError", "read_table", "tidy", "write_table"]

UNITS: tuple[str, ...] = ("model", "layer", "head", "neuron", "token", "class", "edge")
COLUMNS: tuple[str, ...] = (
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
_DTYPES = {
    "variant": "string",
    "seed": "int64",
    "unit": "string",
    "layer": "int64",
    "head": "int64",
    "metric": "string",
    "subset": "string",
    "value": "float64",
    "ci_low": "float64",
    "ci_high": "float64",
    "n": "int64",
}
_DEFAULTS = {
    "unit": "model",
    "layer": -1,
    "head": -1,
    "subset": "",
    "ci_low": np.nan,
    "ci_high": np.nan,
    "n": 0,
    "seed": 0,
}


class SchemaError(ValueError):
    """A table does not follow the tidy schema."""


def tidy(rows: list[dict] | pd.DataFrame, **constant) -> pd.DataFrame:
    """Build a schema-conformant frame from row dicts, filling defaults and ``constant`` columns.

    Extra columns (e.g. ``delta`` for IG convergence, ``text`` for tokens) are kept after the schema columns.

    Raises:
        SchemaError: a required column (``variant``, ``metric``, ``value``) is missing or a unit is unknown.
    """
    frame = pd.DataFrame(rows).copy()
    for key, val in constant.items():
        frame[key] = val
    for col, default in _DEFAULTS.items():
        if col not in frame:
            frame[col] = default
    missing = [c for c in COLUMNS if c not in frame]
    if missing:
        raise SchemaError(f"table is missing required columns {missing}; every row needs variant, metric and value.")
    bad_units = sorted(set(frame["unit"]) - set(UNITS))
    if bad_units:
        raise SchemaError(f"unknown unit(s) {bad_units}; allowed: {', '.join(UNITS)}.")
    frame = frame.fillna({c: _DEFAULTS[c] for c in ("layer", "head", "n", "seed", "subset")})
    frame = frame.astype({c: _DTYPES[c] for c in COLUMNS})
    extra = [c for c in frame.columns if c not in COLUMNS]
    return frame[list(COLUMNS) + extra].reset_index(drop=True)


def write_table(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write ``frame`` to parquet (or CSV by suffix) atomically: a temp file in the same folder, then rename."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if path.suffix == ".csv":
            frame.to_csv(tmp, index=False)
        else:
            frame.to_parquet(tmp, index=False)
    return path


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a table written by :func:`write_table` and check it has the schema columns."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"table {path} does not exist; run the stage that writes it (bias-atlas run).")
    frame = pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)
    missing = [c for c in COLUMNS if c not in frame]
    if missing:
        raise SchemaError(f"{path} is missing schema columns {missing}; it was not written by this tool.")
    return frame
