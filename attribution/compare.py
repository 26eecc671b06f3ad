"""Comparing attributions across models: homogeneity, seed stability, teacher-student alignment.

- Homogeneity of head effects (Leteno et al. 2023, "An Investigation of Structures Responsible for Gender Bias in
  BERT and DistilBERT", IDA, who find bias spread more evenly over heads in DistilBERT): the Gini coefficient of
  ``|effect|`` over heads (0 = every head equal, (n-1)/n = one head carries all) and the normalised entropy of the
  shares ``|effect_h| / sum |effect|`` (1 = uniform).
- Stability across fine-tuning seeds: Spearman rank correlation of head effects between two seeds of a variant,
  and the overlap of their top-k heads by ``|effect|`` (``|A n B| / k``).
- Alignment of a DistilBERT-style student with its teacher: student layer i is initialised from teacher layer
  ``layer_map[i]`` (the student config's ``layer_map`` when present, else ``2 i`` as in docs/DESIGN.md); per mapped
  pair of layers, the Spearman correlation of the head effects and each layer's share of the total |effect|.

All functions take tidy tables (rows of unit ``head`` with ``layer``, ``head``, ``metric``, ``value``) and
return tidy rows.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from pipeline.schema import tidy

__all__ = [
    "gini",
    "homogeneity",
    "layer_map",
    "normalised_entropy",
    "seed_stability",
    "teacher_student_alignment",
    "top_k_overlap",
]


def gini(values: Sequence[float] | np.ndarray) -> float:
    """Gini coefficient of ``|values|``: ``sum_ij |x_i - x_j| / (2 n^2 mean x)``; NaN when all are zero."""
    x = np.sort(np.abs(np.asarray(values, dtype=float)))
    n, total = len(x), x.sum()
    if n == 0 or total == 0:
        return float("nan")
    ranks = np.arange(1, n + 1)
    return float(2 * (ranks * x).sum() / (n * total) - (n + 1) / n)


def normalised_entropy(values: Sequence[float] | np.ndarray) -> float:
    """Entropy of the shares ``|x_i| / sum |x|`` divided by ``log n`` (1 = uniform); NaN when all are zero."""
    x = np.abs(np.asarray(values, dtype=float))
    if len(x) < 2 or x.sum() == 0:
        return float("nan")
    p = x[x > 0] / x.sum()
    return float(-(p * np.log(p)).sum() / np.log(len(x)))


def top_k_overlap(a: pd.Series, b: pd.Series, k: int) -> float:
    """Share of the top-k units by |value| that two effect series (same index) have in common."""
    if k < 1:
        raise ValueError(f"k={k!r}: give a positive number of top units.")
    top = lambda s: set(s.abs().sort_values(ascending=False, kind="stable").index[:k])
    return len(top(a) & top(b)) / min(k, len(a))


def _heads(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    rows = frame[(frame["unit"] == "head") & (frame["metric"] == metric)]
    if rows.empty:
        present = sorted(set(frame.loc[frame["unit"] == "head", "metric"]))
        raise ValueError(f"no head rows for metric {metric!r}; head metrics present: {present}.")
    keys = ["variant", "seed", "layer", "head"]
    if rows.duplicated(keys).any():
        raise ValueError(
            f"metric {metric!r} has several rows per head (other columns differ, e.g. mode or score); "
            "filter the table to one condition first."
        )
    return rows


def homogeneity(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Gini and normalised entropy of |head effects| per (variant, seed): metrics ``gini``, ``entropy``."""
    out = []
    for (variant, seed), rows in _heads(frame, metric).groupby(["variant", "seed"], sort=True):
        values = rows["value"].to_numpy()
        for name, fn in (("gini", gini), ("entropy", normalised_entropy)):
            out.append({"variant": variant, "seed": seed, "metric": name, "value": fn(values), "n": len(values)})
    return tidy(out, of=metric)


