"""The evaluation stage's bias metrics: every extrinsic and intrinsic metric of one model variant in one tidy table.

Definitions are in docs/DESIGN.md section 6 and in each module: extrinsic TPR gaps and GAP_RMS (De-Arteaga et al. 2019),
the counterfactual gap (Garg et al. 2019), SEAT (May et al. 2019), CrowS-Pairs (Nangia et al. 2020), StereoSet
(Nadeem et al. 2021), WinoBias stereotype/skew (Zhao et al. 2018; de Vassimon Manela et al. 2021) and Winogender
(Rudinger et al. 2018). A metric that cannot run on this model (no trained classifier head, no MLM head, an MLM head
that fails the usability check of :mod:`pipeline.metrics.mlm_check`, no test data) is never silently absent: it
gives rows with value NaN and the reason in the extra column ``skipped``, and a logged warning.

The MLM families read the variant's masked-LM model (``bias_metrics(..., mlm=...)``: the same variant loaded with
``head="mlm"``). Their rows say which head they read (column ``mlm_head``: e.g. "pretrained together with this
encoder" or "pretrained, encoder fine-tuned since", :func:`pipeline.mlm_head.describe_mlm_head`) and how it did in
the check (``mlm_head_top1``, ``mlm_head_baseline``; NaN on other rows).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np
import pandas as pd

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
from pipeline.eo_hooks import EO_KEY
from pipeline.metrics._rows import skip_row, to_frame
from pipeline.metrics.config import METRIC_FAMILIES, BiasMetricsConfig
from pipeline.metrics.counterfactual import SKEW_METRIC, counterfactual_examples, counterfactual_summary
from pipeline.metrics.crows import crows_metrics
from pipeline.metrics.extrinsic import extrinsic_metrics
from pipeline.metrics.mlm_check import MlmHeadCheck, check_sentences, mlm_head_check
from pipeline.metrics.predict import classifier_logits
from pipeline.metrics.registry import FAMILIES, MetricFamilySpec
from pipeline.metrics.seat import seat_metrics
from pipeline.metrics.stereoset import stereoset_metrics
from pipeline.metrics.winobias import winobias_metrics
from pipeline.metrics.winogender import winogender_metrics
from pipeline.mlm_head import absent_reason, describe_mlm_head
from pipeline.models import LoadedModel
from pipeline.schema import tidy

__all__ = [
    "FAMILIES",
    "METRIC_FAMILIES",
    "MLM_FAMILIES",
    "BiasMetricsConfig",
    "Inputs",
    "MetricFamilySpec",
    "bias_metric_tables",
    "bias_metrics",
    "family_frame",
    "skip_reason",
]

log = logging.getLogger(__name__)

MlmSource = LoadedModel | Callable[[], LoadedModel | None] | None


@dataclass
class Inputs:
    """What a family may read besides the model: the task test split, the training share of women per class, the
    settings, the variant's masked LM (``mlm``: a model, a function loading it on first use, or None); the
    classifier's logits on the test split and the MLM head check are computed once and shared."""

    loaded: LoadedModel
    cfg: BiasMetricsConfig
    test: TaskData | None = None
    share: np.ndarray | None = None
    mlm: MlmSource = None
    orientation: np.ndarray | None = None

    @cached_property
    def mlm_model(self) -> LoadedModel | None:
        """The masked LM the MLM families read: ``loaded`` itself when it is one, else ``mlm`` (loaded now)."""
        if self.loaded.head == "mlm":
            return self.loaded
        return self.mlm() if callable(self.mlm) else self.mlm

    @cached_property
    def mlm_check(self) -> MlmHeadCheck | None:
        """The usability check of the masked LM's head (None without a trained one)."""
        model = self.mlm_model
        if model is None or model.head != "mlm" or not model.head_trained:
            return None
        return mlm_head_check(model, check_sentences(self.root), batch_size=self.cfg.batch_size)

    @cached_property
    def logits(self):
        n_labels = self.loaded.model.config.num_labels
        if n_labels != len(self.test.label_names):
            raise ValueError(
                f"the classifier has {n_labels} outputs but the test data {self.test.name!r} has "
                f"{len(self.test.label_names)} classes. Fix: evaluate on the task the model was fine-tuned on."
            )
        return classifier_logits(self.loaded, self.test.texts, batch_size=self.cfg.batch_size,
                                 max_length=self.cfg.max_length, genders=self.test.genders)  # fmt: skip

    @cached_property
    def counterfactual(self) -> pd.DataFrame:
        """Per-example counterfactual values on the test split (:func:`counterfactual_examples`)."""
        swapper = GenderSwapper.from_winobias(self.cfg.data_root)
        return counterfactual_examples(self.loaded, self.test, batch_size=self.cfg.batch_size,
                                       max_length=self.cfg.max_length, swapper=swapper, logits=self.logits,
                                       orientation=self.orientation)  # fmt: skip

    @property
    def root(self):
        return data_root(self.cfg.data_root)

    @property
    def common(self) -> dict:
        return {
            "batch_size": self.cfg.batch_size,
            "n_boot": self.cfg.n_boot,
            "seed": self.cfg.seed,
            "max_examples": self.cfg.max_examples,
        }


