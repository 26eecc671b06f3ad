"""Findings: the statistics that turn a run folder's tables into answers (docs/DESIGN.md section 8; docs/FINDINGS.md).

:func:`compute_findings` reads a run folder and computes, each from the tables it needs (a missing table leaves its
finding empty, with the message that names the stage and command that write it):

================  ===========================================================  =====================================
table             what a row is                                                module
================  ===========================================================  =====================================
fitness           accuracy vs the majority-class baseline, prediction collapse  :mod:`pipeline.findings.comparisons`
comparisons       paired change of a metric, variant vs reference (RQ1)         :mod:`pipeline.findings.comparisons`
bias_units        p, q, share of the total, "carries bias" per head (RQ2)       :mod:`pipeline.findings.bias_units`
ig_completeness   the worst IG completeness error per table and model           :mod:`pipeline.findings.bias_units`
concentration     Gini / entropy of head effects and the student difference     :mod:`pipeline.findings.structure`
method_agreement  rank correlation and top-k overlap between methods            :mod:`pipeline.findings.structure`
stability         seeds and teacher-student alignment of head effects (RQ4)     :mod:`pipeline.findings.structure`
encoding          probe accuracy over chance, selectivity, erasure (RQ5)        :mod:`pipeline.findings.encoding`
mitigation        paired change, mitigated variant vs its unmitigated twin (RQ6) :mod:`pipeline.findings.mitigation`
frontier          accuracy and bias of every variant, Pareto front (RQ6)      :mod:`pipeline.findings.mitigation`
circuit_overlap   edge and node overlap of teacher and student bias circuits   :mod:`pipeline.findings.circuits`
================  ===========================================================  =====================================

The settings are the ``[findings]`` section of a run (:class:`~pipeline.runs.findings_config.FindingsConfig`, light
to import for the run config). The ``findings`` stage
(:mod:`pipeline.findings.stage`) writes these tables into the run folder; ``bias-atlas report RUN``
(:mod:`pipeline.report.run_report`) computes them again from the folder and writes the report.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from pipeline.findings.bias_units import bias_units, completeness_table, unit_methods
from pipeline.findings.circuits import circuit_overlap
from pipeline.findings.comparisons import comparisons_table
from pipeline.findings.encoding import encoding_table
from pipeline.findings.fitness import fitness_table
from pipeline.findings.mitigation import frontier_table, mitigation_table
from pipeline.findings.structure import agreement_table, concentration_table, stability_table
from pipeline.runs.findings_config import FindingsConfig
from pipeline.runs.runfolder import RunFolder
from pipeline.runs.tables import missing_message

__all__ = [
    "FINDINGS",
    "NAN_CHECKED",
    "Findings",
    "FindingsConfig",
    "compute_findings",
    "fresh_findings",
    "input_tables",
    "open_run",
    "unexplained_nan",
]


@dataclass(frozen=True)
class _Finding:
    name: str
    needs: tuple[str, ...] | Callable[[], tuple[str, ...]]  # run tables read (any present is enough unless all_needed)
    compute: Callable[[dict[str, pd.DataFrame], FindingsConfig, RunFolder], pd.DataFrame]
    all_needed: bool = False

    def needed(self) -> tuple[str, ...]:
        """The run tables it reads (a function of the registries for the unit findings: plug-ins included)."""
        return self.needs() if callable(self.needs) else self.needs


def _comparisons(tables: dict, cfg: FindingsConfig, run: RunFolder) -> pd.DataFrame:
    fitness = tables.get("fitness")
    return comparisons_table(tables.get("predictions"), tables.get("bias_metrics"), fitness,
                             list(run.manifest.get("label_names", [])), cfg, tables.get("task_metrics"),
                             tables.get("counterfactual_examples"))  # fmt: skip


# The findings in the order they are computed (comparisons read fitness).
FINDINGS: tuple[_Finding, ...] = (
    _Finding(
        "fitness",
        ("predictions",),
        lambda t, c, r: fitness_table(t["predictions"], t.get("task_metrics"), c),
        all_needed=True,
    ),
    _Finding("comparisons", ("predictions", "bias_metrics"), _comparisons),
    _Finding("bias_units", lambda: tuple(m.table for m in unit_methods()), lambda t, c, r: bias_units(t, c)),
    _Finding("ig_completeness", ("head_ig", "neuron_ig", "token_ig"), lambda t, c, r: completeness_table(t, c)),
    _Finding("concentration", ("head_ablation", "patching"), lambda t, c, r: concentration_table(t, c)),
    _Finding(
        "method_agreement",
        ("head_ablation", "patching", "head_importance", "head_ig"),
        lambda t, c, r: agreement_table(t, c),
    ),
    _Finding("stability", ("head_ablation", "patching"), lambda t, c, r: stability_table(t, c, r.path)),
    _Finding("encoding", ("probes_layers", "probes_control", "erasure"), lambda t, c, r: encoding_table(t, c)),
    _Finding(
        "mitigation",
        ("predictions", "bias_metrics"),
        lambda t, c, r: mitigation_table(
            t.get("predictions"),
            t.get("bias_metrics"),
            t.get("fitness"),
            list(r.manifest.get("label_names", [])),
            c,
            t.get("task_metrics"),
            t.get("counterfactual_examples"),
        ),
    ),
    _Finding("frontier", ("bias_metrics",), lambda t, c, r: frontier_table(t["bias_metrics"], t.get("fitness"))),
    _Finding("circuit_overlap", ("circuit", "eap_edges"), lambda t, c, r: circuit_overlap(t, c, r.path)),
)
_READ = ("task_metrics", "predictions", "bias_metrics", "counterfactual_examples", "head_examples", "token_ig",
         "probes_layers", "probes_control", "erasure", "circuit", "eap_edges")  # fmt: skip


def input_tables() -> tuple[str, ...]:
    """The run tables the findings read: the fixed ones and every table of a method the findings read units of."""
    return tuple(dict.fromkeys((*_READ, *(m.table for m in unit_methods()))))


NAN_CHECKED = ("task_metrics", "bias_metrics")  # every NaN value of these tables has a `skipped` reason


def unexplained_nan(frame: pd.DataFrame, name: str) -> str | None:
    """Why ``frame`` (table ``name``) is damaged input: rows whose value is NaN with no ``skipped`` reason (a metric
    undefined on its data says why when it is computed); None when every NaN is explained."""
    if "value" not in frame:
        return None
    reason = frame["skipped"].fillna("").astype(str) if "skipped" in frame else pd.Series("", index=frame.index)
    bad = frame[frame["value"].isna() & (reason == "")]
    if bad.empty:
        return None
    first = bad.iloc[0]
    keys = [k for k in ("variant", "seed", "metric", "subset") if k in bad and first[k] != ""]
    where = ", ".join(f"{k} {first[k]!r}" if isinstance(first[k], str) else f"{k} {first[k]}" for k in keys)
    return (
        f"table {name} is damaged: {len(bad)} row(s) have value NaN and no skipped reason (first: {where}); the "
        "findings that read it are not computed rather than read as wide intervals or missing comparisons"
    )


@dataclass
class Findings:
    """What :func:`compute_findings` found.

    Attributes:
        run: the run folder.
        config: the settings used.
        tables: finding name -> tidy table (absent when its inputs are missing or it has no rows).
        missing: finding name -> one message per missing input table (stage and command to run).
        errors: finding name -> why it could not be computed from the tables present.
        inputs: the run tables that were read.
        damaged: input table name -> why it could not be read (a damaged or unreadable file); the findings that
            need it are absent, and the report's sections that read it say so.
    """

    run: RunFolder
    config: FindingsConfig
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    missing: dict[str, list[str]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    inputs: dict[str, pd.DataFrame] = field(default_factory=dict)
    damaged: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> pd.DataFrame | None:
        frame = self.tables.get(name)
        return frame if frame is not None and len(frame) else None


def open_run(path: str | Path) -> RunFolder:
    """The run folder at ``path``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path`` is not a run folder (no ``manifest.json``, no tables) or holds no table yet.
    """
    run = RunFolder(path)
    has_manifest = (run.path / "manifest.json").is_file()
    if not has_manifest and not run.tables():
        raise ValueError(
            f"{str(run.path)!r} is not a run folder: it has neither manifest.json nor tables/. Give the "
            "folder `bias-atlas run CONFIG` wrote (runs/<name>), e.g. `bias-atlas report runs/demo`."
        )
    if not run.tables():
        raise ValueError(
            f"run {run.name!r} has no tables yet (its stages have not finished). Run "
            "`bias-atlas run CONFIG` to produce them, then report."
        )
    return run


def compute_findings(
    run: RunFolder | str | Path, cfg: FindingsConfig | None = None, *, stored: Collection[str] = ()
) -> Findings:
    """Every finding of :data:`FINDINGS` that the run's tables allow.

    ``stored``: findings to read from the run folder instead of computing them again: only those the run's findings
    stage just wrote with ``cfg`` (:func:`fresh_findings`); the others are computed.

    Raises:
        FileNotFoundError, ValueError: from :func:`open_run` (not a run folder, or no tables yet).
    """
    run = run if isinstance(run, RunFolder) else open_run(run)
    cfg = cfg or FindingsConfig()
    inputs, damaged = {}, {}
    for name in (n for n in input_tables() if run.has(n)):
        try:
            inputs[name] = run.table(name)
        except (ValueError, OSError) as err:  # damaged (SchemaError, a truncated file): costs its own findings
            if isinstance(err, FileNotFoundError):
                raise
            damaged[name] = f"table {name} is damaged or unreadable ({type(err).__name__}: {err})"
    for name in [n for n in NAN_CHECKED if n in inputs]:
        why = unexplained_nan(inputs[name], name)
        if why:  # a value lost after it was computed: never a wide interval or a vanished comparison
            damaged[name] = why
            del inputs[name]
    out = Findings(run, cfg, inputs=inputs, damaged=damaged)
    tables = dict(inputs)
    for finding in FINDINGS:
        absent = [n for n in finding.needed() if n not in inputs]
        if absent:
            out.missing[finding.name] = [damaged.get(n) or missing_message(n, run.name) for n in absent]
        if len(absent) == len(finding.needed()) or (finding.all_needed and absent):
            continue
        try:
            frame = run.table(finding.name) if finding.name in stored else finding.compute(tables, cfg, run)
        except (ValueError, KeyError) as err:
            out.errors[finding.name] = f"{type(err).__name__}: {err}"
            continue
        if frame is not None and len(frame):
            out.tables[finding.name] = frame
            tables[finding.name] = frame
    return out


def fresh_findings(run: RunFolder) -> list[str]:
    """The findings tables the last execution of the run's findings stage wrote (its manifest record), i.e. those
    that match the run's current tables and settings; an older table the stage no longer writes is not among them."""
    record = run.manifest.get("stages", {}).get("findings", {})
    return [name for name in record.get("tables", []) if run.has(name)] if record.get("status") == "done" else []
