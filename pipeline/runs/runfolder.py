"""Read a run folder: its manifest, tidy tables, saved models, and the recipe encoded in each variant name.

The run folder layout is docs/DESIGN.md section 5: ``<run>/manifest.json``, ``<run>/models/<variant>/seed<k>/``,
``<run>/tables/<table>.parquet`` (tidy, :mod:`pipeline.schema`) and ``<run>/figures/``. The viewer (``app.py``)
and the figure command (:mod:`pipeline.figures.run_figures`) read runs only through :class:`RunFolder`, so a missing or
partial run always gives a message that names the missing table and the stage that writes it.

Variant names encode the recipe (teacher, compression method, fine-tuning order: none / before / after / both,
as in Sanh et al. 2019 and Leteno et al. 2023); :func:`parse_variant` is the one place that reads them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.runs.tables import TABLES, missing_message
from pipeline.schema import SchemaError, read_table
from pipeline.variants import Variant, parse_variant, variant_sort_key

__all__ = [
    "TABLES",
    "RunFolder",
    "combine_tables",
    "find_runs",
    "head_trained",
    "overview_table",
    "parse_variant",
    "top_neurons_table",
    "variant_sort_key",
]


_NOT_TIDY = frozenset({"predictions"})  # per-example rows; read as stored when they lack the tidy columns


def _is_run(path: Path) -> bool:
    return path.is_dir() and any((path / p).exists() for p in ("manifest.json", "tables", "models"))


def find_runs(root: str | Path) -> list[Path]:
    """Run folders at ``root``: ``root`` itself if it is one, else its sub-folders that are, newest first.

    A run folder holds ``manifest.json``, ``tables/`` or ``models/``.

    Raises:
        FileNotFoundError: ``root`` does not exist.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(
            f"runs folder {str(root)!r} does not exist. Produce a run with `bias-atlas run CONFIG` "
            "(it writes runs/<name>/) or give the folder that holds your runs."
        )
    if _is_run(root):
        return [root]
    return sorted((p for p in root.iterdir() if _is_run(p)), key=lambda p: p.stat().st_mtime, reverse=True)


