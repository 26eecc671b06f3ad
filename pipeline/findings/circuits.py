"""Teacher vs student bias circuits (issue 31): does compression rewire the circuit?

For every layer-mapped student (:func:`pipeline.compress.registry.is_student`) with a ``circuit`` table, its circuit
is compared with the fine-tuned teacher's (``teacher-ft``, same seed when there is one) after moving the teacher's
nodes to the student's layers by the student's layer map (``models/<variant>/seed<k>/config.json``, else ``2 i``):
teacher node ``L<t>.H<h>`` becomes ``L<i>.H<h>`` when ``layer_map[i] = t``; a teacher edge touching a layer the
student does not keep cannot be matched (``teacher_unmapped``). Rows (unit ``model``, variant = the student,
``reference`` = the teacher):

- ``edge_jaccard``: |S and T| / |S or T| of the two circuits' edge sets (T: the mapped teacher edges);
- ``node_jaccard``: the same for the inner nodes of those edge sets (heads and FFN blocks; the embeddings and
  readout are in every circuit);
- ``teacher_edges_kept``: share of the mapped teacher edges found in the student's circuit;
- ``teacher_unmapped``: how many teacher circuit edges touch a layer without a student layer (no interval).

Intervals (``resampled``): ``examples`` when the ``circuit`` table holds both models' per-example EAP scores of their
top edges (metric ``edge_example_eap``, on the examples that ranked the edges): the examples are resampled ``n_boot``
times (the same draws for teacher and student, ``paired`` True, when both were ranked on the same example ids, as
when both were attributed on the same test sample; independent draws otherwise), each resample re-ranks the stored
edges by |mean score| and takes each model's top k (k = its circuit size, held fixed) as its circuit, and the
2.5-97.5% percentiles of the overlap over the resamples, widened to contain the point
(:func:`pipeline.findings.resampled.hull_interval`, as for RQ4's top-k overlap), are the interval. Only the stored
edges can enter a resampled circuit (at least 4 times the circuit size, :func:`attribution.circuit.n_stored`). The
point is the overlap of the circuits themselves, which the resamples scatter around but need not bracket: a top-k set
drawn from noisy scores overlaps another less often than the sets of the full data, so with nearly tied edges the
percentiles can lie below the point; the widening keeps the estimate inside its own interval. Runs without per-example scores fall back to ``edge_scores``: each
model's edge scores drawn from normals with the ``eap_edges`` means and interval standard errors (edges independent:
how firmly the ranking fixes the overlap, not a resampling of examples); without ``eap_edges`` either, the intervals
are NaN (``none``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.compress.registry import is_student
from pipeline.findings.resampled import hull_interval
from pipeline.findings.structure import _layer_map
from pipeline.runs.findings_config import FindingsConfig
from pipeline.schema import tidy

__all__ = ["TEACHER", "circuit_overlap", "map_node"]

TEACHER = "teacher-ft"
_Z = 1.959963984540054  # normal quantile of a 95% interval
_METRICS = ("edge_jaccard", "node_jaccard", "teacher_edges_kept")


def map_node(name: str, to_student: dict[int, int]) -> str | None:
    """A teacher node's name in the student's layers (``emb`` and ``readout`` unchanged), None when its layer has
    no student layer."""
    match = re.fullmatch(r"L(\d+)\.(.+)", name)
    if match is None:
        return name
    layer = int(match.group(1))
    return f"L{to_student[layer]}.{match.group(2)}" if layer in to_student else None


def _mapped(names: Iterable[str], to_student: dict[int, int]) -> tuple[set[str], int]:
    """Teacher edge names moved to the student's layers, and how many could not be."""
    pairs = [[map_node(n, to_student) for n in e.split("->")] for e in names]
    return {f"{u}->{v}" for u, v in pairs if u and v}, sum(1 for u, v in pairs if not (u and v))


def _overlap(student: set[str], teacher: set[str]) -> tuple[float, float, float]:
    """(edge Jaccard, inner-node Jaccard, share of teacher edges kept) of two edge sets named ``u->v``."""
    nodes = [{n for e in edges for n in e.split("->")} - {"emb", "readout"} for edges in (student, teacher)]
    jaccard = lambda a, b: len(a & b) / len(a | b) if a | b else np.nan
    kept = len(student & teacher) / len(teacher) if teacher else np.nan
    return jaccard(student, teacher), jaccard(*nodes), kept


def _draws(
    edges: pd.DataFrame | None, variant: str, seed: int, k: int, n: int, rng: np.random.Generator
) -> list[set[str]] | None:
    """``n`` circuits of ``k`` edges from the model's edge scores drawn within their intervals, or None."""
    if edges is None:
        return None
    rows = edges[(edges["variant"] == variant) & (edges["seed"] == seed) & (edges["unit"] == "edge")]
    if rows.empty or rows[["ci_low", "ci_high"]].isna().any().any():
        return None
    se = (rows["ci_high"] - rows["ci_low"]).to_numpy() / (2 * _Z)
    draws = rng.normal(rows["value"].to_numpy(), se, size=(n, len(rows)))
    names = rows["subset"].to_numpy()
    return [set(names[np.argsort(-np.abs(d), kind="stable")[:k]]) for d in draws]


