"""The report's figures, one per section, drawn from the findings tables with matplotlib (Agg) and embedded as
base64 PNG (:func:`png_base64`), so the report is one file that opens offline.

Every function takes a findings table and returns a figure, or None when there is nothing to draw. Filled markers
are decided (q < alpha), hollow ones are not; grey ones are not interpretable (a model not fit to be read).
"""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from pipeline.variants import variant_sort_key

__all__ = [
    "HEADLINE",
    "comparisons_figure",
    "concentration_figure",
    "encoding_figure",
    "fitness_figure",
    "png_base64",
    "stability_figure",
    "units_figure",
]

HEADLINE = (
    "accuracy",
    "gap_rms",
    "cf_skew_gap",
    "cf_prob_abs_change",
    "cf_flip_excess",
    "seat_effect_size",
)  # RQ1 panels, in this order
_BLUE, _GREY, _RED = "#1f5fa8", "#9a9a9a", "#b2182b"


def png_base64(fig: Figure, *, dpi: int = 110) -> str:
    """The figure as a base64 PNG (closed after)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _errors(rows: pd.DataFrame) -> np.ndarray:
    err = np.stack([rows["value"] - rows["ci_low"], rows["ci_high"] - rows["value"]]).astype(float)
    return np.where(np.isfinite(err), np.abs(err), 0.0)


def _points(ax, y, rows: pd.DataFrame, decided: np.ndarray, colour: np.ndarray) -> None:
    for yi, (_, row), filled, c in zip(y, rows.iterrows(), decided, colour):
        err = _errors(rows.loc[[row.name]])
        ax.errorbar(row["value"], yi, xerr=err, fmt="o", ms=5, lw=1, color=c, mfc=c if filled else "white")


def fitness_figure(fitness: pd.DataFrame) -> Figure | None:
    """Accuracy with its interval per variant and seed, and the majority-class baseline."""
    acc = fitness[fitness["metric"] == "accuracy"]
    if acc.empty:
        return None
    acc = acc.iloc[
        sorted(range(len(acc)), key=lambda i: (variant_sort_key(acc["variant"].iloc[i]), acc["seed"].iloc[i]))
    ]
    base = fitness[fitness["metric"] == "majority_baseline"]["value"].max()
    fig, ax = plt.subplots(figsize=(6, 0.3 * len(acc) + 1))
    y = np.arange(len(acc))
    _points(ax, y, acc, acc["fit"].to_numpy(bool), np.where(acc["fit"], _BLUE, _GREY))
    ax.axvline(base, color=_RED, ls="--", lw=1, label=f"majority class ({base:.2f})")
    ax.set_yticks(y, [f"{v} s{s}" for v, s in zip(acc["variant"], acc["seed"])])
    ax.invert_yaxis()
    ax.set_xlabel("test accuracy (95% CI); hollow = not fit to be read")
    ax.legend(loc="best", fontsize=8)
    return fig


def comparisons_figure(comparisons: pd.DataFrame, alpha: float) -> Figure | None:
    """Forest plot of the pooled change of each headline metric, one panel per metric."""
    pooled = comparisons[(comparisons["level"] == "pooled") & comparisons["metric"].isin(HEADLINE)
                         & comparisons["value"].notna()]  # fmt: skip
    metrics = [m for m in HEADLINE if m in set(pooled["metric"])]
    if not metrics:
        return None
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 0.35 * pooled["variant"].nunique() + 1.6),
                             squeeze=False)  # fmt: skip
    for ax, metric in zip(axes[0], metrics):
        rows = pooled[pooled["metric"] == metric]
        rows = rows[rows["subset"] == min(rows["subset"])]  # one SEAT test / subset per panel
        rows = rows.iloc[sorted(range(len(rows)), key=lambda i: variant_sort_key(rows["variant"].iloc[i]))]
        y = np.arange(len(rows))
        colour = np.where(rows["interpretable"].to_numpy(bool), _BLUE, _GREY)
        _points(ax, y, rows, (rows["q"] < alpha).to_numpy(bool), colour)
        ax.axvline(0, color="black", lw=0.6)
        ax.set_yticks(y, rows["variant"])
        ax.invert_yaxis()
        subset = rows["subset"].iloc[0] if len(rows) else ""
        ax.set_title(f"Δ {metric}" + (f" ({subset})" if subset else ""), fontsize=9)
    fig.supxlabel("variant - reference (95% CI); filled: q < alpha; grey: not interpretable", fontsize=8)
    fig.tight_layout()
    return fig


def units_figure(units: pd.DataFrame, method: str = "ablation", max_panels: int = 6) -> Figure | None:
    """Per model (first seed), the heads' share of the total effect by ``method``, signed; x = carries bias."""
    heads = units[(units["unit"] == "head") & (units["method"] == method)]
    if heads.empty:
        return None
    keys = sorted(
        {(v, s) for v, s in zip(heads["variant"], heads["seed"])}, key=lambda k: (variant_sort_key(k[0]), k[1])
    )
    keys = [k for i, k in enumerate(keys) if i == 0 or k[0] != keys[i - 1][0]][:max_panels]  # first seed of each
    fig, axes = plt.subplots(1, len(keys), figsize=(2.6 * len(keys), 2.8), squeeze=False)
    for ax, (variant, seed) in zip(axes[0], keys):
        rows = heads[(heads["variant"] == variant) & (heads["seed"] == seed)]
        grid = rows.pivot_table(index="layer", columns="head", values="value", aggfunc="first")
        scale = float(np.nanmax(np.abs(grid.to_numpy()))) or 1.0
        ax.imshow(grid.to_numpy(), cmap="RdBu_r", vmin=-scale, vmax=scale, aspect="auto")
        for _, row in rows[rows["carries"]].iterrows():
            ax.text(grid.columns.get_loc(row["head"]), grid.index.get_loc(row["layer"]), "x", ha="center",
                    va="center", fontsize=11, fontweight="bold")  # fmt: skip
        ax.set_xticks(range(grid.shape[1]), grid.columns)
        ax.set_yticks(range(grid.shape[0]), grid.index)
        ax.set_title(f"{variant} s{seed}", fontsize=8)
        ax.set_xlabel("head", fontsize=8)
        ax.set_ylabel("layer", fontsize=8)
    fig.suptitle(f"{method}: effect per head (x = carries bias)", fontsize=9)
    fig.tight_layout()
    return fig


