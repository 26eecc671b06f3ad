"""How the report states things: the section record, numbers with their intervals and p/q-values, and a change
between two models with the verdict its test allows (lower / higher / no detectable change). Shared by every
section module (:mod:`pipeline.report.answers`, :mod:`pipeline.report.answers_structure`,
:mod:`pipeline.report.remedies`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from pipeline.findings.compute import Findings
from pipeline.stats import bh_qvalues, minimum_detectable

__all__ = [
    "BIAS_HEADLINE",
    "DELTA_COLUMNS",
    "HEADLINE_POOL",
    "Section",
    "accuracy_cost",
    "changed_names",
    "ci",
    "fmt",
    "headline_metrics",
    "headline_rows",
    "judged",
    "label",
    "lowers",
    "moves",
    "power_clause",
    "pq",
    "scope",
    "seeds_short",
    "tested_ci",
    "tested_mde",
    "unavailable",
]


@dataclass
class Section:
    """One section of the report.

    Attributes:
        key: anchor id (``rq1``...).
        title: the heading (the research question).
        answer: the answer with its qualifications (or what the data cannot decide and what would).
        numbers: the numbers behind the answer, one line each, with interval and q-value.
        figure: the figure, or None.
        table: the table behind the answer, or None.
        notes: caveats and missing inputs (stage and command to run).
        short: the answer in one plain sentence, read first (the answer, numbers and table follow); "" for none.
    """

    key: str
    title: str
    answer: str
    numbers: list[str] = field(default_factory=list)
    figure: Figure | None = None
    table: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)
    short: str = ""

    def lead(self) -> str:
        """The one-sentence answer to print before the answer: ``short``, or "" when the answer opens with it."""
        return "" if not self.short or self.answer.startswith(self.short.rstrip(".")) else self.short


def fmt(x: float, digits: int = 3) -> str:
    """A number with ``digits`` significant digits ("n/a" for NaN)."""
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.{digits}g}"


def ci(row) -> str:
    """``value [low, high]`` of a row."""
    if not np.isfinite(row["ci_low"]):
        return fmt(row["value"])
    return f"{fmt(row['value'])} [{fmt(row['ci_low'])}, {fmt(row['ci_high'])}]"


def fmt_p(p: float, name: str = "p") -> str:
    """``p = 0.012`` with 2 significant digits, ``p < 0.001`` below it (a resampling p-value has a floor: never a
    point value there), ``p = n/a`` for NaN."""
    if p is None or not np.isfinite(p):
        return f"{name} = n/a"
    return f"{name} < 0.001" if p < 0.001 else f"{name} = {p:.2g}"


def p_text(p: float) -> str:
    """A p- or q-value in a table cell: three significant digits, ``"< 0.001"`` below 0.001, "" for NaN."""
    if p is None or not np.isfinite(p):
        return ""
    return "< 0.001" if p < 0.001 else f"{p:.3g}"


def is_p_column(name: object) -> bool:
    """Whether a table column holds p- or q-values (``p``, ``q``, ``p_value``, ``q_total``, ``flip_p``...)."""
    return bool({"p", "q"} & set(str(name).replace("_", " ").split()))


def pq(row) -> str:
    """``p = .., q = ..`` of a row (q only when present; below 0.001 as ``< 0.001``)."""
    q = row.get("q", np.nan)
    return fmt_p(row["p"]) + (f", {fmt_p(q, 'q')}" if np.isfinite(q) else "")


def unavailable(f: Findings, key: str, title: str, names: tuple[str, ...], what: str) -> Section | None:
    """The section to show when none of the findings ``names`` could be computed (missing tables or errors)."""
    if any(f.get(n) is not None for n in names):
        return None
    notes = [m for n in names for m in f.missing.get(n, [])]
    notes += [f"{n} could not be computed: {f.errors[n]}" for n in names if n in f.errors]
    if not notes:
        notes.append(f"the run's tables hold no rows for {', '.join(names)}.")
    return Section(
        key,
        title,
        f"This run cannot answer {what} yet: the tables it needs are missing (below).",
        notes=list(dict.fromkeys(notes)),
    )


# ---- stating a change ---------------------------------------------------------------------------------------------
DELTA_COLUMNS = ("metric", "subset", "value", "ci_low", "ci_high", "p", "q", "n", "n_seeds")  # a change in a table
# the task-level bias of a classifier: the primary metric of a research question (FindingsConfig.primary_rq*) and,
# in this order, the secondary ones, corrected as one family
HEADLINE_POOL = ("cf_skew_gap", "gap_rms", "cf_prob_abs_change", "cf_flip_excess", "cf_flip_rate")
BIAS_HEADLINE = HEADLINE_POOL[:4]  # the default primary (cf_skew_gap) and its secondaries
_LABEL = {"gap_rms": "GAP_RMS", "cf_prob_gap": "signed counterfactual gap",
          "cf_prob_abs_change": "mean |counterfactual gap|", "cf_skew_gap": "skew-oriented counterfactual gap",
          "cf_flip_rate": "counterfactual flip rate", "cf_flip_excess": "flip rate above its neutral-edit control"}  # fmt: skip
_FAIR = {"crows_stereo_pct": 50.0, "stereoset_ss": 50.0, "stereoset_icat": 100.0}  # others: 0
_BY_DELTA = frozenset({*_LABEL, "accuracy_gap", "tpr_gap"})  # tested as themselves: "lower" is the sign of the change


def headline_metrics(primary: str) -> tuple[str, ...]:
    """``(primary, *secondary)``: the primary metric and the other headline metrics (the flip rate itself is
    secondary only when it is primary's stand-in; its excess over the control is the secondary one)."""
    return (primary, *(m for m in HEADLINE_POOL[:4] if m != primary))


def label(metric: str) -> str:
    """The report's name of a headline metric."""
    return _LABEL.get(metric, metric)


def lowers(row) -> bool:
    """The change lowers the metric. Headline and per-class metrics are tested as themselves, so this is the sign
    of the tested change (a gap that crosses 0 is judged by the test of its own statistic, e.g. the per-example
    |gap|); the stored benchmark scores compare their distance to a fair model's (0; 50 for stereotype percentages)."""
    if row["metric"] in _BY_DELTA:
        return bool(row["value"] < 0)
    fair = _FAIR.get(row["metric"], 0.0)
    return abs(row["value_variant"] - fair) < abs(row["value_reference"] - fair)


def judged(rows: pd.DataFrame, cfg, primary: str | None = None, headline: pd.Series | None = None) -> pd.DataFrame:
    """Comparison rows with ``role`` (primary / secondary / other), ``q_used``, ``decided`` and ``lowers``.

    The tested p-value is the example-level ``p`` with fewer than ``cfg.min_seeds`` seeds (a statement about these
    trained models) and the seed x example ``p_seeds`` with more (about the method). The primary metric's rows
    (``headline``: default subsets ``""``/``all``) are BH-corrected among themselves, the secondary headline rows as
    one family over all their metrics and pairs, the other rows keep their per-metric ``q`` (``q_seeds``).
    """
    rows = rows.copy()
    primary = primary or cfg.primary_rq1
    headline = rows["subset"].isin(("", "all")) if headline is None else headline.reindex(rows.index, fill_value=False)
    many = (rows["n_seeds"] >= cfg.min_seeds).to_numpy()
    p_used = np.where(many, rows["p_seeds"], rows["p"]).astype(float)
    rows["role"] = np.where(headline & (rows["metric"] == primary), "primary",
                            np.where(headline & rows["metric"].isin(headline_metrics(primary)[1:]), "secondary",
                                     "other"))  # fmt: skip
    rows["q_used"] = np.where(many, rows["q_seeds"], rows["q"]).astype(float)
    for role in ("primary", "secondary"):
        mine = (rows["role"] == role).to_numpy()
        if mine.any():
            rows.loc[mine, "q_used"] = bh_qvalues(p_used[mine])
    rows["decided"] = rows["interpretable"].astype(bool) & (rows["q_used"] < cfg.alpha)
    rows["lowers"] = [lowers(r) for _, r in rows.iterrows()]
    return rows


def seeds_short(row, min_seeds: int) -> str:
    """``on one seed`` / ``on 2 seeds (sd ..)`` / ``over 3 seeds (seed x example bootstrap)``."""
    k = int(row["n_seeds"])
    if k >= min_seeds:
        return f"over {k} seeds (seed x example bootstrap p = {fmt(row.get('p_seeds', np.nan), 2)})"
    return "on one seed" if k == 1 else f"on {k} seeds (sd {fmt(row['sd'], 2)})"


def scope(row, min_seeds: int) -> str:
    """What a decided change is about: the method (enough seeds) or these trained models."""
    k = int(row["n_seeds"])
    if k >= min_seeds:
        return f"a method effect over {k} seeds"
    return f"these trained models ({'one seed' if k == 1 else f'{k} seeds'}; {min_seeds} seeds test the method)"


def moves(row, cfg, floor: str = "") -> str:
    """``GAP_RMS 0.17 -> 0.15 (Δ ..., p, q, seeds; lower)``: a headline metric of a judged comparison row with the
    verdict its own test allows, the q-value it was decided on (its family), and ``floor`` (a noise-floor clause)."""
    if not row["decided"]:
        verdict = "no detectable change" if row["interpretable"] else "not interpretable"
    else:
        verdict = "lower" if row["lowers"] else "higher"
    family = {"primary": "primary", "secondary": "secondary family"}.get(row.get("role", "other"), "")
    q = f"q = {fmt(row['q_used'], 2)}{' (' + family + ')' if family else ''}" if "q_used" in row else pq(row)
    p = f"p = {fmt(row['p'], 2)}, " if "q_used" in row else ""
    where = " (held-out swap words)" if row.get("subset") == "heldout" else ""
    return (
        f"{label(row['metric'])}{where} {fmt(row['value_reference'])} -> {fmt(row['value_variant'])}{floor} "
        f"(Δ {tested_ci(row, cfg)}, {p}{q}, MDE {fmt(tested_mde(row, cfg), 2)}, {seeds_short(row, cfg.min_seeds)}; "
        f"{verdict})"
    )


def _tested_interval(row, cfg) -> tuple[float, float]:
    """The interval of the tested change: seed x example with enough seeds (the method), else over examples."""
    seeds = int(row["n_seeds"]) >= cfg.min_seeds and np.isfinite(row.get("ci_low_seeds", np.nan))
    return (row["ci_low_seeds"], row["ci_high_seeds"]) if seeds else (row["ci_low"], row["ci_high"])


def tested_ci(row, cfg) -> str:
    """``value [low, high]`` of a comparison row with the interval of its test (:func:`_tested_interval`)."""
    low, high = _tested_interval(row, cfg)
    return ci({"value": row["value"], "ci_low": low, "ci_high": high})


def power_clause(rows: pd.DataFrame, cfg, what: str) -> str:
    """`` Power: <what> of about m would be detected (...)``: the median minimum detectable effect of ``rows``'
    intervals (power 0.8 at ``cfg.alpha``), or "" when no row has an interval."""
    if rows is None or rows.empty or "ci_low" not in rows:
        return ""
    mde = np.array([minimum_detectable(lo, hi, alpha=cfg.alpha) for lo, hi in zip(rows["ci_low"], rows["ci_high"])])
    mde = mde[np.isfinite(mde)]
    if not len(mde):
        return ""
    return (
        f" Power: {what} of about {fmt(float(np.median(mde)), 2)} would be detected (the median minimum detectable "
        f"effect of {len(mde)} test(s), power 0.8 at p < {cfg.alpha} before any multiple-testing correction)."
    )


def accuracy_cost(row, cfg) -> str:
    """``0.03 [-0.005, 0.065] (p = .., q = .., MDE ..)``: the accuracy change of a comparison row."""
    return f"{tested_ci(row, cfg)} ({pq(row)}, MDE {fmt(tested_mde(row, cfg), 2)})"


def tested_mde(row, cfg) -> float:
    """The minimum detectable effect (power 0.8 at ``cfg.alpha``) of a comparison row's tested change."""
    low, high = _tested_interval(row, cfg)
    return minimum_detectable(low, high, alpha=cfg.alpha)


def changed_names(moved: pd.DataFrame, *, twins: bool = False) -> str:
    """The decided changes of a one-sentence answer: each named with its direction (``variant [vs twin] lower``),
    or, beyond three, counted (the answer names them all)."""
    if len(moved) > 3:
        return f"{int(moved['lowers'].sum())} lower, {int((~moved['lowers']).sum())} higher"
    return ", ".join(f"{r['variant']}{' vs ' + r['twin'] if twins else ''} {'lower' if r['lowers'] else 'higher'}"
                     for _, r in moved.iterrows())  # fmt: skip


def headline_rows(rows: pd.DataFrame, metrics: tuple[str, ...] = BIAS_HEADLINE, cf_subset: str = "all") -> pd.DataFrame:
    """The rows of the headline ``metrics`` (GAP_RMS over all examples, the counterfactual ones on the swap subset
    ``cf_subset``: ``all`` or ``heldout``), in that order."""
    subset = np.where(rows["metric"].str.startswith("cf_"), cf_subset, rows["subset"].replace("", "all"))
    rows = rows[rows["metric"].isin(metrics) & (rows["subset"].replace("", "all") == subset)]
    return rows.iloc[np.argsort([metrics.index(m) for m in rows["metric"]], kind="stable")]


def _floor_of(bias: pd.DataFrame, variant: str) -> dict[str, float] | None:
    """GAP_RMS of ``variant`` with its no-gap range (seeds pooled: means), or None when the run has no such rows."""
    rows = bias[(bias["variant"] == variant) & (bias["unit"] == "model")]
    out = {}
    for metric in ("gap_rms", "gap_rms_nogap", "gap_rms_corrected", "gap_rms_n_needed"):
        mine = rows[rows["metric"] == metric]
        if mine.empty:
            return None
        out[metric] = float(mine["value"].mean())
        out[metric + "_high"] = float(mine["ci_high"].mean())
        out[metric + "_low"] = float(mine["ci_low"].mean())
    out["n"] = float(rows.loc[rows["metric"] == "gap_rms", "n"].max())
    return out


def gap_floor(bias: pd.DataFrame | None, variants: tuple[str, ...]) -> str:
    """The noise-floor clause of GAP_RMS for ``variants`` (reference first): each model's no-gap range (GAP_RMS with
    gender permuted within class) and, when every observed value lies inside its range, "not measurable at this n"
    with the n that would measure the noise-corrected size, or "no detectable gap" when that size is 0."""
    floors = [_floor_of(bias, v) for v in variants] if bias is not None else [None]
    if any(f is None for f in floors):
        return ""
    ranges = " and ".join(f"[{fmt(f['gap_rms_nogap_low'], 2)}, {fmt(f['gap_rms_nogap_high'], 2)}]" for f in floors)
    n = int(max(f["n"] for f in floors))
    if all(f["gap_rms"] > f["gap_rms_nogap_high"] for f in floors):
        corrected = " -> ".join(fmt(f["gap_rms_corrected"], 2) for f in floors)
        return f" [no-gap range {ranges}; noise-corrected {corrected}]"
    if any(f["gap_rms"] > f["gap_rms_nogap_high"] for f in floors):
        return f" [no-gap range {ranges}: measurable in only one model at n = {n}]"
    sizes = [f["gap_rms_corrected"] for f in floors]
    if max(sizes) <= 0:
        return f" [inside the no-gap range {ranges}: no detectable gap at n = {n} (noise-corrected estimate 0)]"
    needed = int(np.nanmax([f["gap_rms_n_needed"] for f in floors]))
    return (
        f" [inside the no-gap range {ranges}: not measurable at n = {n}; about n = {needed:,} test examples would "
        f"measure a gap of the noise-corrected size {fmt(max(sizes), 2)}]"
    )
