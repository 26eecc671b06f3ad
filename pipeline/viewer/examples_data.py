"""The example browser's table (the viewer's Examples page): every test example with its gender-swapped twin, class,
gender, and per model the predicted class and the per-example counterfactual gap and flip; filters, sorting and the
metrics of a slice (a filtered selection), computed from the run's tables with pandas only.

The per-example gap is the ``cf_prob_gap`` row of ``counterfactual_examples`` (swap lists ``all``):
P(y | female version) - P(y | male version) of the true class y (:mod:`pipeline.metrics.counterfactual`); the flip
is 1 when the text and its twin get different predicted classes. Predictions come from ``predictions`` (subset
``test``). A slice's mean gap has a percentile bootstrap interval (:func:`pipeline.bootstrap.bootstrap_ci`, Efron &
Tibshirani 1993); its flip rate and accuracy exact Clopper-Pearson intervals (Clopper & Pearson 1934).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.stats import binomtest

from pipeline.bootstrap import bootstrap_ci
from pipeline.data import MALE
from pipeline.variants import variant_sort_key
from pipeline.viewer.viewer_data import interval_text

__all__ = [
    "COLUMNS",
    "SORTS",
    "exact_interval",
    "example_table",
    "filter_examples",
    "slice_display",
    "slice_metrics",
    "sort_examples",
]

KEYS = ["variant", "seed", "example"]
# the numbers before the texts, so that they stay in view beside a long sentence
COLUMNS = ["example", "variant", "seed", "class", "gender", "predicted", "correct", "gap", "flip", "text", "twin"]
# sort choice -> (column, key function or None); every sort is stable and ties keep (variant, seed, example) order
SORTS = {
    "|gap|": ("gap", np.abs),
    "gap": ("gap", None),
    "flip": ("flip", None),
    "example": ("example", None),
    "class": ("class", None),
}


def _name(names: Sequence[str] | None, label: float) -> str:
    if pd.isna(label):
        return ""
    return names[int(label)] if names is not None and 0 <= int(label) < len(names) else str(int(label))


def example_table(
    predictions: pd.DataFrame | None,
    counterfactual: pd.DataFrame | None,
    *,
    texts: Sequence[str] | None = None,
    twins: Sequence[str] | None = None,
    label_names: Sequence[str] | None = None,
) -> pd.DataFrame:
    """One row per (variant, seed, example) of either table, with :data:`COLUMNS`.

    Args:
        predictions: ``predictions`` rows (``example``, ``label``, ``gender``, ``pred``), or None.
        counterfactual: ``counterfactual_examples`` rows; those of swap lists ``all`` give ``gap`` and ``flip``.
        texts, twins: The run's test texts and their gender-swapped twins, indexed by ``example`` ("" when absent).
        label_names: Class names indexed by class id (class ids as text when absent).

    Returns:
        ``gap`` / ``flip`` are NaN for an example without a twin, ``predicted`` / ``correct`` for a model without
        predictions; ``gender`` is the original text's ("female" / "male").
    """
    parts = []
    if predictions is not None and len(predictions):
        rows = predictions[predictions["metric"] == "prob_true"] if "metric" in predictions else predictions
        parts.append(rows[[*KEYS, "label", "gender", "pred"]].drop_duplicates(KEYS))
    if counterfactual is not None and len(counterfactual):
        subset = counterfactual["subset"].fillna("").replace("", "all") if "subset" in counterfactual else "all"
        rows = counterfactual[(subset == "all") & counterfactual["metric"].isin(("cf_prob_gap", "cf_flip_rate"))]
        wide = rows.pivot_table(index=KEYS, columns="metric", values="value", aggfunc="first")
        wide = wide.reindex(columns=["cf_prob_gap", "cf_flip_rate"]).rename(
            columns={"cf_prob_gap": "gap", "cf_flip_rate": "flip"}
        )
        facts = rows.drop_duplicates(KEYS).set_index(KEYS)[["label", "gender"]]
        parts.append(wide.join(facts).reset_index())
    if not parts:
        return pd.DataFrame(columns=COLUMNS)
    out = parts[0]
    if len(parts) == 2:
        out = parts[0].merge(parts[1], on=KEYS, how="outer", suffixes=("", "_cf"))
        for column in ("label", "gender"):
            out[column] = out[column].combine_first(out.pop(f"{column}_cf"))
    for column in ("pred", "gap", "flip"):
        if column not in out:
            out[column] = np.nan
    n = len(texts) if texts is not None else 0
    out["text"] = [texts[int(e)] if int(e) < n else "" for e in out["example"]]
    out["twin"] = [twins[int(e)] if twins is not None and int(e) < len(twins) else "" for e in out["example"]]
    out["class"] = [_name(label_names, v) for v in out["label"]]
    out["gender"] = ["" if pd.isna(g) else "male" if int(g) == MALE else "female" for g in out["gender"]]
    out["predicted"] = [_name(label_names, v) for v in out["pred"]]
    out["correct"] = (out["pred"] == out["label"]).where(out["pred"].notna())
    out = out.astype({"seed": int, "example": int})
    rank = {v: i for i, v in enumerate(sorted(set(out["variant"]), key=lambda v: variant_sort_key(str(v))))}
    out = out.assign(rank=out["variant"].map(rank)).sort_values(["rank", "seed", "example"], kind="stable")
    return out[COLUMNS].reset_index(drop=True)


def filter_examples(
    frame: pd.DataFrame,
    *,
    classes: Sequence[str] = (),
    genders: Sequence[str] = (),
    models: Sequence[str] = (),
    search: str = "",
) -> pd.DataFrame:
    """The rows of ``frame`` (:func:`example_table`) in ``classes``, ``genders`` and ``models`` (variants; empty =
    all) whose text or twin contains ``search`` (case-insensitive, plain text)."""
    keep = pd.Series(True, index=frame.index)
    for column, allowed in (("class", classes), ("gender", genders), ("variant", models)):
        if allowed:
            keep &= frame[column].isin(list(allowed))
    if search.strip():
        needle = search.strip()
        keep &= frame["text"].str.contains(needle, case=False, regex=False) | frame["twin"].str.contains(
            needle, case=False, regex=False
        )
    return frame[keep]


def sort_examples(frame: pd.DataFrame, by: str, *, descending: bool = True) -> pd.DataFrame:
    """``frame`` sorted by a :data:`SORTS` choice (stable; missing values last).

    Raises:
        ValueError: ``by`` is not a key of :data:`SORTS`.
    """
    if by not in SORTS:
        raise ValueError(f"sort by {by!r} is not known; use one of {', '.join(SORTS)}.")
    column, key = SORTS[by]
    return frame.sort_values(
        column, ascending=not descending, kind="stable", na_position="last", key=None if key is None else key
    )


def exact_interval(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Clopper-Pearson interval of a proportion ``k / n`` (NaN bounds when ``n`` is 0)."""
    if n == 0:
        return np.nan, np.nan
    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=1 - alpha, method="exact")
    return float(ci.low), float(ci.high)