def _per_example(circuit: pd.DataFrame, variant: str, seed: int) -> pd.DataFrame | None:
    """(example x edge) per-example EAP scores of the model's stored top edges, or None."""
    rows = circuit[(circuit["variant"] == variant) & (circuit["seed"] == seed)]
    rows = rows[rows["metric"] == "edge_example_eap"]
    if rows.empty:
        return None
    return rows.pivot(index="example", columns="subset", values="value")


def _resampled(scores: pd.DataFrame, k: int, counts: np.ndarray) -> list[set[str]]:
    """The top ``k`` edges by |mean score| of each resample (``counts``: (n_boot, n examples) draw counts)."""
    means = counts @ scores.to_numpy() / counts.sum(1, keepdims=True)
    names = scores.columns.to_numpy()
    return [set(names[top]) for top in np.argsort(-np.abs(means), axis=1, kind="stable")[:, :k]]


def _example_draws(
    circuit: pd.DataFrame, models: tuple[tuple[str, int, int], tuple[str, int, int]], n: int, rng: np.random.Generator
) -> tuple[list[set[str]], list[set[str]], bool] | None:
    """``n`` example-resampled circuits of the student and the teacher (``models``: (variant, seed, circuit size) of
    each) and whether the draws were paired; None when either model has no per-example scores."""
    frames = [_per_example(circuit, v, s) for v, s, _ in models]
    if any(f is None for f in frames):
        return None
    (student, (_, _, k_student)), (teacher, (_, _, k_teacher)) = zip(frames, models, strict=True)
    paired = set(student.index) == set(teacher.index)  # pivot sorts the ids: the same draw is the same examples
    draw = lambda f: rng.multinomial(len(f), np.full(len(f), 1 / len(f)), size=n)
    counts = draw(student)
    return (
        _resampled(student, k_student, counts),
        _resampled(teacher, k_teacher, counts if paired else draw(teacher)),
        paired,
    )


def _circuit(circuit: pd.DataFrame, variant: str, seed: int) -> pd.DataFrame:
    rows = circuit[(circuit["variant"] == variant) & (circuit["seed"] == seed)]
    return rows[rows["metric"] == "circuit_edge"]


def circuit_overlap(tables: dict[str, pd.DataFrame], cfg: FindingsConfig, run_dir: Path | None = None) -> pd.DataFrame:
    """Edge and node overlap of each student's circuit with the teacher's (module docstring); empty without a
    ``circuit`` table, a student and the teacher's circuit."""
    circuit, edges = tables.get("circuit"), tables.get("eap_edges")
    if circuit is None:
        return pd.DataFrame()
    out = []
    keys = sorted(set(map(tuple, circuit[circuit["metric"] == "circuit_edge"][["variant", "seed"]].to_numpy())))
    teacher_seeds = sorted(s for v, s in keys if v == TEACHER)
    for variant, seed in keys:
        if not is_student(variant) or not teacher_seeds:
            continue
        ref_seed = seed if seed in teacher_seeds else teacher_seeds[0]
        s_rows, t_rows = _circuit(circuit, variant, seed), _circuit(circuit, TEACHER, ref_seed)
        layers = edges[(edges["variant"] == variant) & (edges["seed"] == seed)]["layer"] if edges is not None else []
        n_student = int(max([*layers, *s_rows["layer"], *s_rows["source_layer"]])) + 1
        mapping = _layer_map(run_dir, variant, int(seed), n_student)
        to_student = {t: s for s, t in enumerate(mapping)}
        student = set(s_rows["subset"])
        teacher, unmapped = _mapped(t_rows["subset"], to_student)
        point = _overlap(student, teacher)
        rng = np.random.default_rng(cfg.seed)
        models = ((variant, seed, len(student)), (TEACHER, ref_seed, len(t_rows)))
        by_example = _example_draws(circuit, models, cfg.n_boot, rng)
        if by_example is not None:
            s_draws, t_draws, paired = by_example
            resampled = "examples"
        else:
            s_draws = _draws(edges, variant, seed, len(student), cfg.n_boot, rng)
            t_draws = _draws(edges, TEACHER, ref_seed, len(t_rows), cfg.n_boot, rng)
            paired, resampled = False, "edge_scores" if s_draws is not None and t_draws is not None else "none"
        if resampled != "none":
            drawn = np.array([_overlap(s, _mapped(t, to_student)[0]) for s, t in zip(s_draws, t_draws, strict=True)])
            low, high = np.array([hull_interval(drawn[:, i], point[i]) for i in range(len(_METRICS))]).T
        else:
            low = high = np.full(len(_METRICS), np.nan)
        base = {"variant": variant, "seed": seed, "reference": TEACHER, "reference_seed": ref_seed,
                "layer_map": ",".join(map(str, mapping)), "n": int(s_rows["n"].max()), "resampled": resampled,
                "paired": paired, "student_edges": len(student), "teacher_edges": len(t_rows)}  # fmt: skip
        out += [{**base, "metric": m, "value": v, "ci_low": lo, "ci_high": hi}
                for m, v, lo, hi in zip(_METRICS, point, low, high, strict=True)]  # fmt: skip
        out.append({**base, "metric": "teacher_unmapped", "value": float(unmapped)})
    return tidy(out) if out else pd.DataFrame()
