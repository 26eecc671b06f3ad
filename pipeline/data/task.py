"""Task datasets for occupation classification with a binary gender attribute.

The extrinsic task follows Bias in Bios (De-Arteaga et al. 2019, "Bias in Bios: A Case Study of Semantic
Representation Bias in a High-Stakes Setting", FAT* '19): predict the occupation from a text, and measure how the
model's errors differ between women and men. A :class:`TaskData` holds texts, class ids and gender ids; loaders for
BUG and Bias in Bios live in :mod:`pipeline.data.bug` and :mod:`pipeline.data.bias_in_bios`, and
:func:`load_table_task` reads any table. :func:`split_task` makes stratified train/dev/test splits and
:func:`rebalance_genders` builds the gender-balanced setting of Leteno et al. (2023).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.data._io import norm_value, preview, read_data_file, require_columns

__all__ = [
    "FEMALE",
    "GENDER_NAMES",
    "MALE",
    "SPLIT_NAMES",
    "TaskData",
    "load_table_task",
    "parse_genders",
    "rebalance_genders",
    "split_indices",
    "split_task",
]

logger = logging.getLogger(__name__)

MALE = 0
FEMALE = 1
GENDER_NAMES = ("male", "female")  # indexed by gender id
SPLIT_NAMES = ("train", "dev", "test")

_GENDER_WORDS = {
    "0": MALE, "m": MALE, "male": MALE, "man": MALE, "1": FEMALE, "f": FEMALE, "female": FEMALE, "woman": FEMALE,
}  # fmt: skip


def _int_array(values: object, field: str) -> np.ndarray:
    """A read-only 1-D int64 copy of ``values``; ValueError if they are not integers."""
    arr = np.asarray(values)
    if arr.size == 0:
        arr = arr.astype(np.int64)
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise ValueError(
            f"TaskData.{field} must be a 1-D array of integers, got dtype {arr.dtype} and shape {arr.shape}."
        )
    arr = arr.astype(np.int64)  # copy, so the caller's array is never frozen
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class TaskData:
    """Texts with an occupation label and a binary gender, immutable.

    Equality is identity (the fields hold arrays); compare fields explicitly.

    Attributes:
        name: Short dataset name, e.g. ``"bug-balanced"``.
        texts: The model inputs, shape (n,).
        labels: Class ids in ``0..len(label_names)-1``, int64, shape (n,).
        genders: Gender ids, int64, shape (n,): ``MALE`` (0) or ``FEMALE`` (1).
        label_names: Class names indexed by class id.
    """

    name: str
    texts: tuple[str, ...]
    labels: np.ndarray
    genders: np.ndarray
    label_names: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "texts", tuple(self.texts))
        object.__setattr__(self, "label_names", tuple(self.label_names))
        object.__setattr__(self, "labels", _int_array(self.labels, "labels"))
        object.__setattr__(self, "genders", _int_array(self.genders, "genders"))
        n = len(self.texts)
        if len(self.labels) != n or len(self.genders) != n:
            raise ValueError(
                f"TaskData {self.name!r}: lengths differ (texts {n}, labels {len(self.labels)}, "
                f"genders {len(self.genders)}); give one label and one gender per text."
            )
        if not all(isinstance(t, str) for t in self.texts):
            raise ValueError(f"TaskData {self.name!r}: every text must be a str.")
        if not self.label_names or len(set(self.label_names)) != len(self.label_names):
            raise ValueError(
                f"TaskData {self.name!r}: label_names must be non-empty and unique, got {self.label_names}."
            )
        n_classes = len(self.label_names)
        if n and (self.labels.min() < 0 or self.labels.max() >= n_classes):
            raise ValueError(
                f"TaskData {self.name!r}: labels must lie in 0..{n_classes - 1} (one per label name), "
                f"got range {self.labels.min()}..{self.labels.max()}."
            )
        if n and not np.isin(self.genders, (MALE, FEMALE)).all():
            bad = sorted(set(self.genders.tolist()) - {MALE, FEMALE})
            raise ValueError(
                f"TaskData {self.name!r}: genders must be {MALE} (male) or {FEMALE} (female), got {bad[:5]}."
            )

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: Sequence[int] | np.ndarray) -> TaskData:
        """Rows picked by integer indices or a boolean mask, in the given order; same ``label_names``."""
        arr = np.asarray(indices)
        if arr.size == 0:
            arr = arr.astype(np.int64)
        rows = np.arange(len(self))[arr]
        return TaskData(
            name=self.name,
            texts=tuple(self.texts[i] for i in rows),
            labels=self.labels[rows],
            genders=self.genders[rows],
            label_names=self.label_names,
        )

    def relabel(self, label_names: Sequence[str]) -> TaskData:
        """The rows re-coded onto ``label_names`` (e.g. a trained classifier's classes) by name, never by position.

        Rows whose class is not in ``label_names`` are dropped, and their count is logged as a warning; classes of
        ``label_names`` without rows stay (ids follow ``label_names``). Returns ``self`` when the names are equal.

        Raises:
            ValueError: no class in common, so no row would be left; the message names both label sets.
        """
        target = tuple(str(name) for name in label_names)
        if target == self.label_names:
            return self
        index = {name: i for i, name in enumerate(target)}
        new_ids = np.array([index.get(name, -1) for name in self.label_names], dtype=np.int64)[self.labels]
        keep = new_ids >= 0
        if len(self) and not keep.any():
            raise ValueError(
                f"TaskData {self.name!r}: none of its classes {preview(self.label_names, 10)} is among the model's "
                f"classes {preview(target, 10)}, so no row is left. Fix: use data labelled with the model's classes, "
                "or a model trained on these ones."
            )
        if not keep.all():
            unknown = sorted({self.label_names[i] for i in self.labels[~keep]})
            logger.warning(
                "%s: %d of %d rows have a class the model does not know (%d classes, e.g. %s); dropped",
                self.name,
                int((~keep).sum()),
                len(self),
                len(unknown),
                unknown[:5],
            )
        rows = np.flatnonzero(keep)
        return TaskData(
            name=self.name,
            texts=tuple(self.texts[i] for i in rows),
            labels=new_ids[rows],
            genders=self.genders[rows],
            label_names=target,
        )

    def counts(self) -> pd.DataFrame:
        """Tidy counts, one row per (label, gender) including empty cells: columns ``label, gender, n``."""
        n_classes = len(self.label_names)
        cells = np.bincount(self.labels * 2 + self.genders, minlength=2 * n_classes)  # (2 * n_classes,)
        return pd.DataFrame(
            {
                "label": np.repeat(self.label_names, 2),
                "gender": np.tile(GENDER_NAMES, n_classes),
                "n": cells.astype(np.int64),
            }
        )

    def female_share(self) -> np.ndarray:
        """Share of women in each class, shape (n_classes,); NaN for a class with no rows."""
        n_classes = len(self.label_names)
        total = np.bincount(self.labels, minlength=n_classes).astype(float)
        women = np.bincount(self.labels[self.genders == FEMALE], minlength=n_classes).astype(float)
        return np.divide(women, total, out=np.full(n_classes, np.nan), where=total > 0)


def parse_genders(
    values: Iterable[object], *, source: str | Path, column: str, gender_map: Mapping[object, object] | None = None
) -> np.ndarray:
    """Map raw gender cells to ``MALE``/``FEMALE`` ids.

    Accepted without a map (case-insensitive, stripped): ``m``, ``male``, ``man``, ``0`` and ``f``, ``female``,
    ``woman``, ``1``. ``gender_map`` entries (raw value -> ``"male"``/``"female"``/0/1) take precedence.

    Args:
        values: The cells.
        source: The file, for error messages.
        column: The column, for error messages.
        gender_map: Extra or overriding mappings.

    Returns:
        int64 array of gender ids, shape (n,).

    Raises:
        ValueError: A value is unknown; the message names the file, the column, the first unknown values and the fix.
    """
    lookup = dict(_GENDER_WORDS)
    for raw, target in (gender_map or {}).items():
        gender = _GENDER_WORDS.get(norm_value(target))
        if gender is None:
            raise ValueError(f"gender_map[{raw!r}] = {target!r}; map each value to 'male', 'female', 0 or 1.")
        lookup[norm_value(raw)] = gender
    keys = [norm_value(v) for v in values]
    unknown = [k for k in keys if k not in lookup]
    if unknown:
        raise ValueError(
            f"{source}: column {column!r} has gender values {preview(unknown)} that are neither male nor female "
            f"({len(unknown)} rows). Accepted: {sorted(_GENDER_WORDS)} (case-insensitive). Fix: pass "
            "gender_map={value: 'male' | 'female', ...}, or drop those rows first."
        )
    return np.array([lookup[k] for k in keys], dtype=np.int64)


def check_usable(data: TaskData, source: str | Path) -> TaskData:
    """Return ``data`` if it has rows from at least two classes; else raise ValueError naming the fix.

    Texts that occur more than once are reported (a warning with the count): duplicates inflate a test split and
    can leak between the folds of a probe unless the folds are grouped by text.
    """
    repeats = len(data) - len(set(data.texts))
    if repeats:
        counts = pd.Series(data.texts).value_counts()
        logger.warning(
            "%s: %d texts occur more than once (%d extra rows of %d; most repeated x%d: %r)",
            source,
            int((counts > 1).sum()),
            repeats,
            len(data),
            int(counts.iloc[0]),
            str(counts.index[0])[:60],
        )
    if len(data) == 0:
        raise ValueError(f"{source}: no rows left to build task {data.name!r}. Fix: check the filters and the file.")
    present = np.unique(data.labels)
    if len(present) < 2:
        raise ValueError(
            f"{source}: every row has the label {data.label_names[present[0]]!r}; a classification task needs at "
            "least two classes. Fix: check the label column, or pass a file with more than one class."
        )
    return data


def load_table_task(
    path: str | Path,
    *,
    text_col: str,
    label_col: str,
    gender_col: str,
    gender_map: Mapping[object, object] | None = None,
    name: str | None = None,
    encoding: str | None = None,
    allow_pickle: bool = False,
) -> TaskData:
    """Load a task from any CSV, TSV, JSONL or parquet table.

    Class names are the distinct label values, sorted (numerically when all are integers), so class ids do not
    depend on row order.

    Args:
        path: The table file.
        text_col: Column with the input text.
        label_col: Column with the class (any values; each distinct value is a class).
        gender_col: Column with the gender (see :func:`parse_genders` for accepted values).
        gender_map: Extra gender mappings, e.g. ``{"W": "female", "H": "male"}``.
        name: Dataset name; defaults to the file's stem.
        encoding: Codec for text formats; default strict UTF-8.
        allow_pickle: Permit ``.pkl``/``.pickle`` (unpickling runs arbitrary code).

    Returns:
        The task.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: Bad file type or encoding, missing columns, empty cells, no rows, one class, unknown genders.
    """
    table = read_data_file(path, encoding=encoding, allow_pickle=allow_pickle)
    columns = [text_col, label_col, gender_col]
    require_columns(table, columns, path, "pass text_col=, label_col= and gender_col= naming the right columns.")
    for col in columns:
        empty = [i for i, v in enumerate(table[col]) if norm_value(v) == ""]
        if empty:
            raise ValueError(
                f"{path}: column {col!r} is empty in {len(empty)} rows (first data rows {empty[:5]}, 0-based). "
                "Fix: fill or drop those rows."
            )
    raw_labels = [norm_value(v) if isinstance(v, (int, float, np.number)) else str(v).strip() for v in table[label_col]]
    distinct = set(raw_labels)
    numeric = all(v.lstrip("-").isdigit() for v in distinct)
    label_names = tuple(sorted(distinct, key=int) if numeric else sorted(distinct))
    index = {v: i for i, v in enumerate(label_names)}
    data = TaskData(
        name=name or Path(path).stem,
        texts=tuple(str(t) for t in table[text_col]),
        labels=np.array([index[v] for v in raw_labels], dtype=np.int64),
        genders=parse_genders(table[gender_col], source=path, column=gender_col, gender_map=gender_map),
        label_names=label_names,
    )
    return check_usable(data, path)


def _check_fractions(fractions: Sequence[float]) -> np.ndarray:
    arr = np.asarray(fractions, dtype=float)
    if arr.shape != (3,) or (arr < 0).any() or abs(arr.sum() - 1.0) > 1e-6:
        raise ValueError(
            f"fractions={tuple(fractions)!r}: give three non-negative numbers (train, dev, test) that sum to 1, "
            "e.g. (0.8, 0.1, 0.1)."
        )
    return arr


def split_indices(
    data: TaskData, *, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0
) -> dict[str, np.ndarray]:
    """Stratified train/dev/test row indices.

    Each (label, gender) cell is shuffled with ``numpy.random.default_rng(seed)`` and cut at the rounded cumulative
    fractions, so every split keeps each cell's share (up to rounding: a cell of n rows puts
    ``floor(0.8 n + 0.5)`` rows in train). The result depends only on the data and the seed.

    Args:
        data: The task.
        fractions: Shares of (train, dev, test); non-negative, summing to 1.
        seed: Seed of the shuffle.

    Returns:
        ``{"train": idx, "dev": idx, "test": idx}``: sorted int64 arrays that are disjoint and cover ``0..n-1``.
    """
    cuts = np.cumsum(_check_fractions(fractions))
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {s: [] for s in SPLIT_NAMES}
    cells = data.labels * 2 + data.genders
    for cell in np.unique(cells):
        rows = rng.permutation(np.flatnonzero(cells == cell))
        bounds = np.floor(cuts * len(rows) + 0.5).astype(np.int64)
        bounds[-1] = len(rows)
        for split, lo, hi in zip(SPLIT_NAMES, (0, *bounds[:-1]), bounds):
            parts[split].append(rows[lo:hi])
    return {s: np.sort(np.concatenate([np.empty(0, np.int64), *parts[s]])) for s in SPLIT_NAMES}


def split_task(data: TaskData, *, fractions: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 0) -> dict[str, TaskData]:
    """Deterministic stratified split into ``train``, ``dev`` and ``test`` (see :func:`split_indices`)."""
    return {s: data.subset(idx) for s, idx in split_indices(data, fractions=fractions, seed=seed).items()}


def rebalance_genders(data: TaskData, *, seed: int = 0) -> TaskData:
    """Downsample the majority gender of every class to the size of its minority gender.

    This is the "balanced" training setting of Leteno et al. (2023, "An Investigation of Structures Responsible
    for Gender Bias in BERT and DistilBERT", IDA): each class then has as many women as men, so the classifier
    cannot learn gender as a shortcut for the class. A class with no women or no men loses all its rows (logged);
    ``label_names`` and class ids are kept. Rows keep their original order.

    Args:
        data: The task.
        seed: Seed for choosing which majority rows stay.

    Returns:
        The balanced task.

    Raises:
        ValueError: No class has both genders.
    """
    rng = np.random.default_rng(seed)
    keep: list[np.ndarray] = []
    emptied: list[str] = []
    for label, label_name in enumerate(data.label_names):
        men = np.flatnonzero((data.labels == label) & (data.genders == MALE))
        women = np.flatnonzero((data.labels == label) & (data.genders == FEMALE))
        k = min(len(men), len(women))
        if k == 0 and len(men) + len(women) > 0:
            emptied.append(label_name)
        keep += [rng.choice(men, k, replace=False), rng.choice(women, k, replace=False)]
    if emptied:
        logger.info(
            "rebalance_genders(%s): %d classes have one gender only and lose all rows: %s",
            data.name,
            len(emptied),
            emptied,
        )
    rows = np.sort(np.concatenate(keep))
    if len(rows) == 0:
        raise ValueError(f"rebalance_genders({data.name!r}): no class has both women and men, nothing is left.")
    return data.subset(rows)
