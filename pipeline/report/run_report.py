"""``bias-atlas report RUN``: the answers to the research questions, as ``RUN/report/index.html`` (one
self-contained file: figures embedded as base64 PNG, no external resource, opens offline) and ``RUN/report/report.md``
(figures beside it in ``report/figures/``).

The report reads only the run folder: :func:`pipeline.findings.compute.compute_findings` turns its tables into
findings, and one section per research question (:mod:`pipeline.report.answers`,
:mod:`pipeline.report.answers_structure`) states the answer in a plain sentence, the numbers with intervals and
q-values, the figure and the table behind it. A header records the model, data, number of examples, seeds and
versions from ``manifest.json``. A section whose tables are missing says which stage writes them and the command to
run; a folder that is not a run (or holds no table yet) is an error that says what to give instead.
"""

from __future__ import annotations

import argparse
import base64
import html
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import ValidationError

from pipeline.files import atomic_path, describe_write_error
from pipeline.findings.compute import Findings, FindingsConfig, compute_findings, fresh_findings, open_run
from pipeline.report.answers import fitness_section, rq1_section
from pipeline.report.answers_circuits import circuits_section
from pipeline.report.answers_location import rq2_section
from pipeline.report.answers_structure import rq3_section, rq4_section, rq5_section
from pipeline.report.charts import png_base64
from pipeline.report.claims import Section, fmt, is_p_column, p_text
from pipeline.report.glossary import glossary_section
from pipeline.report.remedies import mitigation_section

__all__ = ["SECTIONS", "SECTION_INPUTS", "DamagedTablesError", "build_sections", "header_rows", "main", "write_report"]

SECTIONS = (
    fitness_section,
    rq1_section,
    rq2_section,
    rq3_section,
    rq4_section,
    rq5_section,
    mitigation_section,
    circuits_section,
)
_MAX_ROWS = 80  # rows of a section's table shown in the report (the findings tables hold them all)
_VERSIONS = (
    "bias-atlas",
    "torch",
    "transformers",
    "captum",
    "transformer-lens",
    "concept-erasure",
    "numpy",
    "pandas",
    "scipy",
    "python",
)
_CSS = """body{font:15px/1.5 system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ccc}p.answer{font-size:1.1em;background:#f3f6fb;
padding:.6em .8em;border-left:4px solid #1f5fa8}table{border-collapse:collapse;font-size:12px;margin:.5em 0}
td,th{border:1px solid #ddd;padding:2px 6px;text-align:right}th{background:#f5f5f5}td:first-child{text-align:left}
img{max-width:100%}ul.notes li{color:#555}nav a{margin-right:1em}table.meta td{text-align:left}
div.wide{overflow-x:auto;max-width:100%}table.meta{table-layout:fixed;width:100%}table.meta td{overflow-wrap:anywhere}
summary{cursor:pointer;color:#1f5fa8}p.short{font-size:1.15em;margin:.8em 0 .3em}"""


def header_rows(f: Findings) -> list[tuple[str, str]]:
    """(label, value) pairs of the report header, from the manifest and the tables."""
    m = f.run.manifest
    config = m.get("config", {})
    task = config.get("task", {})
    data = m.get("data", {})
    versions = m.get("versions", {})
    preds = f.inputs.get("predictions")
    variants = sorted(set(preds["variant"])) if preds is not None else f.run.variants()
    git = m.get("git", {})
    rows = [
        ("run", f"{f.run.name} ({f.run.path})"),
        ("created", str(m.get("created", "unknown"))),
        ("model (teacher)", str(config.get("teacher", {}).get("source", "unknown"))),
        (
            "data",
            f"{task.get('dataset', 'unknown')} {task.get('path') or ''}".strip()
            + (f"; splits {', '.join(f'{k} {v}' for k, v in data.items())}" if data else ""),
        ),
        ("n (test examples)", str(int(preds["example"].nunique())) if preds is not None else "unknown"),
        ("n (attribution examples)", str(config.get("attribution", {}).get("n_examples", "unknown"))),
        ("seeds", ", ".join(map(str, m.get("seeds", []))) or "unknown"),
        ("variants", ", ".join(variants) or "none"),
        ("versions", ", ".join(f"{k} {versions[k]}" for k in _VERSIONS if k in versions) or "unknown"),
        ("git revision", f"{git.get('revision') or 'unknown'}{' (uncommitted changes)' if git.get('dirty') else ''}"),
        ("findings settings", ", ".join(f"{k} = {v}" for k, v in f.config.model_dump().items())),
    ]
    return rows