def _extrinsic(x: Inputs) -> pd.DataFrame:
    t = x.test
    return extrinsic_metrics(t.labels, x.logits.argmax(-1).numpy(), t.genders, t.label_names, x.share,
                             n_boot=x.cfg.n_boot, seed=x.cfg.seed)  # fmt: skip


# An equal-opportunity variant outputs drawn decisions (pipeline.eo_hooks), not probabilities: its gaps in
# probability are undefined, its flip rates compare decisions as for any model
PROBABILITY_METRICS = ("cf_prob_gap", "cf_prob_abs_change", SKEW_METRIC)
DECISIONS_ONLY = (
    "an equal-opportunity variant outputs drawn decisions (one-hot logits), not probabilities, so a gap in "
    "probability is undefined for it; its flip rates, accuracy and TPR gaps compare decisions"
)


def decisions_only(loaded: LoadedModel) -> bool:
    """Whether the model outputs decisions rather than probabilities (an equal-opportunity variant)."""
    return bool(getattr(loaded.model.config, EO_KEY, None))


def _counterfactual(x: Inputs) -> pd.DataFrame:
    table = counterfactual_summary(x.counterfactual, n_boot=x.cfg.n_boot, seed=x.cfg.seed)
    if decisions_only(x.loaded):
        undefined = table["metric"].isin(PROBABILITY_METRICS)
        table.loc[undefined, ["value", "ci_low", "ci_high"]] = np.nan
        table.loc[undefined, "skipped"] = DECISIONS_ONLY
    return table


def _seat(x: Inputs) -> pd.DataFrame:
    c = x.cfg
    return seat_metrics(
        x.loaded,
        load_gender_seat_tests(c.seat_form, c.data_root),
        c.poolings,
        layer=c.seat_layer,
        batch_size=c.batch_size,
        n_samples=c.seat_n_samples,
        n_boot=c.n_boot,
        seed=c.seed,
    )


def _crows(x: Inputs) -> pd.DataFrame:
    pairs = load_crows_pairs(path=x.root / "crows_pairs" / "crows_pairs_anonymized.csv")
    return crows_metrics(x.loaded, pairs, ties=x.cfg.crows_ties, bias_types=x.cfg.crows_bias_types, **x.common)


def _stereoset(x: Inputs) -> pd.DataFrame:
    items = load_stereoset("intrasentence", path=x.root / "stereoset" / "intrasentence_stereo_set.csv")
    return stereoset_metrics(x.loaded, items, scorings=x.cfg.stereoset_scorings, **x.common)


def _winobias(x: Inputs) -> pd.DataFrame:
    splits = ("dev", "test") if x.cfg.winobias_split == "both" else (x.cfg.winobias_split,)
    items = [i for t in (1, 2) for s in splits for st in ("pro", "anti") for i in load_winobias(t, st, s, root=x.root)]
    return winobias_metrics(x.loaded, items, giveaways=x.cfg.winobias_giveaways, anti=x.cfg.winobias_anti,
                            by_type=x.cfg.winobias_by_type, **x.common)  # fmt: skip


def _winogender(x: Inputs) -> pd.DataFrame:
    return winogender_metrics(x.loaded, load_winogender(x.root), occupation_stats(x.root), **x.common)


MLM_FAMILIES: tuple[str, ...] = tuple(n for n, f in FAMILIES.items() if f.needs == "mlm")  # the built-in ones
_EXTRA_COLUMNS = ("pooling", "skipped", "mlm_head")  # string columns some rows carry; "" elsewhere
_NUMBER_COLUMNS = ("mlm_head_top1", "mlm_head_baseline")  # float columns of MLM-family rows; NaN elsewhere


def _mlm_reason(x: Inputs) -> str | None:
    """Why the MLM families cannot run on ``x`` (None: they can)."""
    model = x.mlm_model
    if model is None or model.head != "mlm":
        absent = absent_reason(x.loaded.model.config)
        return f"no MLM head ({absent})" if absent else f"no MLM head (model loaded with head={x.loaded.head!r})"
    if not model.head_trained:
        return "no trained MLM head (initialised randomly)"
    check = x.mlm_check
    if check is not None and not check.passed and x.cfg.mlm_head_check == "require":
        return check.reason
    return None


def skip_reason(family: MetricFamilySpec, inputs: Inputs) -> str | None:
    """Why ``family`` cannot run on ``inputs`` (None: it can)."""
    loaded, test = inputs.loaded, inputs.test
    if family.needs == "classifier":
        if test is None:
            return "no test data given"
        if loaded.head != "classifier":
            return f"no classifier head (model loaded with head={loaded.head!r})"
        if not loaded.head_trained:
            return "classifier head not trained (initialised randomly)"
    if family.needs == "mlm":
        return _mlm_reason(inputs)
    return None


