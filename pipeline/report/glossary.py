"""The report's glossary: every term its answers use, defined in one line (the full definitions and the tests behind
them: docs/FINDINGS.md and docs/METRICS.md). :func:`glossary_section` is the report's last section."""

from __future__ import annotations

import pandas as pd

from pipeline.report.claims import Section

__all__ = ["GLOSSARY", "glossary_section"]

GLOSSARY: tuple[tuple[str, str], ...] = (
    (
        "skew-oriented counterfactual gap (cf_skew_gap)",
        (
            "per example s_y x (P(y | female version) - P(y | male version)) for the true class y, where s_y = +1 when "
            "class y is more often female in the training data than overall and -1 otherwise; positive = the model follows "
            "the data's gender skew. Its mean does not cancel across classes skewed either way (the signed gap can)."
        ),
    ),
    (
        "counterfactual gap (cf_prob_gap)",
        (
            "P(y | female version) - P(y | male version) of the true class, averaged over test texts and their "
            "gender-swapped twins; signed, so classes skewed either way cancel."
        ),
    ),
    (
        "held-out words",
        "scored only on texts whose twin swaps a word of the held-out half of the swap lists, which no remedy trained on",
    ),
    (
        "flip rate / flip excess",
        (
            "share of texts whose predicted class changes when the gender words are swapped; the excess subtracts the flip "
            "rate of a gender-neutral control edit (a classifier near a tie flips under any edit)."
        ),
    ),
    (
        "GAP_RMS",
        (
            "root mean square over classes of the true-positive-rate gap between female and male test examples "
            "(De-Arteaga et al. 2019); its noise floor is the value a model with no gap gets from sampling alone."
        ),
    ),
    (
        "Δ",
        (
            "change of a metric from the reference model (the twin or the teacher) to the model named, paired over "
            "the same test examples (bootstrap interval)."
        ),
    ),
    ("[low, high]", "95% bootstrap confidence interval (over examples, or seeds x examples with enough seeds)."),
    (
        "p",
        (
            "two-sided p-value of the null stated with the test (e.g. 'the mean per-example effect is 0'); "
            "resampling p-values below 0.001 are written '< 0.001', never as a point value."
        ),
    ),
    (
        "q",
        (
            "Benjamini-Hochberg adjusted p-value: a finding at q < alpha keeps the expected share of false findings "
            "among all findings of its family (over the whole run for bias-carrying units) below alpha."
        ),
    ),
    (
        "MDE",
        (
            "minimum detectable effect: the true change a test at alpha detects with probability 0.8, read from "
            "the interval the decision uses; 'no detectable change' with a large MDE means the run was too small to tell."
        ),
    ),
    (
        "carries bias / adds",
        (
            "a unit (head or neuron) whose removal moves the model's bias towards 0 (or that mediates "
            "it), significant over the run and at least min_share of a detectable total."
        ),
    ),
    (
        "suppresses / reduces",
        (
            "a unit whose removal makes the model more biased: significant, material, opposite "
            "direction; reported as its own finding (it matters for pruning)."
        ),
    ),
    (
        "share",
        (
            "a unit's effect over the model's total bias on the same examples; printed only when the single-unit "
            "effects add up (their sum within 0.5-1.5 of the total), since interacting units can give shares above 1."
        ),
    ),
    ("depth", "(layer + 1) / number of layers, so models of different depth compare on one scale."),
    (
        "Gini",
        (
            "concentration of |head effects| (0 = every head alike, 1 = one head); compared with its no-effect level "
            "(the Gini of the same per-example noise with no head mattering)."
        ),
    ),
    (
        "noise ceiling",
        (
            "the split-half agreement of a model with itself: a student identical to its teacher reaches "
            "it, so agreement is 'not reproduced' only below the ceiling."
        ),
    ),
    (
        "fit to be read",
        (
            "a trained classifier head that beats the majority class (one-sided p < alpha) and puts at "
            "most 95% of its predictions in one class; the bias of other models is not interpreted."
        ),
    ),
    ("Pareto-optimal", "no other fit model is both more accurate and less biased (on the primary metric)."),
)


def glossary_section() -> Section:
    """The glossary as the report's last section (a two-column table)."""
    return Section(
        "glossary",
        "Glossary",
        "The terms of the answers above, one line each; docs/FINDINGS.md and docs/METRICS.md give each definition "
        "in full with its source and the test that checks it.",
        table=pd.DataFrame(GLOSSARY, columns=["term", "meaning"]),
    )
