"""The run's task data: the ``[task]`` data set loaded, its classes limited, split, subsampled, and one training set
per ``task.training_sets`` entry (docs/DESIGN.md section 6). Every stage reads the same :class:`TaskSplits`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.compress.reweigh import reweighing_weights
from pipeline.data import (
    GenderSwapper,
    TaskData,
    WeightedTaskData,
    counterfactual_augment,
    rebalance_genders,
    split_task,
)
from pipeline.data.sampling import seeded_rows
from pipeline.data.tasks import load_task
from pipeline.runs.config import ConfigError
from pipeline.runs.stages import sha256_json

__all__ = ["TaskSplits", "load_task_splits"]


@dataclass(frozen=True)
class TaskSplits:
    """The run's task data: one training set per ``task.training_sets`` entry, and shared dev/test splits."""

    train: dict[str, TaskData]
    dev: TaskData
    test: TaskData

    def fingerprint(self) -> str:
        """sha256 of every text, label and gender of every split (enters all cache keys)."""
        parts = {
            name: [list(d.texts), d.labels.tolist(), d.genders.tolist(), list(d.label_names)]
            for name, d in [*self.train.items(), ("dev", self.dev), ("test", self.test)]
        }
        return sha256_json(parts)


def _top_classes(data: TaskData, k: int) -> TaskData:
    """Keep the ``k`` most frequent classes (ties by class id), renumbered in their original order."""
    counts = np.bincount(data.labels, minlength=len(data.label_names))
    keep = np.sort(np.argsort(-counts, kind="stable")[:k])
    rows = np.flatnonzero(np.isin(data.labels, keep))
    new_id = {old: new for new, old in enumerate(keep)}
    return TaskData(
        data.name,
        tuple(data.texts[i] for i in rows),
        [new_id[y] for y in data.labels[rows]],
        data.genders[rows],
        tuple(data.label_names[i] for i in keep),
    )


def _sampled(data: TaskData, n: int | None, seed: int) -> TaskData:
    return data.subset(seeded_rows(len(data), n, seed))


def _load_dataset(task, root: Path | None) -> TaskData:
    name = {"bug": "bug-gold" if task.bug_file == "gold" else "bug", "bias_in_bios": "bias_in_bios"}.get(
        task.dataset, str(task.path)
    )
    return load_task(
        name,
        root=root,
        path=task.path if task.dataset != "table" else None,
        text_col=task.text_col,
        label_col=task.label_col,
        gender_col=task.gender_col,
        min_per_class=task.min_per_class,
    )


def load_task_splits(task, root: Path | None = None) -> TaskSplits:
    """Load the ``[task]`` dataset, keep ``max_classes``, split, subsample and build the training sets.

    Raises:
        ConfigError: the data cannot be loaded, or a training set is left with fewer than two classes.
    """
    try:
        data = _load_dataset(task, root)
    except (ValueError, FileNotFoundError, ImportError) as err:
        raise ConfigError(f"task (dataset = {task.dataset!r}, path = {task.path!r}): {err}") from None
    if task.max_classes is not None:
        data = _top_classes(data, task.max_classes)
    splits = split_task(data, fractions=task.fractions, seed=task.split_seed)
    train = _sampled(splits["train"], task.max_train, task.split_seed)
    sets = {"original": train}
    if "balanced" in task.training_sets:
        sets["balanced"] = rebalance_genders(train, seed=task.split_seed)
    if "reweighed" in task.training_sets:  # the same texts, Kamiran & Calders (2012) weights in every training loss
        try:
            sets["reweighed"] = WeightedTaskData.of(train, reweighing_weights(train.labels, train.genders))
        except ValueError as err:  # EmptyCellError: a (class, gender) cell of the training split is empty
            raise ConfigError(
                f"task.training_sets = {list(task.training_sets)}: {err}. Fix: drop 'reweighed', raise "
                "task.max_train, or lower task.max_classes so every class has both genders."
            ) from None
    if "cda" in task.training_sets:  # every text with its gender-swapped twin (or the twin alone, one-sided)
        try:
            sets["cda"] = counterfactual_augment(train, GenderSwapper.from_winobias(root), mode=task.cda)
        except (ValueError, FileNotFoundError) as err:
            raise ConfigError(f"task.training_sets = {list(task.training_sets)}: {err}") from None
    for name in task.training_sets:
        present = np.unique(sets[name].labels)
        if len(present) < 2:
            raise ConfigError(
                f"task: the {name!r} training set has {len(present)} class(es) after loading "
                f"({data.name}, {len(sets[name])} rows); a classifier needs two. Fix: raise "
                "task.max_train or task.max_classes, or check the label column."
            )
    return TaskSplits(
        {n: sets[n] for n in task.training_sets},
        _sampled(splits["dev"], task.max_eval, task.split_seed),
        _sampled(splits["test"], task.max_eval, task.split_seed),
    )
