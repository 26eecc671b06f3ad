"""Bias in Bios: occupation classification from online biographies.

De-Arteaga et al. (2019), "Bias in Bios: A Case Study of Semantic Representation Bias in a High-Stakes Setting",
FAT* '19. Real runs read the Hugging Face copy ``LabHC/bias_in_bios`` (Ravfogel et al. 2020's version; columns
``hard_text``, ``profession`` as an int 0..27, ``gender`` 0 = male, 1 = female). Offline, any local CSV/JSONL/parquet
file or folder with the same columns works, with professions as ints or names and genders as ints or words, such as
the 280-row sample in ``shared/data/bias_in_bios/sample``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.data._io import PICKLE_SUFFIXES, TABLE_SUFFIXES, norm_value, preview, read_data_file, require_columns
from pipeline.data.task import TaskData, check_usable, parse_genders

__all__ = ["BIOS_HUB_ID", "BIOS_PROFESSIONS", "load_bias_in_bios"]

BIOS_HUB_ID = "LabHC/bias_in_bios"

# Class names in the hub's label order: ``profession == i`` means ``BIOS_PROFESSIONS[i]`` (the dataset card's
# table; alphabetical). They are also the file names of the offline sample.
BIOS_PROFESSIONS = (
    "accountant", "architect", "attorney", "chiropractor", "comedian", "composer", "dentist", "dietitian", "dj",
    "filmmaker", "interior_designer", "journalist", "model", "nurse", "painter", "paralegal", "pastor",
    "personal_trainer", "photographer", "physician", "poet", "professor", "psychologist", "rapper",
    "software_engineer", "surgeon", "teacher", "yoga_teacher",
)  # fmt: skip

_COLUMNS = ["hard_text", "profession", "gender"]
_HUB_SPLITS = ("train", "dev", "test")


def _profession_ids(values: Sequence[object], source: str | Path) -> np.ndarray:
    """Map hub ints (0..27) or names (any case; spaces or hyphens for underscores) to class ids."""
    by_name = {name: i for i, name in enumerate(BIOS_PROFESSIONS)}
    by_name.update({str(i): i for i in range(len(BIOS_PROFESSIONS))})
    keys = [norm_value(v).replace(" ", "_").replace("-", "_") for v in values]
    unknown = [k for k in keys if k not in by_name]
    if unknown:
        raise ValueError(
            f"{source}: column 'profession' has values {preview(unknown)} that are not Bias in Bios professions "
            f"({len(unknown)} rows). Accepted: ints 0..{len(BIOS_PROFESSIONS) - 1} in the hub's order or the names "
            f"{list(BIOS_PROFESSIONS)}. Fix: rename or drop those rows, or use load_table_task for other labels."
        )
    return np.array([by_name[k] for k in keys], dtype=np.int64)


def _from_hub(source: str, split: str) -> pd.DataFrame:
    if split not in _HUB_SPLITS:
        raise ValueError(f"split={split!r}: the hub dataset {source} has splits {list(_HUB_SPLITS)}.")
    try:
        import datasets
    except ImportError as err:
        raise ImportError(
            f"loading {source!r} from the Hugging Face hub needs the `datasets` package: pip install datasets "
            "(or pip install 'bias-atlas[hub]'). Offline, pass a local file or folder instead."
        ) from err
    return datasets.load_dataset(source, split=split).to_pandas()


def _local_files(folder: Path, pattern: str, exclude: Sequence[str], allow_pickle: bool) -> list[Path]:
    suffixes = TABLE_SUFFIXES + (PICKLE_SUFFIXES if allow_pickle else ())
    files = sorted(
        p
        for p in folder.iterdir()
        if p.is_file()
        and p.suffix.lower() in suffixes
        and fnmatch.fnmatch(p.name, pattern)
        and not any(fnmatch.fnmatch(p.name, ex) for ex in exclude)
    )
    if not files:
        raise FileNotFoundError(
            f"{folder}: no {'/'.join(suffixes)} file matches pattern={pattern!r} (exclude={list(exclude)}). "
            "Fix: check the folder, pattern and exclude arguments."
        )
    return files


def load_bias_in_bios(
    source: str | Path,
    *,
    split: str = "train",
    pattern: str = "*",
    exclude: Sequence[str] = ("*_complete.csv",),
    encoding: str | None = None,
    allow_pickle: bool = False,
) -> TaskData:
    """Load Bias in Bios from the hub or from local files.

    Class ids always follow :data:`BIOS_PROFESSIONS` (28 classes, the hub's order), whatever subset of professions
    a local source holds, so ids agree between the hub and local copies.

    The default ``exclude`` skips ``*_complete.csv``: the offline sample folder holds 10 bios per profession plus
    ``accountant_complete.csv``, 1,000 accountant bios (2 of them also in ``accountant.csv``); reading it would
    double-count accountants and make them 78% of the sample. Pass ``exclude=()`` to read every file.

    Args:
        source: ``"LabHC/bias_in_bios"`` (needs ``datasets`` and the network), or a local file, or a folder whose
            matching CSV/TSV/JSONL/parquet files are read and concatenated in name order.
        split: Hub split: ``"train"``, ``"dev"`` or ``"test"``. Ignored for local sources.
        pattern: Glob on file names inside a folder.
        exclude: Globs of file names to skip inside a folder.
        encoding: Codec of text files; default strict UTF-8.
        allow_pickle: Permit ``.pkl``/``.pickle`` files (unpickling runs arbitrary code).

    Returns:
        The task, named ``"bias_in_bios-<split>"`` from the hub and ``"bias_in_bios"`` otherwise.

    Raises:
        ImportError: The hub is asked for and ``datasets`` is not installed.
        FileNotFoundError: The local source does not exist or a folder has no matching file.
        ValueError: Bad file type or encoding, missing columns, unknown professions or genders, one class.
    """
    if str(source) == BIOS_HUB_ID:
        table, origin, name = _from_hub(BIOS_HUB_ID, split), BIOS_HUB_ID, f"bias_in_bios-{split}"
    else:
        path = Path(source).expanduser()
        if not path.exists():
            raise FileNotFoundError(
                f"Bias in Bios source {str(path)!r} does not exist. Fix: pass a local file or folder with columns "
                f"{_COLUMNS}, or the hub id {BIOS_HUB_ID!r}."
            )
        files = _local_files(path, pattern, exclude, allow_pickle) if path.is_dir() else [path]
        tables = []
        for file in files:
            part = read_data_file(file, encoding=encoding, allow_pickle=allow_pickle)
            require_columns(part, _COLUMNS, file, "give Bias in Bios data (columns hard_text, profession, gender).")
            tables.append(part[_COLUMNS])
        table, origin, name = pd.concat(tables, ignore_index=True), path, "bias_in_bios"
    require_columns(table, _COLUMNS, origin, "give Bias in Bios data (columns hard_text, profession, gender).")
    data = TaskData(
        name=name,
        texts=tuple(str(t) for t in table["hard_text"]),
        labels=_profession_ids(table["profession"].tolist(), origin),
        genders=parse_genders(table["gender"].tolist(), source=origin, column="gender"),
        label_names=BIOS_PROFESSIONS,
    )
    return check_usable(data, origin)
