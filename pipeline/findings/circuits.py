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

Intervals: the ``eap_edges`` tables hold each edge's mean EAP score and bootstrap interval (per-example scores are
not stored), so each model's edge scores are drawn ``n_boot`` times from normals with those means and the
intervals' standard errors, each draw's top-k edges (k = the model's circuit size) form its circuit, and the
2.5-97.5% percentiles of the overlap over the draws are the interval (``resampled``: ``edge_scores``). The draws
treat edges as independent and hold the circuit size fixed: they show how firmly the ranking fixes the overlap,
not a joint resampling of examples. Without ``eap_edges`` the intervals are NaN (``resampled``: ``none``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.compress.registry import is_student
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
        s_draws = _draws(edges, variant, seed, len(student), cfg.n_boot, rng)
        t_draws = _draws(edges, TEACHER, ref_seed, len(t_rows), cfg.n_boot, rng)
        if s_draws is not None and t_draws is not None:
            drawn = np.array([_overlap(s, _mapped(t, to_student)[0]) for s, t in zip(s_draws, t_draws, strict=True)])
            low, high = np.nanpercentile(drawn, 2.5, axis=0), np.nanpercentile(drawn, 97.5, axis=0)
            resampled = "edge_scores"
        else:
            low = high = np.full(len(_METRICS), np.nan)
            resampled = "none"
        base = {"variant": variant, "seed": seed, "reference": TEACHER, "reference_seed": ref_seed,
                "layer_map": ",".join(map(str, mapping)), "n": int(s_rows["n"].max()), "resampled": resampled,
                "student_edges": len(student), "teacher_edges": len(t_rows)}  # fmt: skip
        out += [{**base, "metric": m, "value": v, "ci_low": lo, "ci_high": hi}
                for m, v, lo, hi in zip(_METRICS, point, low, high, strict=True)]  # fmt: skip
        out.append({**base, "metric": "teacher_unmapped", "value": float(unmapped)})
    return tidy(out) if out else pd.DataFrame()
