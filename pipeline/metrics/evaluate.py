"""The evaluation stage's bias metrics: every extrinsic and intrinsic metric of one model variant in one tidy table.

Definitions are in DESIGN.md section 6 and in each module: extrinsic TPR gaps and GAP_RMS (De-Arteaga et al. 2019),
the counterfactual gap (Garg et al. 2019), SEAT (May et al. 2019), CrowS-Pairs (Nangia et al. 2020), StereoSet
(Nadeem et al. 2021), WinoBias stereotype/skew (Zhao et al. 2018; de Vassimon Manela et al. 2021) and Winogender
(Rudinger et al. 2018). A metric that cannot run on this model (no trained classifier head, no trained MLM head, no
test data) is never silently absent: it gives rows with value NaN and the reason in the extra column ``skipped``,
and a logged warning.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from pipeline.metrics.config import METRIC_FAMILIES, BiasMetricsConfig
from pipeline.data import (
    GenderSwapper,
    TaskData,
    load_crows_pairs,
    load_gender_seat_tests,
    load_stereoset,
    load_winobias,
    load_winogender,
    occupation_stats,
)
from pipeline.data.paths import data_root
from pipeline.metrics._rows import skip_row, to_frame
from pipeline.metrics.counterfactual import counterfactual_metrics
from pipeline.metrics.crows import crows_metrics
from pipeline.metrics.extrinsic import extrinsic_metrics
from pipeline.metrics.predict import classifier_logits
from pipeline.metrics.seat import seat_metrics
from pipeline.metrics.stereoset import stereoset_metrics
from pipeline.metrics.winobias import winobias_metrics
from pipeline.metrics.winogender import winogender_metrics
from pipeline.models import LoadedModel
from pipeline.schema import tidy

__all__ = ["METRIC_FAMILIES", "MLM_FAMILIES", "BiasMetricsConfig", "bias_metrics"]

log = logging.getLogger(__name__)

CLASSIFIER_FAMILIES = ("extrinsic", "counterfactual")
MLM_FAMILIES = ("crows", "stereoset", "winobias", "winogender")
# The rows a skipped family leaves in the table (one per headline metric).
_HEADLINE = {
    "extrinsic": ("gap_rms", "accuracy"),
    "counterfactual": ("cf_prob_gap", "cf_flip_rate"),
    "crows": ("crows_stereo_pct",),
    "stereoset": ("stereoset_ss", "stereoset_lms", "stereoset_icat"),
    "winobias": ("winobias_stereotype", "winobias_skew"),
    "winogender": ("winogender_male_pref_pct", "winogender_bls_r"),
}
_EXTRA_COLUMNS = ("pooling", "skipped")  # string columns some rows carry; "" elsewhere


def _classifier_skip_reason(loaded: LoadedModel, test: TaskData | None) -> str | None:
    if test is None:
        return "no test data given"
    if loaded.head != "classifier":
        return f"no classifier head (model loaded with head={loaded.head!r})"
    if not loaded.head_trained:
        return "classifier head not trained (initialised randomly)"
    return None


def _mlm_skip_reason(loaded: LoadedModel) -> str | None:
    if loaded.head != "mlm":
        return f"no MLM head (model loaded with head={loaded.head!r})"
    if not loaded.head_trained:
        return "no trained MLM head (initialised randomly)"
    return None


def _skipped(family: str, reason: str) -> pd.DataFrame:
    log.warning("bias metrics: %s skipped: %s", family, reason)
    return to_frame([skip_row(metric, reason) for metric in _HEADLINE[family]])


def _classifier_frames(loaded, test, share, cfg: BiasMetricsConfig, wanted: list[str]) -> list[pd.DataFrame]:
    n_labels = loaded.model.config.num_labels
    if n_labels != len(test.label_names):
        raise ValueError(
            f"the classifier has {n_labels} outputs but the test data {test.name!r} has {len(test.label_names)} "
            "classes. Fix: evaluate on the task the model was fine-tuned on."
        )
    logits = classifier_logits(loaded, test.texts, batch_size=cfg.batch_size, max_length=cfg.max_length)
    frames = []
    if "extrinsic" in wanted:
        frames.append(extrinsic_metrics(test.labels, logits.argmax(-1).numpy(), test.genders, test.label_names,
                                        share, n_boot=cfg.n_boot, seed=cfg.seed))  # fmt: skip
    if "counterfactual" in wanted:
        swapper = GenderSwapper.from_winobias(cfg.data_root)
        frames.append(counterfactual_metrics(loaded, test, batch_size=cfg.batch_size, n_boot=cfg.n_boot, seed=cfg.seed,
                                             max_length=cfg.max_length, swapper=swapper, logits=logits))  # fmt: skip
    return frames


def _mlm_frame(loaded: LoadedModel, family: str, cfg: BiasMetricsConfig) -> pd.DataFrame:
    root = data_root(cfg.data_root)
    common = dict(batch_size=cfg.batch_size, n_boot=cfg.n_boot, seed=cfg.seed, max_examples=cfg.max_examples)
    if family == "crows":
        pairs = load_crows_pairs(path=root / "crows_pairs" / "crows_pairs_anonymized.csv")
        return crows_metrics(loaded, pairs, **common)
    if family == "stereoset":
        items = load_stereoset("intrasentence", path=root / "stereoset" / "intrasentence_stereo_set.csv")
        return stereoset_metrics(loaded, items, **common)
    if family == "winobias":
        splits = ("dev", "test") if cfg.winobias_split == "both" else (cfg.winobias_split,)
        items = [i for t in (1, 2) for s in splits for st in ("pro", "anti")
                 for i in load_winobias(t, st, s, root=root)]  # fmt: skip
        return winobias_metrics(loaded, items, **common)
    return winogender_metrics(loaded, load_winogender(root), occupation_stats(root), **common)


def bias_metrics(
    loaded: LoadedModel,
    *,
    test: TaskData | None = None,
    train_female_share: np.ndarray | None = None,
    variant: str = "",
    seed: int = 0,
    config: BiasMetricsConfig | None = None,
) -> pd.DataFrame:
    """All configured bias metrics of one model variant, as one tidy table.

    Extrinsic and counterfactual metrics need a classifier with a trained head and ``test`` data; CrowS-Pairs,
    StereoSet, WinoBias and Winogender need a trained MLM head; SEAT runs on any model. Families that cannot run
    give NaN rows with the reason in ``skipped``.

    Args:
        loaded: The model variant.
        test: Test split of the task (for the extrinsic and counterfactual metrics).
        train_female_share: Share of women per class in the training split (``train.female_share()``), for the
            correlation with the TPR gaps; None skips that row.
        variant: Variant name written in the ``variant`` column.
        seed: The variant's training seed, written in the ``seed`` column.
        config: Stage settings; default :class:`BiasMetricsConfig`.

    Returns:
        Tidy frame (:data:`pipeline.schema.COLUMNS` plus ``pooling`` and ``skipped``, ``""`` where not applicable).
    """
    cfg = config or BiasMetricsConfig()
    frames = []
    wanted = [f for f in CLASSIFIER_FAMILIES if f in cfg.metrics]
    if wanted:
        reason = _classifier_skip_reason(loaded, test)
        if reason:
            frames += [_skipped(family, reason) for family in wanted]
        else:
            frames += _classifier_frames(loaded, test, train_female_share, cfg, wanted)
    if "seat" in cfg.metrics:
        tests = load_gender_seat_tests(cfg.seat_form, cfg.data_root)
        frames.append(seat_metrics(loaded, tests, cfg.poolings, layer=cfg.seat_layer, batch_size=cfg.batch_size,
                                   n_samples=cfg.seat_n_samples, n_boot=cfg.n_boot, seed=cfg.seed))  # fmt: skip
    reason = _mlm_skip_reason(loaded)
    for family in (f for f in MLM_FAMILIES if f in cfg.metrics):
        frames.append(_skipped(family, reason) if reason else _mlm_frame(loaded, family, cfg))
    table = pd.concat(frames, ignore_index=True)
    for column in _EXTRA_COLUMNS:
        table[column] = table[column].fillna("").astype(str) if column in table else ""
    return tidy(table.drop(columns=["variant", "seed"]), variant=variant, seed=seed)
