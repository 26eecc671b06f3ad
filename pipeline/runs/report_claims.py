"""How the report states things: the section record, numbers with their intervals and p/q-values, and a change
between two models with the verdict its test allows (lower / higher / no detectable change). Shared by every
section module (:mod:`pipeline.runs.report_sections`, :mod:`pipeline.runs.report_structure`,
:mod:`pipeline.runs.report_mitigation`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from pipeline.runs.findings import Findings

__all__ = [
    "BIAS_HEADLINE",
    "DELTA_COLUMNS",
    "Section",
    "ci",
    "fmt",
    "headline_rows",
    "judged",
    "lowers",
    "moves",
    "pq",
    "seeds_short",
    "unavailable",
]


@dataclass
class Section:
    """One section of the report.

    Attributes:
        key: anchor id (``rq1``...).
        title: the heading (the research question).
        answer: the one-sentence answer (or what the data cannot decide and what would).
        numbers: the numbers behind the answer, one line each, with interval and q-value.
        figure: the figure, or None.
        table: the table behind the answer, or None.
        notes: caveats and missing inputs (stage and command to run).
    """

    key: str
    title: str
    answer: str
    numbers: list[str] = field(default_factory=list)
    figure: Figure | None = None
    table: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)


def fmt(x: float, digits: int = 3) -> str:
    """A number with ``digits`` significant digits ("n/a" for NaN)."""
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.{digits}g}"


def ci(row) -> str:
    """``value [low, high]`` of a row."""
    if not np.isfinite(row["ci_low"]):
        return fmt(row["value"])
    return f"{fmt(row['value'])} [{fmt(row['ci_low'])}, {fmt(row['ci_high'])}]"


def pq(row) -> str:
    """``p = .., q = ..`` of a row (q only when present)."""
    q = row.get("q", np.nan)
    return f"p = {fmt(row['p'], 2)}" + (f", q = {fmt(q, 2)}" if np.isfinite(q) else "")


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
BIAS_HEADLINE = ("gap_rms", "cf_prob_gap", "cf_flip_rate")  # the task-level bias of a classifier, in this order
_LABEL = {"gap_rms": "GAP_RMS", "cf_prob_gap": "counterfactual gap", "cf_flip_rate": "counterfactual flip rate"}
_FAIR = {"crows_stereo_pct": 50.0, "stereoset_ss": 50.0, "stereoset_icat": 100.0}  # others: 0


def lowers(row) -> bool:
    """The variant's value is closer to a fair model's (0; 50 for stereotype percentages) than its reference's."""
    fair = _FAIR.get(row["metric"], 0.0)
    return abs(row["value_variant"] - fair) < abs(row["value_reference"] - fair)


def judged(rows: pd.DataFrame, cfg) -> pd.DataFrame:
    """Comparison rows with ``decided`` (readable, q < alpha, and a test over seeds agrees when there are enough)
    and ``lowers``."""
    rows = rows.copy()
    seed_ok = (rows["n_seeds"] < cfg.min_seeds) | (rows["q_seeds"] < cfg.alpha)
    rows["decided"] = rows["interpretable"].astype(bool) & (rows["q"] < cfg.alpha) & seed_ok
    rows["lowers"] = [lowers(r) for _, r in rows.iterrows()]
    return rows


def seeds_short(row, min_seeds: int) -> str:
    """``on one seed`` / ``on 2 seeds (sd ..)`` / ``over 3 seeds (t-test q = ..)``."""
    k = int(row["n_seeds"])
    if k >= min_seeds:
        return f"over {k} seeds (t-test q = {fmt(row['q_seeds'], 2)})"
    return "on one seed" if k == 1 else f"on {k} seeds (sd {fmt(row['sd'], 2)})"


def moves(row, cfg) -> str:
    """``GAP_RMS 0.17 -> 0.15 (Δ ..., p, q, seeds; lower)``: a headline metric of a judged comparison row, with
    the verdict its test allows (for the signed counterfactual gap, about its size)."""
    if not row["decided"]:
        verdict = "no detectable change" if row["interpretable"] else "not interpretable"
    else:
        verdict = ("|gap| " if row["metric"] == "cf_prob_gap" else "") + ("lower" if row["lowers"] else "higher")
    return (
        f"{_LABEL[row['metric']]} {fmt(row['value_reference'])} -> {fmt(row['value_variant'])} (Δ {ci(row)}, "
        f"{pq(row)}, {seeds_short(row, cfg.min_seeds)}; {verdict})"
    )


def headline_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows of :data:`BIAS_HEADLINE` metrics over all examples (subset ``""`` or ``all``), in that order."""
    rows = rows[rows["metric"].isin(BIAS_HEADLINE) & rows["subset"].isin(("", "all"))]
    return rows.iloc[np.argsort([BIAS_HEADLINE.index(m) for m in rows["metric"]], kind="stable")]