def concentration_figure(concentration: pd.DataFrame) -> Figure | None:
    """Gini of |head effects| with its interval per variant and seed, one panel per method."""
    gini = concentration[concentration["metric"] == "gini"]
    if gini.empty:
        return None
    methods = sorted(set(gini["method"]))
    fig, axes = plt.subplots(1, len(methods), figsize=(3.6 * len(methods), 0.35 * gini["variant"].nunique() * 2 + 1.2),
                             squeeze=False)  # fmt: skip
    for ax, method in zip(axes[0], methods):
        rows = gini[gini["method"] == method]
        rows = rows.iloc[sorted(range(len(rows)), key=lambda i: (variant_sort_key(rows["variant"].iloc[i]),
                                                                 rows["seed"].iloc[i]))]  # fmt: skip
        y = np.arange(len(rows))
        _points(ax, y, rows, np.ones(len(rows), bool), np.full(len(rows), _BLUE))
        ax.set_yticks(y, [f"{v} s{s}" for v, s in zip(rows["variant"], rows["seed"])], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.set_title(f"{method}: Gini of |head effect|", fontsize=9)
    fig.supxlabel("0 = spread evenly, 1 = one head carries all (95% parametric interval)", fontsize=8)
    fig.tight_layout()
    return fig


def stability_figure(stability: pd.DataFrame) -> Figure | None:
    """Spearman correlation of |head effects| between seeds and between student and teacher, with intervals."""
    rows = stability[stability["metric"].isin(("seed_spearman", "align_spearman"))]
    if rows.empty:
        return None
    rows = rows.iloc[sorted(range(len(rows)), key=lambda i: (rows["metric"].iloc[i], variant_sort_key(
        rows["variant"].iloc[i]), rows["method"].iloc[i]))]  # fmt: skip
    fig, ax = plt.subplots(figsize=(6, 0.32 * len(rows) + 1))
    y = np.arange(len(rows))
    colour = np.where(rows["metric"] == "seed_spearman", _BLUE, _RED)
    _points(ax, y, rows, rows["agree"].to_numpy(bool), colour)
    ax.axvline(0, color="black", lw=0.6)
    labels = [
        f"seeds {sub}: {v} ({meth})" if m == "seed_spearman" else f"{v} s{seed} vs {sub} ({meth})"
        for m, v, seed, sub, meth in zip(rows["metric"], rows["variant"], rows["seed"], rows["subset"], rows["method"])
    ]
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(-1, 1)
    ax.set_xlabel("Spearman of |head effects| (95% interval); filled: stable / aligned")
    return fig


def encoding_figure(encoding: pd.DataFrame) -> Figure | None:
    """Gender probe accuracy by normalised depth per variant (first seed), with the chance rate."""
    rows = encoding[encoding["metric"] == "probe_accuracy"]
    if rows.empty:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    for variant, group in sorted(rows.groupby("variant"), key=lambda kv: variant_sort_key(kv[0])):
        group = group[group["seed"] == group["seed"].min()].sort_values("depth")
        ax.errorbar(group["depth"], group["value"], yerr=_errors(group), marker="o", ms=4, lw=1, capsize=2,
                    label=variant)  # fmt: skip
    ax.axhline(float(rows["chance"].max()), color=_GREY, ls="--", lw=1, label="chance")
    ax.set_xlabel("normalised depth (0 = embeddings, 1 = last layer)")
    ax.set_ylabel("gender probe accuracy")
    ax.legend(fontsize=7)
    return fig