def seed_stability(frame: pd.DataFrame, metric: str, *, k: int = 10) -> pd.DataFrame:
    """Per variant and pair of seeds: ``seed_spearman`` and ``seed_topk_overlap`` (subset ``"<s1>-<s2>"``), and
    their mean over pairs (subset ``mean``)."""
    out = []
    for variant, rows in _heads(frame, metric).groupby("variant", sort=True):
        effects = rows.pivot_table(index=["layer", "head"], columns="seed", values="value")
        pairs = []
        for s1, s2 in itertools.combinations(sorted(effects.columns), 2):
            both = effects[[s1, s2]].dropna()
            rho = float(spearmanr(both[s1], both[s2]).statistic) if len(both) > 1 else float("nan")
            overlap = top_k_overlap(both[s1], both[s2], k)
            pairs.append((rho, overlap))
            for name, value in (("seed_spearman", rho), ("seed_topk_overlap", overlap)):
                out.append({"variant": variant, "metric": name, "subset": f"{s1}-{s2}", "value": value, "n": len(both)})
        if pairs:
            for name, values in zip(("seed_spearman", "seed_topk_overlap"), zip(*pairs)):
                out.append({"variant": variant, "metric": name, "subset": "mean", "value": float(np.nanmean(values)),
                            "n": len(pairs)})  # fmt: skip
    if not out:
        raise ValueError(f"seed stability needs two seeds of one variant; {metric!r} rows have one seed per variant.")
    return tidy(out, of=metric, k=k)


def layer_map(config, n_student_layers: int) -> list[int]:
    """Teacher layer of each student layer: ``config.layer_map`` when the student records it, else ``2 i``."""
    mapping = getattr(config, "layer_map", None)
    mapping = list(range(0, 2 * n_student_layers, 2)) if mapping is None else [int(t) for t in mapping]
    if len(mapping) != n_student_layers:
        raise ValueError(f"layer_map {mapping} has {len(mapping)} entries for {n_student_layers} student layers.")
    return mapping


def teacher_student_alignment(
    teacher: pd.DataFrame, student: pd.DataFrame, metric: str, mapping: Sequence[int]
) -> pd.DataFrame:
    """Align student layer i with teacher layer ``mapping[i]`` (tables of one variant and seed each).

    Rows of unit ``layer`` (the student layer; extra column ``teacher_layer``): ``align_spearman`` (head effects of
    the two layers, matched by head id), ``student_share`` and ``teacher_share`` (the layer's share of the model's
    total |effect|); and a ``model`` row ``align_share_spearman`` over the mapped layers.
    """
    t, s = _heads(teacher, metric), _heads(student, metric)
    for name, rows in (("teacher", t), ("student", s)):
        if rows[["variant", "seed"]].drop_duplicates().shape[0] != 1:
            raise ValueError(f"the {name} table holds several variants/seeds; pass one of each.")
    t_total, s_total = t["value"].abs().sum(), s["value"].abs().sum()
    out, shares = [], []
    for layer, t_layer in enumerate(mapping):
        s_rows = s[s["layer"] == layer].set_index("head")["value"]
        t_rows = t[t["layer"] == t_layer].set_index("head")["value"]
        if t_rows.empty:
            raise ValueError(f"teacher has no head rows in layer {t_layer} (mapped from student layer {layer}).")
        common = s_rows.index.intersection(t_rows.index)
        rho = float(spearmanr(s_rows[common], t_rows[common]).statistic) if len(common) > 1 else float("nan")
        share = (s_rows.abs().sum() / s_total, t_rows.abs().sum() / t_total)
        shares.append(share)
        base = {"variant": s["variant"].iloc[0], "seed": s["seed"].iloc[0], "unit": "layer", "layer": layer,
                "teacher_layer": t_layer}  # fmt: skip
        out += [{**base, "metric": "align_spearman", "value": rho, "n": len(common)},
                {**base, "metric": "student_share", "value": float(share[0]), "n": len(s_rows)},
                {**base, "metric": "teacher_share", "value": float(share[1]), "n": len(t_rows)}]  # fmt: skip
    rho = float(spearmanr(*zip(*shares)).statistic) if len(shares) > 1 else float("nan")
    out.append({"variant": s["variant"].iloc[0], "seed": s["seed"].iloc[0], "unit": "model",
                "metric": "align_share_spearman", "value": rho, "n": len(shares),
                "teacher": t["variant"].iloc[0]})  # fmt: skip
    return tidy(out, of=metric)