def _with_mlm_columns(frame: pd.DataFrame, inputs: Inputs) -> pd.DataFrame:
    """Rows of an MLM family with the head they read and its check (``mlm_head``, ``mlm_head_top1/_baseline``)."""
    model, check = inputs.mlm_model, inputs.mlm_check
    frame["mlm_head"] = describe_mlm_head(model.model.config) if model is not None and model.head_trained else ""
    frame["mlm_head_top1"] = check.top1 if check else np.nan
    frame["mlm_head_baseline"] = check.baseline if check else np.nan
    return frame


def _explain_nan(frame: pd.DataFrame, family: str) -> pd.DataFrame:
    """``frame`` with a ``skipped`` reason on every NaN value its family computed without one, so that a NaN
    without a reason in a stored table means damage (the findings refuse it: ``pipeline.findings.compute``)."""
    if "value" not in frame or not frame["value"].isna().any():
        return frame
    reason = frame["skipped"].fillna("").astype(str) if "skipped" in frame else pd.Series("", index=frame.index)
    unexplained = frame["value"].isna() & (reason == "")
    return frame.assign(
        skipped=reason.where(~unexplained, f"undefined on these data (the {family} procedure gives NaN)")
    )


def family_frame(family: MetricFamilySpec, inputs: Inputs) -> pd.DataFrame:
    """The family's rows, or one NaN row per headline metric with the reason in ``skipped``; MLM families read
    the masked LM and add the ``mlm_head`` columns."""
    reason = skip_reason(family, inputs)
    if reason is None:
        frame = family.runner()(replace(inputs, loaded=inputs.mlm_model) if family.needs == "mlm" else inputs)
        frame = _explain_nan(frame, family.name)
    else:
        log.warning("bias metrics: %s skipped: %s", family.name, reason)
        frame = to_frame([skip_row(metric, reason) for metric in family.headline])
    return _with_mlm_columns(frame, inputs) if family.needs == "mlm" else frame


def bias_metric_tables(
    loaded: LoadedModel,
    *,
    test: TaskData | None = None,
    train_female_share: np.ndarray | None = None,
    variant: str = "",
    seed: int = 0,
    config: BiasMetricsConfig | None = None,
    mlm: MlmSource = None,
    orientation: np.ndarray | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """All configured bias metrics of one model variant, as one tidy table, and the per-example counterfactual values
    behind its counterfactual rows.

    Each family of :data:`FAMILIES` named in ``config.metrics`` runs if the model has what it needs (a trained
    classifier head and ``test`` data, an MLM head that passes :func:`~pipeline.metrics.mlm_check.mlm_head_check`,
    or any encoder); otherwise it gives NaN rows with the reason in ``skipped``.

    Args:
        loaded: The model variant.
        test: Test split of the task (for the extrinsic and counterfactual metrics).
        train_female_share: Share of women per class in the training split (``train.female_share()``), for the
            correlation with the TPR gaps; None skips that row.
        variant: Variant name written in the ``variant`` column.
        seed: The variant's training seed, written in the ``seed`` column.
        config: Stage settings; default :class:`BiasMetricsConfig`.
        mlm: The same variant as a masked LM, for the MLM families (or a function loading it when first needed);
            not needed when ``loaded`` is one.
        orientation: Each class's gender skew in the (original) training data
            (:func:`~pipeline.metrics.counterfactual.skew_orientation`), for ``cf_skew_gap``; None leaves it out.

    Returns:
        The metrics: a tidy frame (:data:`pipeline.schema.COLUMNS` plus ``pooling``, ``skipped`` and ``mlm_head``,
        ``""`` where not applicable, and ``mlm_head_top1``, ``mlm_head_baseline``, NaN where not applicable); and
        the rows of :func:`~pipeline.metrics.counterfactual.counterfactual_examples` (with ``variant`` and
        ``seed``), or None when the counterfactual family did not run. A run stores both, so that its findings
        compare the counterfactual metrics of two variants with a paired bootstrap over the same texts.
    """
    inputs = Inputs(loaded, config or BiasMetricsConfig(), test, train_female_share, mlm, orientation)
    frames = [family_frame(f, inputs) for name, f in FAMILIES.items() if name in inputs.cfg.metrics]
    table = pd.concat(frames, ignore_index=True)
    for column in _EXTRA_COLUMNS:
        table[column] = table[column].fillna("").astype(str) if column in table else ""
    for column in _NUMBER_COLUMNS:
        table[column] = table[column].astype(float) if column in table else np.nan
    examples = inputs.__dict__.get("counterfactual")  # computed only when the family ran (cached_property)
    if examples is not None:
        if decisions_only(loaded):  # no probability gap to compare per example (its flips stay)
            examples = examples[~examples["metric"].isin(PROBABILITY_METRICS)]
        examples = tidy(examples.drop(columns=["n_texts"]), variant=variant, seed=seed)
    return tidy(table.drop(columns=["variant", "seed"]), variant=variant, seed=seed), examples


def bias_metrics(loaded: LoadedModel, **options) -> pd.DataFrame:
    """The metrics table of :func:`bias_metric_tables` (same arguments), without the per-example rows."""
    return bias_metric_tables(loaded, **options)[0]
