"""The probes stage of a run: every configured probe on one model variant, as tidy tables.

:func:`run_probes` extracts the representations once (cached), then runs layer-wise gender and task-label probes
(Conneau et al. 2018; Tenney et al. 2019), head-wise gender probes, the Hewitt & Liang (2019) control task with word
types = the task label (for BUG the masked profession word), optionally MDL (Voita & Titov 2020), and amnesic
probing after LEACE erasure at the configured layers (Elazar et al. 2021; Belrose et al. 2023). Int8 and pruned
variants are probed the same way (forward passes only).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from pipeline.data import TaskData, rebalance_genders
from pipeline.data.sampling import seeded_rows
from pipeline.models import LoadedModel
from pipeline.schema import tidy
from probes.config import ProbeConfig
from probes.control import control_task
from probes.erasure import amnesic_effect
from probes.extract import Representations, extract
from probes.linear import LinearProbe, check_split, probe_heads, probe_layers, text_groups
from probes.mdl import mdl_layers

__all__ = ["PROBE_TABLES", "ProbeConfig", "prepare_data", "run_probes"]

PROBE_TABLES: tuple[str, ...] = ("probes_layers", "probes_heads", "probes_control", "probes_mdl", "erasure")


def prepare_data(data: TaskData, cfg: ProbeConfig) -> TaskData:
    """Balance genders per class (if configured) and subsample to ``cfg.max_examples`` with ``cfg.seed``.

    Raises:
        ValueError: fewer than two genders, or too few examples of a gender for ``cfg.n_folds`` folds.
    """
    check_split(
        data.genders,
        f"{data.name} genders",
        min_per_class=cfg.n_folds,
        fix="Fix: probe data with both women and men, at least one of each per fold.",
    )
    if cfg.balance_genders:
        data = rebalance_genders(data, seed=cfg.seed)
    data = data.subset(seeded_rows(len(data), cfg.max_examples, cfg.seed))
    check_split(
        data.genders,
        f"{data.name} genders after sampling",
        min_per_class=cfg.n_folds,
        fix="Fix: raise max_examples or lower n_folds.",
    )
    return data


def _frequent_rows(data: TaskData, min_size: int) -> np.ndarray | None:
    """Mask of rows whose class has >= ``min_size`` examples; None (with a warning) if fewer than two classes stay."""
    sizes = np.bincount(data.labels, minlength=len(data.label_names))
    keep = sizes >= min_size
    rare = (sizes > 0) & ~keep
    if keep.sum() < 2:
        warnings.warn(
            f"label probe skipped: fewer than two classes of {data.name!r} have >= {min_size} examples; "
            "raise max_examples or lower min_class_size.",
            stacklevel=3,
        )
        return None
    if rare.any():
        warnings.warn(
            f"label probe uses the {int(keep.sum())} classes with >= {min_size} examples; {int(rare.sum())} "
            f"rarer classes ({int(sizes[rare].sum())} examples) are left out.",
            stacklevel=3,
        )
    return keep[data.labels]


def run_probes(
    loaded: LoadedModel,
    data: TaskData,
    cfg: ProbeConfig,
    *,
    variant: str,
    seed: int = 0,
    cache_dir: str | None = None,
    progress: bool = True,
) -> dict[str, pd.DataFrame]:
    """Run the configured probes on one model variant.

    Args:
        loaded: the variant (any head; a trained classifier adds task and bias rows to ``erasure``).
        data: texts with genders and task labels (e.g. the test split).
        cfg: the probe settings.
        variant: the variant's name, written to every row.
        seed: the variant's training seed, written to every row (the probes use ``cfg.seed``).
        cache_dir: extraction cache (e.g. ``RUN_DIR/cache/reps``; default ``~/.cache/bias-atlas/reps``).
        progress: show progress bars.

    Returns:
        Tables keyed by :data:`PROBE_TABLES` (only the configured ones): ``probes_layers`` (gender and label per layer
        and pooling), ``probes_heads`` (gender per head), ``probes_control`` (probe / control accuracy and
        selectivity), ``probes_mdl`` (online codelength), ``erasure`` (amnesic probing per erased layer).

    Raises:
        ValueError: data with one gender or too few examples per fold.
        IndexError: an erasure layer outside the model.
    """
    n_layers = loaded.anatomy.n_layers
    erase = [k + n_layers + 1 if k < 0 else k for k in cfg.erasure_layers]
    if any(not 0 <= k <= n_layers for k in erase):
        raise IndexError(
            f"erasure_layers {list(cfg.erasure_layers)} has layers out of range for this "
            f"{n_layers}-block model: hidden-state indices are 0..{n_layers} (or -{n_layers + 1}..-1)."
        )
    data = prepare_data(data, cfg)
    probe = LinearProbe(Cs=cfg.Cs, cv=cfg.inner_cv, seed=cfg.seed)
    common = {"n_folds": cfg.n_folds, "seed": cfg.seed, "probe": probe}
    groups = text_groups(data.texts)  # copies of a text share a fold (None when all texts differ)
    boot = {"n_boot": cfg.n_boot}
    reps = extract(
        loaded,
        data.texts,
        poolings=cfg.poolings,
        heads=cfg.heads,
        batch_size=cfg.batch_size,
        max_length=cfg.max_length,
        cache_dir=cache_dir,
        progress=progress,
    )
    layer_tables = [
        probe_layers(reps, data.genders, target="gender", groups=groups, progress=progress, **common, **boot)
    ]
    rows = _frequent_rows(data, cfg.min_class_size) if cfg.label else None
    labelled = None if rows is None else data.subset(rows)
    if labelled is not None:
        sub = Representations(layers={p: a[:, rows] for p, a in reps.layers.items()})
        layer_tables.append(
            probe_layers(
                sub,
                labelled.labels,
                target="label",
                groups=text_groups(labelled.texts),
                progress=progress,
                **common,
                **boot,
            )
        )
    tables = {"probes_layers": pd.concat(layer_tables, ignore_index=True)}
    if cfg.heads:
        tables["probes_heads"] = probe_heads(
            reps, data.genders, target="gender", groups=groups, progress=progress, **common, **boot
        )
    if cfg.control:
        tables["probes_control"] = control_task(
            reps, data.genders, types=data.labels, target="gender", groups=groups, **common, **boot
        )
    if cfg.mdl:
        tables["probes_mdl"] = mdl_layers(reps, data.genders, target="gender", seed=cfg.seed)
    if erase:
        eval_data = labelled if labelled is not None else data
        targets = ("gender", "label") if labelled is not None else ("gender",)
        tables["erasure"] = pd.concat(
            [
                amnesic_effect(
                    loaded,
                    eval_data,
                    k,
                    fit_on=cfg.fit_on,
                    poolings=cfg.poolings,
                    targets=targets,
                    batch_size=cfg.batch_size,
                    max_length=cfg.max_length,
                    n_boot=cfg.n_boot,
                    cache_dir=cache_dir,
                    progress=progress,
                    **common,
                )
                for k in erase
            ],
            ignore_index=True,
        )
    return {name: tidy(frame, variant=variant, seed=seed) for name, frame in tables.items()}