# the run tables each section reads (directly or through its findings): a damaged one voids the section's answer
SECTION_INPUTS: dict[str, tuple[str, ...]] = {
    "fitness": ("predictions", "task_metrics"),
    "rq1": ("predictions", "task_metrics", "bias_metrics", "counterfactual_examples"),
    "rq2": ("head_ablation", "patching", "head_importance", "head_ig", "neuron_ig", "token_ig"),
    "rq3": ("head_ablation", "patching", "predictions", "task_metrics"),
    "rq4": ("head_ablation", "patching", "predictions", "task_metrics"),
    "rq5": ("probes_layers", "probes_control", "erasure", "predictions", "task_metrics"),
    "rq6": ("predictions", "task_metrics", "bias_metrics", "counterfactual_examples"),
    "circuits": ("circuit", "eap_edges"),
}


class DamagedTablesError(ValueError):
    """The report was written, but some run tables it reads are damaged: the sections that read them say so."""


def _damaged_answer(section: Section, f: Findings) -> Section:
    """The section with its answer replaced when a table it reads is damaged (never an answer from part of the
    evidence)."""
    bad = [t for t in SECTION_INPUTS.get(section.key, ()) if t in f.damaged]
    if not bad:
        return section
    return Section(
        section.key,
        section.title,
        f"Not answered: the run's table {', '.join(bad)} is damaged or unreadable, so this answer would rest on part "
        f"of the evidence. Fix: `bias-atlas verify {f.run.path}` names the damage; run the stage that writes it again "
        "(bias-atlas run CONFIG --force STAGE), then report.",
        notes=[f.damaged[t] for t in bad],
    )


def build_sections(f: Findings) -> list[Section]:
    """Every section, in report order; a section that reads a damaged table, or fails on unexpected table contents,
    says so instead of answering (or ending the report)."""
    out = []
    for section in SECTIONS:
        key = section.__name__.removesuffix("_section").replace("mitigation", "rq6")
        try:
            out.append(_damaged_answer(section(f), f))
        except (ValueError, KeyError, IndexError, TypeError) as err:
            why = f"an expected column or entry ({err}) is absent" if isinstance(err, KeyError) else str(err)
            out.append(
                _damaged_answer(
                    Section(
                        key,
                        key.upper() if key.startswith("rq") else key,
                        f"This section could not be computed from the run's tables: {why}. Check the tables with "
                        "`bias-atlas verify RUN` and rerun the stages.",
                    ),
                    f,
                )
            )
    return [*out, glossary_section()]


def _cell(x) -> str:
    if isinstance(x, (float, np.floating)):
        return fmt(float(x))
    return "" if x is None or (isinstance(x, float) and np.isnan(x)) else str(x)


def _shown(table: pd.DataFrame) -> pd.DataFrame:
    """The first rows as text: numbers with 3 significant digits, p- and q-values as ``< 0.001`` below 0.001."""
    if not len(table):
        return table
    head = table.head(_MAX_ROWS).astype(object)
    return pd.DataFrame(
        {c: head[c].map(p_text if is_p_column(c) and _numeric(head[c]) else _cell) for c in head.columns}
    )


def _numeric(values: pd.Series) -> bool:
    return all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in values)


def _html_table(table: pd.DataFrame) -> str:
    more = f"<p>first {_MAX_ROWS} of {len(table)} rows</p>" if len(table) > _MAX_ROWS else ""
    return _shown(table).to_html(index=False, escape=True, border=0) + more


def _md_table(table: pd.DataFrame) -> str:
    shown = _shown(table)
    esc = lambda s: str(s).replace("|", "\\|").replace("\n", " ")
    lines = ["| " + " | ".join(esc(c) for c in shown.columns) + " |", "|" + "---|" * len(shown.columns)]
    lines += ["| " + " | ".join(esc(v) for v in row) + " |" for row in shown.itertuples(index=False)]
    more = ["", f"(first {_MAX_ROWS} of {len(table)} rows)"] if len(table) > _MAX_ROWS else []
    return "\n".join(lines + more)


