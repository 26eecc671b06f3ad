"""Equal opportunity by post-processing as a model variant: the multiclass derived predictor of
:mod:`pipeline.compress.equal_opportunity` fitted on the dev split's predictions of a fine-tuned classifier and
installed in it for good (:mod:`pipeline.eo_hooks`: saved in ``config.eo_rule``, hooked in again on load), so every
stage measures the post-processed model.
"""

from __future__ import annotations

import numpy as np
from transformers import PreTrainedTokenizerBase

from pipeline.compress.config import EoSection
from pipeline.compress.equal_opportunity import expected_tprs, fit_rule, tpr_gaps, tprs
from pipeline.data import TaskData
from pipeline.data.task import GENDER_NAMES
from pipeline.eo_hooks import (
    UNKNOWN,
    EoRule,
    gender_lexicon,
    infer_genders,
    install_eo_rule,
    installed_rule,
    token_texts,
)
from pipeline.metrics.predict import classifier_logits
from pipeline.models import LoadedModel

__all__ = ["dev_groups", "empty_cells", "fit_eo"]


def dev_groups(
    dev: TaskData, gender: str, tokenizer: PreTrainedTokenizerBase | None = None, max_length: int = 128
) -> np.ndarray:
    """The gender of each dev row as the rule will read it: the data's (``given``) or inferred from the gendered
    words of the text as the model sees it (``inferred``; ``UNKNOWN`` where it has none or a tie; without a
    tokenizer, as the preflight reads it: the whole text)."""
    if gender == "given":
        return np.asarray(dev.genders)
    texts = token_texts(tokenizer, dev.texts, max_length) if tokenizer is not None else list(dev.texts)
    return infer_genders(texts, *gender_lexicon())


def empty_cells(labels: np.ndarray, groups: np.ndarray, label_names: tuple[str, ...]) -> list[str]:
    """The (class, gender) cells with no row among those of known gender, named (``nurse/female``)."""
    known = groups != UNKNOWN
    counts = np.zeros((len(label_names), len(GENDER_NAMES)), dtype=int)
    np.add.at(counts, (labels[known], groups[known]), 1)
    return [f"{label_names[c]}/{GENDER_NAMES[g]}" for c, g in zip(*np.nonzero(counts == 0))]


def fit_eo(
    loaded: LoadedModel, dev: TaskData, section: EoSection, seed: int, *, batch_size: int, max_length: int
) -> list[dict]:
    """Fit the rule on ``dev`` (the classifier's predictions, the true labels, each row's gender from
    ``section.gender``) and install it in ``loaded`` in place.

    Returns:
        Report rows: dev accuracy and largest per-class TPR gap before and after (the rule's in expectation over
        its draws), dev rows used, and the share of dev rows with no gender to read (``eo_dev_unknown_gender_share``:
        no or tied gendered words with the inferred gender, 0 with the given one), left out of the fit.

    Raises:
        ValueError: ``loaded`` is post-processed already, ``dev`` is empty, or a (class, gender) cell of ``dev``
            has no row (its TPR is undefined), naming the cells and the fix.
    """
    if installed_rule(loaded.model) is not None:
        raise ValueError(f"{loaded.source!r} is post-processed by an eo rule already; fit the rule on its input.")
    if not len(dev):
        raise ValueError("eo fits its rule on the dev split, which is empty; give the task a dev split.")
    groups = dev_groups(dev, section.gender, loaded.tokenizer, max_length)
    labels, k = np.asarray(dev.labels), len(loaded.label_names)
    empty = empty_cells(labels, groups, tuple(loaded.label_names))
    if empty:
        raise ValueError(
            f"eo (gender = {section.gender!r}): the dev split has no row for {empty}, so their TPR is undefined; use "
            "a larger dev split, fewer classes (task.max_classes) or the other gender source."
        )
    logits = classifier_logits(loaded, dev.texts, batch_size=batch_size, max_length=max_length)
    known = groups != UNKNOWN
    pred, labels, groups = logits.argmax(-1).numpy()[known], labels[known], groups[known]
    matrix = fit_rule(pred, labels, groups, k, tol=section.tol)
    install_eo_rule(loaded.model, loaded.tokenizer, EoRule(matrix, section.gender, seed, *gender_lexicon()))
    before, after = tprs(pred, labels, groups, k), expected_tprs(pred, labels, groups, matrix)
    share = np.array([[((groups == g) & (labels == c)).mean() for c in range(k)] for g in range(len(matrix))])
    n = int(known.sum())
    unknown = float(1 - known.mean())
    return [
        {"unit": "model", "metric": "eo_dev_unknown_gender_share", "value": unknown, "n": len(dev)},
        {"unit": "model", "metric": "eo_dev_accuracy_before", "value": float((pred == labels).mean()), "n": n},
        {"unit": "model", "metric": "eo_dev_accuracy_after", "value": float((share * after).sum()), "n": n},
        {"unit": "model", "metric": "eo_dev_tpr_gap_before", "value": float(np.nanmax(tpr_gaps(before))), "n": n},
        {"unit": "model", "metric": "eo_dev_tpr_gap_after", "value": float(np.nanmax(tpr_gaps(after))), "n": n},
    ]
