"""File reading shared by the loaders: strict decoding, column checks and refusal to unpickle.

Every error names the file, the problem and the fix, so a user pointing a loader at the wrong file learns what to
change without reading the source.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".parquet")
PICKLE_SUFFIXES = (".pkl", ".pickle")


def require_file(path: str | Path, what: str = "file") -> Path:
    """Return ``path`` as a Path, or raise FileNotFoundError naming it and the fix."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"{what} {str(path)!r} does not exist or is not a file. Fix: check the path; shared data is found "
            "under BIAS_ATLAS_DATA or the config's data_root."
        )
    return path


def read_text(path: str | Path, encoding: str | None = None) -> str:
    """Read a text file, decoding strictly.

    Args:
        path: The file.
        encoding: The codec to use. ``None`` means UTF-8 (a leading byte-order mark is dropped); nothing falls back
            to another codec silently.

    Returns:
        The decoded text (line endings untouched).

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: The bytes are not valid in the codec; the message gives the offset and the fix.
    """
    path = require_file(path)
    codec = encoding or "utf-8-sig"
    data = path.read_bytes()
    try:
        return data.decode(codec)
    except UnicodeDecodeError as err:
        bad = data[err.start : err.start + 1].hex()
        raise ValueError(
            f"{path}: not valid {encoding or 'UTF-8'} text (byte 0x{bad} at offset {err.start}). Fix: re-save the "
            "file as UTF-8, or pass encoding= with the file's real codec (e.g. encoding='latin-1')."
        ) from err


def read_data_file(path: str | Path, *, encoding: str | None = None, allow_pickle: bool = False) -> pd.DataFrame:
    """Read a CSV, TSV, JSONL or parquet file into a DataFrame.

    CSV (comma) and TSV (tab) cells are read as strings (no NA guessing), so callers parse values explicitly.

    Args:
        path: The file; its suffix picks the reader.
        encoding: Codec for text formats (see :func:`read_text`).
        allow_pickle: Read ``.pkl``/``.pickle`` files. Off by default because unpickling runs arbitrary code.

    Returns:
        The table, with at least one row.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: Unsupported suffix, refused pickle, undecodable bytes, unparsable content or no data rows.
    """
    path = require_file(path)
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        if not allow_pickle:
            raise ValueError(
                f"{path}: refusing to unpickle (loading a pickle can run arbitrary code). Fix: convert it to "
                "parquet or CSV, or pass allow_pickle=True if you trust the file."
            )
        table = pd.read_pickle(path)
        if not isinstance(table, pd.DataFrame):
            raise ValueError(f"{path}: the pickle holds a {type(table).__name__}, not a pandas DataFrame.")
    elif suffix == ".parquet":
        table = pd.read_parquet(path)
    elif suffix in (".csv", ".tsv", ".jsonl"):
        text = read_text(path, encoding)
        try:
            if suffix == ".jsonl":
                table = pd.read_json(io.StringIO(text), lines=True, dtype=False)
            else:
                delimiter = "\t" if suffix == ".tsv" else ","
                table = pd.read_csv(io.StringIO(text), sep=delimiter, dtype=str, keep_default_na=False)
        except pd.errors.EmptyDataError:
            table = pd.DataFrame()
        except (pd.errors.ParserError, ValueError) as err:
            kind = suffix[1:].upper()
            raise ValueError(f"{path}: could not parse as {kind}: {err}. Fix: check the file format.") from err
    else:
        raise ValueError(
            f"{path}: unsupported file type {suffix!r}. Fix: use one of {', '.join(TABLE_SUFFIXES)} "
            "(or .pkl/.pickle with allow_pickle=True)."
        )
    if len(table) == 0:
        raise ValueError(f"{path}: the file has no data rows. Fix: point the loader at a file with data.")
    return table


def require_columns(table: pd.DataFrame, needed: Sequence[str], source: str | Path, fix: str) -> None:
    """Raise ValueError unless every column in ``needed`` is in ``table``; the message lists found and needed."""
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise ValueError(
            f"{source}: missing column(s) {missing}. Columns found: {[str(c) for c in table.columns]}; "
            f"columns needed: {list(needed)}. Fix: {fix}"
        )


def norm_value(value: object) -> str:
    """Normalise a cell for matching: lower-cased stripped text; ``1``, ``1.0`` and ``"1"`` all give ``"1"``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip().lower()


def preview(values: Iterable[object], limit: int = 5) -> list[object]:
    """The first ``limit`` distinct values, in order of appearance, for error messages."""
    seen: list[object] = []
    for v in values:
        if v not in seen:
            seen.append(v)
            if len(seen) == limit:
                break
    return seen