class RunFolder:
    """One run folder: manifest, available tables, variants, seeds and saved models.

    Args:
        path: the run folder (``runs/<name>``).

    Raises:
        FileNotFoundError: ``path`` is not a folder.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        if not self.path.is_dir():
            raise FileNotFoundError(
                f"run folder {str(self.path)!r} does not exist; produce one with `bias-atlas run CONFIG` "
                "or pass the folder that holds manifest.json and tables/."
            )
        self.name = self.path.name
        self.tables_dir = self.path / "tables"
        self.models_dir = self.path / "models"
        self.figures_dir = self.path / "figures"

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    @property
    def manifest(self) -> dict:
        """The parsed ``manifest.json`` ({} when the run has none yet)."""
        path = self.path / "manifest.json"
        if not path.exists():
            return {}
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON ({err}); re-run the pipeline to rewrite it.") from err

    def inside(self, path: Path) -> bool:
        """Whether ``path``, symlinks followed, lies inside the run folder: a link pointing out of it is never
        listed or read (a run only trusts what it wrote inside its folder; docs/RUN_FOLDER.md)."""
        return path.resolve().is_relative_to(self.path.resolve())

    def table_path(self, name: str) -> Path | None:
        """Path of table ``name`` (parquet, else csv), or None when absent (or a link out of the run folder)."""
        for suffix in (".parquet", ".csv"):
            path = self.tables_dir / f"{name}{suffix}"
            if path.exists() and self.inside(path):
                return path
        return None

    def tables(self) -> tuple[str, ...]:
        """Names of the tables present, known ones in the order of :data:`TABLES`, then any others."""
        if not self.tables_dir.is_dir():
            return ()
        present = {p.stem for p in self.tables_dir.iterdir() if p.suffix in (".parquet", ".csv") and self.inside(p)}
        return tuple(n for n in TABLES if n in present) + tuple(sorted(present - set(TABLES)))

    def has(self, name: str) -> bool:
        return self.table_path(name) is not None

    def missing(self, name: str) -> str:
        """A message naming the missing table ``name`` and how to produce it."""
        return missing_message(name, self.name)

    def table(self, name: str) -> pd.DataFrame:
        """Read table ``name`` (tidy tables through :func:`pipeline.schema.read_table`).

        Raises:
            FileNotFoundError: the table is absent; the message says which stage writes it.
        """
        path = self.table_path(name)
        if path is None:
            raise FileNotFoundError(self.missing(name))
        try:
            return _readable(path, lambda: read_table(path))
        except SchemaError:
            if name not in _NOT_TIDY:
                raise
            return _readable(path, lambda: pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path))

    def unreadable(self) -> dict[str, str]:
        """Tables present but damaged (truncated, not parquet): name -> what is wrong."""
        bad = {}
        for name in self.tables():
            try:
                self._columns(name)
            except SchemaError as err:
                bad[name] = str(err)
        return bad

    def _columns(self, name: str, cols: Sequence[str] = ("variant", "seed")) -> pd.DataFrame:
        path = self.table_path(name)
        read = (
            (lambda: pd.read_parquet(path, columns=list(cols)))
            if path.suffix == ".parquet"
            else (lambda: pd.read_csv(path, usecols=list(cols)))
        )
        return _readable(path, read)

    def saved_models(self) -> list[tuple[str, int]]:
        """(variant, seed) of every folder ``models/<variant>/seed<k>/`` holding a ``config.json``."""
        found = [
            (d.parent.name, int(d.name[4:]))
            for d in self.models_dir.glob("*/seed*")
            if d.name[4:].isdigit() and (d / "config.json").exists() and self.inside(d / "config.json")
        ]
        return sorted(found, key=lambda vs: (variant_sort_key(vs[0]), vs[1]))

    def variants(self) -> list[str]:
        """Variants named by saved models or by any table, teacher first (see :func:`variant_sort_key`)."""
        return sorted(set(self._keys()["variant"]), key=variant_sort_key)

    def seeds(self, variant: str | None = None) -> list[int]:
        """Seeds present (for ``variant`` only, when given)."""
        keys = self._keys()
        if variant is not None:
            keys = keys[keys["variant"] == variant]
        return sorted(int(s) for s in set(keys["seed"]))

    def model_dir(self, variant: str, seed: int) -> Path:
        """Folder of the saved model ``variant`` / ``seed`` (load with ``load_model(folder, head='classifier')``).

        Raises:
            FileNotFoundError: no model was saved for that pair; the message lists those that were.
        """
        path = self.models_dir / variant / f"seed{seed}"
        if not (path / "config.json").exists() or not self.inside(path / "config.json"):
            saved = ", ".join(f"{v}/seed{s}" for v, s in self.saved_models()) or "none"
            raise FileNotFoundError(
                f"no saved model for variant {variant!r} seed {seed} in run {self.name!r} (saved: {saved}); the "
                "pipeline saves models under models/<variant>/seed<k>/ when it builds them."
            )
        return path

    def _keys(self) -> pd.DataFrame:
        frames = [pd.DataFrame(self.saved_models(), columns=["variant", "seed"])]
        for name in self.tables():
            try:
                frames.append(self._columns(name))
            except SchemaError:  # a damaged table names no variants; the pages that need it say so
                continue
        keys = pd.concat(frames, ignore_index=True).drop_duplicates()
        return keys[(keys["variant"].astype(str) != "") & (keys["seed"] >= 0)]  # seed -1: findings' pooled rows


def _readable(path: Path, read):
    """``read()``, with any failure to parse the file turned into a SchemaError that names the file and the fix."""
    try:
        return read()
    except (SchemaError, FileNotFoundError):
        raise
    except Exception as err:  # noqa: BLE001 - pyarrow / pandas parse errors have no common base class
        raise SchemaError(
            f"{path} cannot be read ({type(err).__name__}: {err}); the file is damaged. Fix: "
            "`bias-atlas verify RUN` names every damaged output and `bias-atlas run CONFIG` rebuilds "
            "exactly those."
        ) from None


def head_trained(model_dir: Path) -> bool | None:
    """Whether a saved variant's classifier head was trained (its config's ``task_head_trained``; None unknown)."""
    try:
        config = json.loads((Path(model_dir) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    value = config.get("task_head_trained")
    return None if value is None else bool(value)


def combine_tables(runs: Sequence[RunFolder], name: str) -> pd.DataFrame | None:
    """Table ``name`` of every run that has it, stacked; None when no run has it.

    With several runs, variant names are prefixed ``<run>/`` so equal names from different runs stay apart.
    """
    frames = []
    for run in runs:
        if run.has(name):
            frame = run.table(name)
            if len(runs) > 1:
                frame = frame.assign(variant=run.name + "/" + frame["variant"].astype(str))
            frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else None


# Overview column -> (table, metric names accepted, subsets preferred in order; else the only subset present).
_OVERVIEW = (
    ("n_params", "task", ("params",), ("", "all", "test")),
    ("size_mb", "task", ("size_mb",), ("", "all", "test")),
    ("accuracy", "task", ("accuracy",), ("", "all", "test")),
    ("macro_f1", "task", ("macro_f1",), ("", "all", "test")),
    ("gap_rms", "bias", ("gap_rms",), ("", "all")),
    ("cf_gap", "bias", ("cf_prob_gap",), ("all", "")),
    ("cf_flip_rate", "bias", ("cf_flip_rate",), ("all", "")),
    ("crows_stereo_pct", "bias", ("crows_stereo_pct",), ("gender", "all")),
    ("stereoset_ss", "bias", ("stereoset_ss",), ("gender", "overall")),
    ("stereoset_icat", "bias", ("stereoset_icat",), ("gender", "overall")),
)
_STATS = ["value", "ci_low", "ci_high"]


def _model_rows(frame: pd.DataFrame | None, metrics: Sequence[str], subsets: Sequence[str]) -> pd.DataFrame | None:
    """Unit-model rows of the first of ``metrics`` present, in the first preferred subset (or the only one),
    one per (variant, seed); None when there are none."""
    if frame is None:
        return None
    model = frame[frame["unit"] == "model"]
    for metric in metrics:
        rows = model[model["metric"] == metric]
        if rows.empty:
            continue
        present = set(rows["subset"].fillna(""))
        subset = next((s for s in subsets if s in present), present.pop() if len(present) == 1 else None)
        rows = rows[rows["subset"].fillna("") == subset]
        return rows.groupby(["variant", "seed"])[_STATS].mean() if len(rows) else None
    return None


def overview_table(task: pd.DataFrame | None, bias: pd.DataFrame | None) -> pd.DataFrame:
    """One row per (variant, seed): recipe, size, accuracy and the bias metrics, each with its CI.

    Columns: variant, seed, method, order, training_set (``original`` unless the name carries ``@<set>``), then for
    each metric ``<name>`` plus ``<name>_lo`` / ``<name>_hi``
    when the table has intervals: n_params, size_mb, accuracy, macro_f1 (task_metrics), gap_rms, cf_gap
    (``cf_prob_gap``, subset all), cf_flip_rate, crows_stereo_pct, stereoset_ss, stereoset_icat (gender subset) and
    ``seat_abs_d``, the mean
    absolute SEAT effect size over all tests and poolings (May et al. 2019). Metrics the pipeline skipped (no
    trained MLM head) stay NaN; columns no table has are left out.
    """
    parts = {"task": task, "bias": bias}
    columns: dict[str, pd.Series] = {}
    for column, source, metrics, subsets in _OVERVIEW:
        rows = _model_rows(parts[source], metrics, subsets)
        if rows is None:
            continue
        columns[column] = rows["value"]
        if rows["ci_low"].notna().any():
            columns[f"{column}_lo"], columns[f"{column}_hi"] = rows["ci_low"], rows["ci_high"]
    accuracy = _model_rows(bias, ("accuracy",), ("all", ""))  # the bias table's copy has a bootstrap interval
    if "accuracy" in columns and "accuracy_lo" not in columns and accuracy is not None:
        same = accuracy.reindex(columns["accuracy"].index)
        agree = np.isclose(same["value"], columns["accuracy"], atol=1e-9)
        columns["accuracy_lo"], columns["accuracy_hi"] = same["ci_low"].where(agree), same["ci_high"].where(agree)
    if bias is not None:
        seat = bias[(bias["unit"] == "model") & (bias["metric"] == "seat_effect_size")]
        if len(seat):
            columns["seat_abs_d"] = seat.assign(value=seat["value"].abs()).groupby(["variant", "seed"])["value"].mean()
    if not columns:
        return pd.DataFrame(columns=["variant", "seed", "method", "order", "training_set"])
    out = pd.DataFrame(columns).reset_index()
    recipes = [_recipe(v) for v in out["variant"]]
    for i, column in enumerate(("method", "order", "training_set")):
        out.insert(2 + i, column, [r[i] for r in recipes])
    order = sorted(range(len(out)), key=lambda i: (variant_sort_key(out["variant"][i]), out["seed"][i]))
    return out.iloc[order].reset_index(drop=True)


def _recipe(variant: str) -> tuple[str, str, str]:
    """(method, order, training set) of a variant name; ``?`` for a name outside the grammar."""
    try:
        parsed = Variant.parse(variant)
    except ValueError:
        return "?", "?", "?"
    return parsed.method, parsed.order, parsed.training_set or "original"


def top_neurons_table(frame: pd.DataFrame, k: int = 10, *, metric: str | None = None) -> pd.DataFrame:
    """The ``k`` neurons with the largest absolute effect in each (variant, seed, layer).

    Args:
        frame: rows of unit ``neuron`` (``head`` holds the neuron index), e.g. ``neuron_ig``.
        k: neurons kept per layer.
        metric: which metric to rank by (default: the only one present).

    Returns:
        Columns variant, seed, layer, neuron, metric, value, ci_low, ci_high, rank (1 = largest |value|).

    Raises:
        ValueError: ``k`` < 1, no neuron rows, or several metrics and no ``metric`` given.
    """
    if k < 1:
        raise ValueError(f"k={k!r}: give the number of neurons to keep per layer (>= 1).")
    rows = frame[frame["unit"] == "neuron"]
    metrics = sorted(set(rows["metric"]))
    if metric is None and len(metrics) > 1:
        raise ValueError(f"the neuron table holds metrics {metrics}; pass metric= to choose one.")
    metric = metric or (metrics[0] if metrics else None)
    rows = rows[rows["metric"] == metric]
    if rows.empty:
        raise ValueError(f"no neuron rows for metric {metric!r} (metrics present: {metrics}).")
    rows = rows.assign(magnitude=rows["value"].abs()).sort_values("magnitude", ascending=False, kind="stable")
    top = rows.groupby(["variant", "seed", "layer"], sort=True).head(k).rename(columns={"head": "neuron"})
    top = top.assign(rank=top.groupby(["variant", "seed", "layer"]).cumcount() + 1)
    cols = ["variant", "seed", "layer", "neuron", "metric", "value", "ci_low", "ci_high", "rank"]
    return top.sort_values(["variant", "seed", "layer", "rank"])[cols].reset_index(drop=True).astype({"rank": np.int64})
