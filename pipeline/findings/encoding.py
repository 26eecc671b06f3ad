"""Findings about representations (RQ5): is gender linearly encoded, selectively, and does erasing it remove the bias.

- ``probe_accuracy`` (per layer, subset ``gender``): the gender probe's cross-validated accuracy against the chance
  rate stored with it (column ``chance``), one-sided (above chance), p from the stored bootstrap interval (normal
  approximation), q by Benjamini-Hochberg over the layers of one model; ``encoded`` = q < alpha. Chance is a weak
  null: the embeddings already carry gender (the pronouns themselves). So each layer is also tested against the
  embedding layer's probe (layer 0, same pooling; one-sided above it, intervals combined as independent, which is
  conservative): ``p_embed``, ``q_embed`` (BH over the layers of one model) and ``beyond_embeddings``.
- ``selectivity`` (per layer): probe accuracy minus control-task accuracy (Hewitt & Liang 2019), one-sided above 0.
- erasure rows (``erasure_<metric>``, per erased layer): after minus before for the gender probe's accuracy, the
  counterfactual gap (signed and absolute), GAP_RMS and the accuracy, with an interval from the two stored intervals
  (the same examples before and after, so the unpaired interval is conservative) and a two-sided p; q by
  Benjamini-Hochberg within each metric (like quantities only). ``erasure_complete`` says whether the erasure
  happened: the gender probe after erasure (the pooling the eraser was fitted on comes first) has an interval that
  covers chance. Only then is the amnesic question tested; ``removes_bias`` says whether a complete erasure also left
  a downstream bias whose after-interval covers 0 (Elazar et al. 2021, amnesic probing).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as sstats

from pipeline.schema import tidy
from pipeline.stats import bh_qvalues

__all__ = ["encoding_table"]

_Z = sstats.norm.ppf(0.975)
_ERASURE = (
    ("probe_accuracy", "gender", "layer"),
    ("cf_prob_gap", "all", "model"),
    ("cf_prob_abs_change", "all", "model"),
    ("gap_rms", "", "model"),
    ("accuracy", "all", "model"),
)  # (metric, subset, unit) compared before / after erasure


def _se(frame: pd.DataFrame) -> np.ndarray:
    return ((frame["ci_high"] - frame["ci_low"]) / (2 * _Z)).to_numpy(dtype=float)


def _one_sided(value: np.ndarray, null: np.ndarray, se: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(se > 0, sstats.norm.sf((value - null) / se), np.where(value > null, 0.0, 1.0))


def _first_pooling(frame: pd.DataFrame) -> pd.DataFrame:
    if "pooling" not in frame or not frame["pooling"].notna().any():
        return frame
    return frame[frame["pooling"] == min(frame["pooling"].dropna())]


def _embedding_test(group: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """One-sided p (and BH q over the layers) of each layer's probe accuracy being above the embedding layer's."""
    base = group[group["layer"] == 0]
    if base.empty:
        return np.full(len(group), np.nan), np.full(len(group), np.nan)
    se = np.hypot(_se(group), _se(base)[0])
    p = _one_sided(group["value"].to_numpy(dtype=float), np.full(len(group), float(base["value"].iloc[0])), se)
    p = np.where(group["layer"].to_numpy() == 0, np.nan, p)
    q = np.full(len(p), np.nan)
    q[~np.isnan(p)] = bh_qvalues(p[~np.isnan(p)])
    return p, q


def _layer_rows(frame: pd.DataFrame, metric: str, null_col: str | None, cfg) -> list[dict]:
    rows = _first_pooling(frame[(frame["metric"] == metric) & (frame["subset"] == "gender")])
    out = []
    for (variant, seed), group in rows.groupby(["variant", "seed"], sort=True):
        null = group[null_col].to_numpy(dtype=float) if null_col else np.zeros(len(group))
        p = _one_sided(group["value"].to_numpy(dtype=float), null, _se(group))
        q = bh_qvalues(p)
        p_embed, q_embed = _embedding_test(group) if metric == "probe_accuracy" else (p * np.nan, p * np.nan)
        n_layers = int(group["layer"].max()) + 1
        for (_, row), pv, qv, nv, pe, qe in zip(group.iterrows(), p, q, null, p_embed, q_embed):
            out.append({"variant": variant, "seed": seed, "unit": "layer", "layer": int(row["layer"]),
                        "metric": metric, "subset": "gender", "value": row["value"], "ci_low": row["ci_low"],
                        "ci_high": row["ci_high"], "n": row["n"], "chance": nv, "p": pv, "q": qv,
                        "encoded": bool(qv < cfg.alpha), "p_embed": pe, "q_embed": qe,
                        "beyond_embeddings": bool(qe < cfg.alpha), "depth": row["layer"] / max(n_layers - 1, 1),
                        "pooling": str(row.get("pooling", ""))})  # fmt: skip
    return out


def _erasure_rows(frame: pd.DataFrame, cfg) -> list[dict]:
    out = []
    layer_col = "erased_layer" if "erased_layer" in frame else "layer"
    for (variant, seed, layer), group in frame.groupby(["variant", "seed", layer_col], sort=True):
        flags = {}
        for metric, subset, unit in _ERASURE:
            sel = group[(group["metric"] == metric) & (group["subset"].fillna("") == subset) & (group["unit"] == unit)]
            sel = _first_pooling(sel)
            before, after = sel[sel["condition"] == "before"], sel[sel["condition"] == "after"]
            if before.empty or after.empty:
                continue
            b, a = before.iloc[0], after.iloc[0]
            se = float(np.hypot(_se(before)[0], _se(after)[0]))
            delta = float(a["value"] - b["value"])
            p = 2 * sstats.norm.sf(abs(delta) / se) if se > 0 else np.nan
            chance = float(a["chance"]) if "chance" in a and pd.notna(a["chance"]) else np.nan
            covers = a["ci_low"] <= (chance if metric == "probe_accuracy" else 0.0) <= a["ci_high"]
            flags[metric] = bool(covers)
            out.append({"variant": variant, "seed": seed, "unit": "model", "layer": int(layer),
                        "metric": f"erasure_{metric}", "subset": subset, "value": delta, "ci_low": delta - _Z * se,
                        "ci_high": delta + _Z * se, "p": p, "n": int(a["n"]), "before": float(b["value"]),
                        "after": float(a["value"]), "after_low": float(a["ci_low"]), "after_high": float(a["ci_high"]),
                        "before_low": float(b["ci_low"]), "before_high": float(b["ci_high"]),
                        "chance": chance})  # fmt: skip
        complete = flags.get("probe_accuracy", False)
        removes = complete and flags.get("cf_prob_gap", flags.get("gap_rms", False))
        for row in out:
            if (row["variant"], row["seed"], row["layer"]) == (variant, seed, int(layer)):
                row["erasure_complete"], row["removes_bias"] = bool(complete), bool(removes)
    for metric in {r["metric"] for r in out}:  # one BH family per metric: like quantities only
        family = [r for r in out if r["metric"] == metric]
        for row, qv in zip(family, bh_qvalues([r["p"] for r in family])):
            row["q"] = qv
    return out


def encoding_table(tables: dict[str, pd.DataFrame], cfg) -> pd.DataFrame:
    """The ``encoding`` finding from ``probes_layers``, ``probes_control`` and ``erasure`` (module docstring)."""
    out = []
    if "probes_layers" in tables:
        out += _layer_rows(tables["probes_layers"], "probe_accuracy", "chance", cfg)
    if "probes_control" in tables:
        out += _layer_rows(tables["probes_control"], "selectivity", None, cfg)
    if "erasure" in tables and "condition" in tables["erasure"]:
        out += _erasure_rows(tables["erasure"], cfg)
    return tidy(out) if out else pd.DataFrame()