def slice_metrics(frame: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> pd.DataFrame:
    """Per (variant, seed) of ``frame`` (filtered :func:`example_table` rows): ``n`` (examples with a prediction),
    ``accuracy``, ``n_pairs`` (examples with a twin), mean ``gap`` and ``flip_rate``, each with ``_lo`` / ``_hi``
    bounds (bootstrap for the gap, exact for the proportions). The examples are resampled in example order, so the
    interval does not depend on how the rows are sorted."""
    out = []
    for (variant, model_seed), rows in frame.sort_values("example").groupby(["variant", "seed"], sort=False):
        correct = rows["correct"].dropna().astype(float).to_numpy()
        gaps = rows["gap"].dropna().to_numpy(dtype=np.float64)
        flips = rows.loc[rows["gap"].notna(), "flip"].dropna().to_numpy(dtype=np.float64)
        gap = bootstrap_ci(np.mean, gaps, n_boot=n_boot, seed=seed, alpha=alpha) if len(gaps) else (np.nan,) * 3
        accuracy = exact_interval(int(correct.sum()), len(correct), alpha)
        flip = exact_interval(int(flips.sum()), len(flips), alpha)
        out.append(
            {
                "variant": variant,
                "seed": int(model_seed),
                "n": len(correct),
                "accuracy": correct.mean() if len(correct) else np.nan,
                "accuracy_lo": accuracy[0],
                "accuracy_hi": accuracy[1],
                "n_pairs": len(gaps),
                "gap": gap[0],
                "gap_lo": gap[1],
                "gap_hi": gap[2],
                "flip_rate": flips.mean() if len(flips) else np.nan,
                "flip_rate_lo": flip[0],
                "flip_rate_hi": flip[1],
            }
        )
    out.sort(key=lambda r: (variant_sort_key(str(r["variant"])), r["seed"]))
    return pd.DataFrame(out)


def slice_display(metrics: pd.DataFrame) -> pd.DataFrame:
    """:func:`slice_metrics` as text: ``value [low, high]`` per metric beside its n."""

    def text(column: str) -> list[str]:
        return [
            interval_text(v, lo, hi)
            for v, lo, hi in zip(metrics[column], metrics[f"{column}_lo"], metrics[f"{column}_hi"])
        ]

    return pd.DataFrame(
        {
            "variant": metrics["variant"],
            "seed": metrics["seed"],
            "n": metrics["n"],
            "accuracy": text("accuracy"),
            "n pairs": metrics["n_pairs"],
            "mean cf gap": text("gap"),
            "flip rate": text("flip_rate"),
        }
    )
