"""Findings about the shape of head effects: concentration (RQ3), method agreement, stability across seeds and from
teacher to student (RQ4).

The stored tables hold each head's mean effect and its bootstrap interval, not the per-example values, so the
uncertainty of statistics over heads is a parametric bootstrap: each head's mean is drawn from a normal with the
standard error implied by its 95% interval, independently across heads, methods and models
(:func:`pipeline.stats.normal_draws`), and the statistic is recomputed on every draw (``method`` column
``parametric``). Independence ignores that all heads of a model, and all models, are scored on the same examples:
the shared part of the noise is positively correlated, so intervals of differences between models and between
methods are, if anything, too wide. Run the attribution with ``n_boot > 0``: without intervals the draws carry no
uncertainty and the interval collapses to the point value (``has_intervals`` False).

- Concentration (Leteno et al. 2023): Gini coefficient and normalised entropy of |head effects|
  (:func:`attribution.compare.gini`, :func:`attribution.compare.normalised_entropy`), per variant and seed; the
  student-minus-reference difference (reference: the fine-tuned teacher, same seed, same score) with a bootstrap
  p-value and a Benjamini-Hochberg q-value over all differences of one statistic and method.
- Agreement: Spearman rank correlation of |effects| between two methods (permutation ``p``) and the overlap of their
  top-k heads, each with a parametric interval; ``agree`` = Spearman's lower bound > 0 and overlap >= the configured
  share. "The location is robust" needs the two causal methods (ablation, patching) to agree.
- Stability: the same statistics between two seeds of a variant, and between a distilled student and its teacher
  over the mapped layers (student layer i <- teacher layer ``layer_map[i]``, read from the student's saved config,
  default 2i; heads matched by index when the layer widths agree).

Where the attribution stored per-example head effects (table ``head_examples``: ablation and patching), concentration and
stability are resampled over examples instead (:mod:`pipeline.findings.resampled`; ``method`` column ``examples``):
paired across models, with the no-effect Gini (``gini_null``: the Gini of the same noise with no head mattering) and,
for teacher -> student alignment, the split-half noise ceiling (``align_ceiling``) and the alignment's distance to it
(``align_vs_ceiling``): a student is "not reproduced" only when it is detectably below its ceiling.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.compress.registry import is_student
from pipeline.findings.bias_units import head_effects, unit_methods
from pipeline.findings.resampled import (
    ExampleEffects,
    example_effects,
    gini,
    hull_interval,
    pair_draws,
    split_half_ceiling,
    weights,
)
from pipeline.schema import tidy
from pipeline.stats import bh_qvalues, bootstrap_pvalue, normal_draws, spearman_test

__all__ = ["agreement_table", "concentration_table", "stability_table"]

_CONCENTRATION_METHODS = ("ablation", "patching")


def _entropy(x: np.ndarray) -> np.ndarray:
    """Normalised entropy of the shares |x_i| / sum |x| along the last axis (as
    :func:`attribution.compare.normalised_entropy`)."""
    x = np.abs(x)
    total = x.sum(-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = x / total
        h = -np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0).sum(-1) / np.log(x.shape[-1])
    return np.where(total[..., 0] > 0, h, np.nan)


def _interval(draws: np.ndarray) -> tuple[float, float]:
    finite = draws[np.isfinite(draws)]
    if len(finite) < 2:
        return float("nan"), float("nan")
    return float(np.percentile(finite, 2.5)), float(np.percentile(finite, 97.5))


def _heads(units: pd.DataFrame) -> dict[tuple[str, int], pd.DataFrame]:
    """Head rows per (variant, seed), indexed by (layer, head) (none when the method's table is absent)."""
    if units.empty:
        return {}
    heads = units[(units["unit"] == "head") & units["complete"]]
    return {
        (str(v), int(s)): g.set_index(["layer", "head"]).sort_index()
        for (v, s), g in heads.groupby(["variant", "seed"])
    }


def _draws(rows: pd.DataFrame, cfg, salt: int) -> np.ndarray:
    return normal_draws(rows["value"].to_numpy(), rows["ci_low"].to_numpy(), rows["ci_high"].to_numpy(),
                        n_boot=cfg.n_boot, seed=cfg.seed + salt)  # fmt: skip


def _reference(variant: str, seed: int, score: str, heads: dict) -> tuple[str, int] | None:
    for ref in ("teacher-ft", "teacher"):
        seeds = sorted(s for v, s in heads if v == ref)
        if ref == variant or not seeds:
            continue
        ref_seed = seed if seed in seeds else seeds[0]
        if str(heads[(ref, ref_seed)]["score"].iloc[0]) == score:
            return ref, ref_seed
    return None


def _resampled_concentration(examples: dict, heads: dict, cfg, method: str) -> list[dict]:
    """Gini per model resampled over examples, its no-effect level, and the paired difference to the reference."""
    out, draws = [], {}
    for key, (_, x) in sorted(examples.items()):
        w = weights(x.shape[1], cfg.n_boot, cfg.seed)  # one resample set per example count: paired across models
        point, d = float(gini(x.mean(1))), gini(w @ x.T)
        null = gini(w @ (x - x.mean(1, keepdims=True)).T)  # the same noise, no head mattering
        draws[key] = d
        base = {"variant": key[0], "seed": key[1], "unit": "model", "method": method, "n": x.shape[1],
                "score": str(heads[key]["score"].iloc[0]) if key in heads else "", "resampled": "examples",
                "has_intervals": True}  # fmt: skip
        low, high = hull_interval(d, point)
        p_noise = (1 + np.sum(null >= point)) / (len(null) + 1)
        out.append({**base, "metric": "gini", "value": point, "ci_low": low, "ci_high": high, "p": p_noise,
                    "beyond_noise": bool(p_noise < cfg.alpha)})  # fmt: skip
        out.append({**base, "metric": "gini_null", "value": float(np.nanmedian(null)),
                    "ci_low": float(np.nanpercentile(null, 2.5)), "ci_high": float(np.nanpercentile(null, 97.5))})  # fmt: skip
    for key, (_, x) in sorted(examples.items()):
        ref = _reference(key[0], key[1], str(heads[key]["score"].iloc[0]), heads) if key in heads else None
        if ref is None or ref not in examples or examples[ref][1].shape[1] != x.shape[1]:
            continue
        diff = draws[key] - draws[ref]
        point = float(gini(x.mean(1)) - gini(examples[ref][1].mean(1)))
        low, high = hull_interval(diff, point)
        out.append({"variant": key[0], "seed": key[1], "unit": "model", "method": method, "metric": "gini_diff",
                    "value": point, "ci_low": low, "ci_high": high, "p": bootstrap_pvalue(diff), "n": x.shape[1],
                    "reference": ref[0], "reference_seed": ref[1], "resampled": "examples",
                    "has_intervals": True})  # fmt: skip
    return out


def concentration_table(tables: dict[str, pd.DataFrame], cfg) -> pd.DataFrame:
    """Gini and entropy of |head effects| per (variant, seed, method); rows ``gini_diff`` / ``entropy_diff`` against
    the reference with ``p``. Ablation with stored per-example effects is resampled over examples (with
    ``gini_null``); the rest uses parametric draws from the stored intervals (``resampled`` = ``parametric``)."""
    out = []
    for i, name in enumerate(_CONCENTRATION_METHODS):
        method = next(m for m in unit_methods() if m.name == name)
        heads = _heads(head_effects(tables, method, cfg=cfg))
        examples = example_effects(tables.get("head_examples"), name)
        if examples:
            out += _resampled_concentration(examples, heads, cfg, name)
            heads = {key: rows for key, rows in heads.items() if key not in examples}
        draws = {key: _draws(rows, cfg, salt=1000 * i + j) for j, (key, rows) in enumerate(sorted(heads.items()))}
        for (variant, seed), rows in sorted(heads.items()):
            base = {
                "variant": variant,
                "seed": seed,
                "unit": "model",
                "method": name,
                "n": len(rows),
                "score": str(rows["score"].iloc[0]),
                "has_intervals": bool(rows["ci_low"].notna().all()),
                "resampled": "parametric",
            }
            stats = {"gini": gini, "entropy": _entropy}
            for metric, fn in stats.items():
                low, high = _interval(fn(draws[(variant, seed)]))
                out.append({**base, "metric": metric, "value": float(fn(rows["value"].to_numpy()[None])[0]),
                            "ci_low": low, "ci_high": high})  # fmt: skip
            ref = _reference(variant, seed, base["score"], heads)
            if ref is None:
                continue
            for metric, fn in stats.items():
                diff = fn(draws[(variant, seed)]) - fn(draws[ref])
                point = fn(rows["value"].to_numpy()[None])[0] - fn(heads[ref]["value"].to_numpy()[None])[0]
                low, high = _interval(diff)
                out.append({**base, "metric": f"{metric}_diff", "value": float(point), "ci_low": low, "ci_high": high,
                            "p": bootstrap_pvalue(diff), "reference": ref[0], "reference_seed": ref[1]})  # fmt: skip
    if not out:
        return pd.DataFrame()
    table = tidy(out)
    diffs = table["metric"].str.endswith("_diff")
    for _, group in table[diffs].groupby(["method", "metric"]):
        table.loc[group.index, "q"] = bh_qvalues(group["p"].to_numpy())
    return table


def _pair_stats(a: pd.DataFrame, b: pd.DataFrame, cfg, k: int, salt: int) -> dict:
    """Spearman of |value| (permutation p, parametric interval) and top-k overlap (parametric interval) of two
    head tables over their common heads."""
    common = a.index.intersection(b.index)
    a, b = a.loc[common], b.loc[common]
    rho, p = spearman_test(a["value"].abs().to_numpy(), b["value"].abs().to_numpy(), n_perm=cfg.n_perm, seed=cfg.seed)
    k = min(k, max(1, len(common) // 2))
    da, db = np.abs(_draws(a, cfg, salt)), np.abs(_draws(b, cfg, salt + 1))  # (n_boot, n_heads) each
    ra, rb = da.argsort(1).argsort(1).astype(float), db.argsort(1).argsort(1).astype(float)
    ra, rb = ra - ra.mean(1, keepdims=True), rb - rb.mean(1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        rhos = (ra * rb).sum(1) / np.sqrt((ra**2).sum(1) * (rb**2).sum(1))
    top_a, top_b = np.argsort(-da, 1)[:, :k], np.argsort(-db, 1)[:, :k]
    overlaps = np.array([len(set(x) & set(y)) / k for x, y in zip(top_a, top_b)])
    point = len(set(a["value"].abs().nlargest(k).index) & set(b["value"].abs().nlargest(k).index)) / k
    return {
        "rho": rho,
        "p": p,
        "rho_ci": _interval(rhos),
        "overlap": point,
        "overlap_ci": _interval(overlaps),
        "n": len(common),
        "k": k,
    }


def _pair_rows(base: dict, s: dict, cfg) -> list[dict]:
    agree = bool(np.isfinite(s["rho_ci"][0]) and s["rho_ci"][0] > 0 and s["overlap"] >= cfg.agree_overlap)
    return [{**base, "metric": "spearman", "value": s["rho"], "ci_low": s["rho_ci"][0], "ci_high": s["rho_ci"][1],
             "p": s["p"], "n": s["n"], "k": s["k"], "agree": agree},
            {**base, "metric": "topk_overlap", "value": s["overlap"], "ci_low": s["overlap_ci"][0],
             "ci_high": s["overlap_ci"][1], "n": s["n"], "k": s["k"], "agree": agree}]  # fmt: skip


def _ranked(tables: dict[str, pd.DataFrame], cfg) -> dict[str, dict]:
    """Per head method: (variant, seed) -> its head rows of the ranking metric (complete IG only)."""
    return {
        m.name: _heads(head_effects(tables, m, cfg=cfg, rank=True)) for m in unit_methods() if m.name != "neuron_ig"
    }


def agreement_table(tables: dict[str, pd.DataFrame], cfg) -> pd.DataFrame:
    """Per (variant, seed) and pair of methods: ``spearman`` and ``topk_overlap`` of |head effects| with intervals,
    ``agree`` (see module docstring) and ``causal`` (the pair is ablation-patching)."""
    ranked = _ranked(tables, cfg)
    keys = sorted({key for per in ranked.values() for key in per})
    out = []
    for key in keys:
        present = [m for m in ranked if key in ranked[m]]
        for j, (m1, m2) in enumerate(itertools.combinations(present, 2)):
            s = _pair_stats(ranked[m1][key], ranked[m2][key], cfg, cfg.top_k, salt=7919 * j)
            base = {
                "variant": key[0],
                "seed": key[1],
                "unit": "model",
                "subset": f"{m1}-{m2}",
                "method_a": m1,
                "method_b": m2,
                "causal": {m1, m2} == {"ablation", "patching"},
            }
            out += _pair_rows(base, s, cfg)
    return tidy(out) if out else pd.DataFrame()


def _layer_map(run_dir: Path | None, variant: str, seed: int, n_student: int) -> list[int]:
    config = run_dir / "models" / variant / f"seed{seed}" / "config.json" if run_dir else None
    if config is not None and config.exists():
        mapping = json.loads(config.read_text()).get("layer_map")
        if mapping and len(mapping) == n_student:
            return [int(t) for t in mapping]
    return list(range(0, 2 * n_student, 2))


def _aligned(student: ExampleEffects, teacher: ExampleEffects, mapping: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """The student's and its mapped teacher heads' per-example effects over their common heads (same order)."""
    to_student = {t: s for s, t in enumerate(mapping)}
    mapped = [i for i, (layer, _) in enumerate(teacher[0]) if layer in to_student]
    t_index = pd.MultiIndex.from_tuples([(to_student[teacher[0][i][0]], teacher[0][i][1]) for i in mapped])
    common = student[0].intersection(t_index)
    xs = student[1][student[0].get_indexer(common)]
    xt = teacher[1][np.asarray(mapped)[t_index.get_indexer(common)]]
    return xs, xt


def _resampled_alignment(student: ExampleEffects, teacher: ExampleEffects, mapping: list[int], base: dict, cfg,
                         salt: int) -> list[dict]:  # fmt: skip
    """``align_spearman`` / ``align_topk_overlap`` resampled over the shared examples, the split-half
    ``align_ceiling`` and ``align_vs_ceiling`` (Spearman minus ceiling, paired draws; p = share of draws >= 0)."""
    xs, xt = _aligned(student, teacher, mapping)
    if len(xs) < 3 or xs.shape[1] != xt.shape[1]:
        return []
    k = min(cfg.top_k, max(1, len(xs) // 2))
    w = weights(xs.shape[1], cfg.n_boot, cfg.seed + salt)
    stats = pair_draws(xs, xt, w, k)
    ceiling, ceiling_draws = split_half_ceiling(xs, xt, w, cfg.seed + salt)
    rho, rho_draws = stats["spearman"]
    base = {**base, "n": len(xs), "k": k, "resampled": "examples", "n_examples": xs.shape[1]}
    out = []
    for metric, (point, draws) in stats.items():
        low, high = hull_interval(draws, point)
        out.append({**base, "metric": f"align_{metric}", "value": point, "ci_low": low, "ci_high": high})
    low, high = hull_interval(ceiling_draws, ceiling)
    out.append({**base, "metric": "align_ceiling", "value": ceiling, "ci_low": low, "ci_high": high})
    gap = rho_draws - ceiling_draws
    low, high = hull_interval(gap, rho - ceiling)
    below = (1 + np.sum(gap >= 0)) / (len(gap) + 1)  # one-sided: is the student detectably below the ceiling?
    verdict = "not reproduced" if high < 0 else ("reproduced" if out[0]["ci_low"] > 0 and ceiling > 0 else "undecided")
    out.append({**base, "metric": "align_vs_ceiling", "value": rho - ceiling, "ci_low": low, "ci_high": high,
                "p": below, "verdict": verdict})  # fmt: skip
    for row in out:
        row["verdict"], row["agree"] = verdict, verdict == "reproduced"
    return out


def stability_table(tables: dict[str, pd.DataFrame], cfg, run_dir: Path | None = None) -> pd.DataFrame:
    """Seed stability (``seed_spearman``, ``seed_topk_overlap`` per pair of seeds, subset ``"s1-s2"``) and teacher
    alignment of distilled students (``align_spearman``, ``align_topk_overlap`` over mapped heads, column
    ``layer_map``) of the causal methods' |head effects|; alignment with stored per-example effects is
    resampled over examples, with its noise ceiling and verdict (module docstring)."""
    out = []
    for i, name in enumerate(_CONCENTRATION_METHODS):
        method = next(m for m in unit_methods() if m.name == name)
        heads = _heads(head_effects(tables, method, cfg=cfg))
        examples = example_effects(tables.get("head_examples"), name)
        for variant in sorted({v for v, _ in heads}):
            seeds = sorted(s for v, s in heads if v == variant)
            for j, (s1, s2) in enumerate(itertools.combinations(seeds, 2)):
                stats = _pair_stats(heads[(variant, s1)], heads[(variant, s2)], cfg, cfg.top_k, salt=31 * i + j)
                base = {"variant": variant, "seed": s1, "unit": "model", "subset": f"{s1}-{s2}", "method": name}
                out += [{**r, "metric": f"seed_{r['metric']}"} for r in _pair_rows(base, stats, cfg)]
            if not is_student(variant):  # a layer-mapped student (its name begins with its method)
                continue
            for seed in seeds:
                student = heads[(variant, seed)]
                ref = _reference(variant, seed, str(student["score"].iloc[0]), heads)
                if ref is None:
                    continue
                n_student = int(student.index.get_level_values("layer").max()) + 1
                mapping = _layer_map(run_dir, variant, seed, n_student)
                if (variant, seed) in examples and ref in examples:
                    base = {"variant": variant, "seed": seed, "unit": "model", "subset": ref[0], "method": name,
                            "layer_map": ",".join(map(str, mapping)), "reference_seed": ref[1]}  # fmt: skip
                    rows = _resampled_alignment(examples[(variant, seed)], examples[ref], mapping, base, cfg, 97 * i)
                    if rows:
                        out += rows
                        continue
                teacher, to_student = heads[ref], {t: s for s, t in enumerate(mapping)}
                mapped = teacher[teacher.index.get_level_values("layer").isin(list(to_student))]
                mapped = mapped.rename(index=to_student, level="layer")
                if mapped.index.intersection(student.index).size < 3:
                    continue
                stats = _pair_stats(student, mapped, cfg, cfg.top_k, salt=97 * i + seed)
                base = {
                    "variant": variant,
                    "seed": seed,
                    "unit": "model",
                    "subset": ref[0],
                    "method": name,
                    "layer_map": ",".join(map(str, mapping)),
                    "reference_seed": ref[1],
                }
                out += [{**r, "metric": f"align_{r['metric']}"} for r in _pair_rows(base, stats, cfg)]
    return tidy(out) if out else pd.DataFrame()
