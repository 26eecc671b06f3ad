"""Bias metrics of bias-atlas: extrinsic (task classifiers) and intrinsic (encoders and masked LMs).

Extrinsic: TPR/FPR gaps, GAP_RMS, per-gender accuracy and macro-F1 (:mod:`.extrinsic`, De-Arteaga et al. 2019);
the differentiable counterfactual gap (:mod:`.counterfactual`). Intrinsic: SEAT (:mod:`.seat`, May et al. 2019),
CrowS-Pairs (:mod:`.crows`, Nangia et al. 2020), StereoSet (:mod:`.stereoset`, Nadeem et al. 2021), WinoBias
(:mod:`.winobias`, de Vassimon Manela et al. 2021) and Winogender (:mod:`.winogender`, Rudinger et al. 2018), all on
the batched masked-LM scorer of :mod:`.mlm`. :func:`bias_metrics` runs the configured set for one model variant;
every aggregate carries a bootstrap interval (:func:`bootstrap_ci`). See docs/METRICS.md.
"""

from pipeline.bootstrap import bootstrap_ci, bootstrap_indices
from pipeline.metrics.counterfactual import counterfactual_gap, counterfactual_metrics, true_class_prob_change
from pipeline.metrics.crows import crows_metrics, crows_scores, unmodified_positions
from pipeline.metrics.evaluate import METRIC_FAMILIES, MLM_FAMILIES, BiasMetricsConfig, bias_metric_tables, bias_metrics
from pipeline.metrics.extrinsic import accuracy, extrinsic_metrics, gap_rms, gap_share_correlation, macro_f1, tpr_gaps
from pipeline.metrics.mlm import MaskedQuery, encode_ids, masked_token_logprobs, pll, scorable_positions
from pipeline.metrics.predict import classifier_logits
from pipeline.metrics.seat import association, effect_size, encode, n_partitions, permutation_p, seat_metrics
from pipeline.metrics.stereoset import ss_lms_icat, stereoset_metrics, stereoset_scores
from pipeline.metrics.winobias import stereotype_skew, winobias_metrics
from pipeline.metrics.winogender import winogender_metrics

__all__ = [
    "METRIC_FAMILIES",
    "MLM_FAMILIES",
    "BiasMetricsConfig",
    "MaskedQuery",
    "accuracy",
    "association",
    "bias_metric_tables",
    "bias_metrics",
    "bootstrap_ci",
    "bootstrap_indices",
    "classifier_logits",
    "counterfactual_gap",
    "counterfactual_metrics",
    "crows_metrics",
    "crows_scores",
    "effect_size",
    "encode",
    "encode_ids",
    "extrinsic_metrics",
    "gap_rms",
    "gap_share_correlation",
    "macro_f1",
    "masked_token_logprobs",
    "n_partitions",
    "permutation_p",
    "pll",
    "scorable_positions",
    "seat_metrics",
    "ss_lms_icat",
    "stereoset_metrics",
    "stereoset_scores",
    "stereotype_skew",
    "tpr_gaps",
    "true_class_prob_change",
    "unmodified_positions",
    "winobias_metrics",
    "winogender_metrics",
]