def _render(f: Findings, sections: list[Section], figures: dict[str, str]) -> tuple[str, str]:
    """(html, markdown) of the report; ``figures`` maps a section key to its base64 PNG."""
    e = html.escape
    title = f"bias-atlas report: {f.run.name}"
    head = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in header_rows(f))
    nav = "".join(f'<a href="#{s.key}">{e(s.title.split(" ")[0] if s.key.startswith("rq") else s.title)}</a>'
                  for s in sections)  # fmt: skip
    parts = [
        (
            f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{e(title)}</title>"
            f"<style>{_CSS}</style></head><body><h1>{e(title)}</h1><table class='meta'>{head}</table><nav>{nav}</nav>"
        )
    ]
    md = [f"# {title}", "", "| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in header_rows(f)]
    for s in sections:
        lead = s.lead()
        short = f"<p class='short'><b>In short:</b> {e(lead)}</p>" if lead else ""
        parts.append(f"<section id='{s.key}'><h2>{e(s.title)}</h2>{short}<p class='answer'>{e(s.answer)}</p>")
        md += ["", f"## {s.title}", ""] + ([f"**In short.** {lead}", ""] if lead else [])
        md += [f"**Answer.** {s.answer}", ""]
        if s.numbers:
            items = "".join(f"<li>{e(n)}</li>" for n in s.numbers)
            parts.append(f"<details><summary>The numbers ({len(s.numbers)})</summary><ul>{items}</ul></details>")
            md += [f"- {n}" for n in s.numbers] + [""]
        if s.key in figures:
            parts.append(f"<figure><img alt='{e(s.title)}' src='data:image/png;base64,{figures[s.key]}'></figure>")
            md += [f"![{s.title}](figures/{s.key}.png)", ""]
        if s.table is not None and len(s.table):
            shown = " open" if s.key == "glossary" else ""  # tables open on a click; the glossary is the content
            summary = f"Table ({len(s.table)} rows)"
            parts.append(
                f"<details{shown}><summary>{summary}</summary><div class='wide'>{_html_table(s.table)}</div></details>"
            )
            md += [_md_table(s.table), ""]
        if s.notes:
            parts.append("<ul class='notes'>" + "".join(f"<li>{e(n)}</li>" for n in s.notes) + "</ul>")
            md += [f"> {n}" for n in s.notes] + [""]
        parts.append("</section>")
    parts.append(
        "<footer><p>Statistics: docs/FINDINGS.md. Written by <code>bias-atlas report</code>.</p></footer></body></html>"
    )
    return "\n".join(parts), "\n".join(md) + "\n"


def write_report(run_dir: str | Path, cfg: FindingsConfig | None = None, out_dir: str | Path | None = None, *,
                 stored: bool = False) -> tuple[Path, Path]:  # fmt: skip
    """Compute the findings of ``run_dir`` and write ``index.html`` and ``report.md`` (default ``RUN/report``);
    ``stored``: read the findings the run's findings stage just wrote with ``cfg`` (the end of a run,
    :func:`pipeline.findings.compute.fresh_findings`) instead of computing them again.

    Returns:
        (path of index.html, path of report.md).

    Raises:
        FileNotFoundError: ``run_dir`` does not exist.
        ValueError: ``run_dir`` is not a run folder or holds no table yet.
    """
    run = open_run(run_dir)
    findings = compute_findings(run, cfg or FindingsConfig(), stored=fresh_findings(run) if stored else ())
    sections = build_sections(findings)
    out = Path(out_dir) if out_dir is not None else findings.run.path / "report"
    (out / "figures").mkdir(parents=True, exist_ok=True)
    figures = {}
    for s in sections:
        if s.figure is not None:
            figures[s.key] = png_base64(s.figure)
            with atomic_path(out / "figures" / f"{s.key}.png") as tmp:
                Path(tmp).write_bytes(base64.b64decode(figures[s.key]))
    page, markdown = _render(findings, sections, figures)
    paths = out / "index.html", out / "report.md"
    for path, text in zip(paths, (page, markdown)):
        with atomic_path(path) as tmp:
            Path(tmp).write_text(text, encoding="utf-8")
    if findings.damaged:
        raise DamagedTablesError(
            f"{'; '.join(findings.damaged.values())}. The report ({paths[0]}) says which answers this voids. Fix: "
            f"`bias-atlas verify {findings.run.path}`, run the stage that writes it again, then report."
        )
    return paths


def main(argv: Sequence[str] | None = None, *, prog: str = "bias-atlas report") -> int:
    """CLI: ``bias-atlas report RUN [--out DIR] [--alpha A] [--min-share S] [--n-boot B] [--seed K]``."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="run folder written by `bias-atlas run` (runs/<name>)")
    parser.add_argument("--out", default=None, help="output folder (default: RUN/report)")
    defaults = FindingsConfig()
    parser.add_argument("--alpha", type=float, default=defaults.alpha, help="q-value threshold (default 0.05)")
    parser.add_argument(
        "--min-share",
        type=float,
        default=defaults.min_share,
        help="share of the total effect a unit needs to carry bias (default 0.02)",
    )
    parser.add_argument("--n-boot", type=int, default=defaults.n_boot, help="bootstrap resamples (default 2000)")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed of resamples and permutations")
    args = parser.parse_args(argv)
    try:
        cfg = FindingsConfig(alpha=args.alpha, min_share=args.min_share, n_boot=args.n_boot, seed=args.seed)
    except ValidationError as err:
        problems = "; ".join(f"--{str(e['loc'][0]).replace('_', '-')} {e['input']!r}: {e['msg']}" for e in err.errors())
        raise ValueError(f"bad report settings: {problems}.") from None
    try:
        page, markdown = write_report(args.run_dir, cfg, args.out)
    except OSError as err:  # a read-only run folder, a full disk: one line with the fix
        message = describe_write_error(err, args.out or Path(args.run_dir) / "report")
        if message is None:
            raise
        raise ValueError(message) from None
    print(f"wrote {page}\nwrote {markdown}", file=sys.stdout)
    return 0
