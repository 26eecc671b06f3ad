"""Task data sets by name: the one place that turns a name (or a file) into a :class:`TaskData`.

``bug`` / ``bug-gold`` (the BUG corpus, balanced or gold file), ``bias_in_bios`` (the offline sample),
``LabHC/bias_in_bios`` (the hub data set, test split), a Bias in Bios folder, or a table file (with its columns).
The run config, ``bias-atlas ablate|importance|ig|patch`` and ``bias-atlas probe run`` all load through it.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.data.bias_in_bios import BIOS_HUB_ID, load_bias_in_bios
from pipeline.data.bug import DEFAULT_MIN_PER_CLASS, load_bug
from pipeline.data.paths import data_root
from pipeline.data.task import TaskData, load_table_task

__all__ = ["TASK_NAMES", "load_task"]

TASK_NAMES: tuple[str, ...] = ("bug", "bug-gold", "bias_in_bios", BIOS_HUB_ID)


def load_task(
    name: str,
    *,
    root: str | Path | None = None,
    path: str | Path | None = None,
    text_col: str = "text",
    label_col: str = "label",
    gender_col: str = "gender",
    min_per_class: int = DEFAULT_MIN_PER_CLASS,
) -> TaskData:
    """Load the task ``name`` (one of :data:`TASK_NAMES`, a Bias in Bios folder or a table file).

    Args:
        name: the data set.
        root: the shared data folder (default :func:`pipeline.data.data_root`).
        path: for a named data set, a file or folder to read instead of the shared copy.
        text_col, label_col, gender_col: the columns of a table file.
        min_per_class: BUG: rarer classes are dropped.

    Raises:
        FileNotFoundError: ``name`` is neither a known data set nor an existing file or folder.
    """
    if name in ("bug", "bug-gold"):
        return load_bug(
            path or data_root(root) / "bug",
            file="gold" if name == "bug-gold" else "balanced",
            min_per_class=min_per_class,
        )
    if name == "bias_in_bios":
        return load_bias_in_bios(path or data_root(root) / "bias_in_bios" / "sample")
    if name == BIOS_HUB_ID:
        return load_bias_in_bios(path or BIOS_HUB_ID, split="test")
    file = Path(name).expanduser()
    if file.is_dir():
        return load_bias_in_bios(file)
    if not file.is_file():
        raise FileNotFoundError(
            f"data {name!r} is neither one of {', '.join(TASK_NAMES)} nor an existing file or "
            "folder; give one of those names or the path of a table (CSV / parquet)."
        )
    return load_table_task(file, text_col=text_col, label_col=label_col, gender_col=gender_col)
