"""``bias-atlas report`` on a real small run (tests/findings/conftest.py::small_run): both files are written, one
section per research question with an embedded figure; missing tables give sections that name the stage and the
command; a folder that is not a run is a clear error; the findings stage returns registered tables."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from pipeline.cli.main import COMMANDS
from pipeline.cli.main import main as cli_main
from pipeline.findings.compute import FindingsConfig, compute_findings, fresh_findings, open_run
from pipeline.findings.stage import findings_stage
from pipeline.report.claims import Section
from pipeline.report.run_report import DamagedTablesError, main, write_report
from pipeline.runs.manifest import Manifest
from pipeline.runs.stages import StageContext
from pipeline.runs.tables import TABLES

RQS = ("RQ1", "RQ2", "RQ3", "RQ4", "RQ5", "RQ6", "RQ7")


@pytest.fixture(scope="module")
def report(small_run, fast, tmp_path_factory) -> tuple[Path, Path]:
    return write_report(small_run, fast, tmp_path_factory.mktemp("report"))


def test_report_has_one_section_per_question_and_embedded_figures(report):
    page, markdown = report
    text = page.read_text()
    headings = re.findall(r"<h2>(.*?)</h2>", text)
    assert [h.split(" ")[0] for h in headings if h.startswith("RQ")] == list(RQS)
    assert len(re.findall(r"src='data:image/png;base64,[A-Za-z0-9+/=]{100,}'", text)) >= 3
    assert not re.search(r"(src|href)=['\"]https?:", text)  # self-contained: opens offline
    for field in ("model (teacher)", "seeds", "versions", "n (test examples)", "torch"):
        assert field in text
    md = markdown.read_text()
    assert all(f"## {rq} " in md for rq in RQS) and "![" in md
    assert all((markdown.parent / "figures" / f"{key}.png").exists() for key in ("rq1", "rq2"))


def test_report_answers_say_what_the_statistics_allow(small_run, fast):
    findings = compute_findings(small_run, fast)
    assert {"fitness", "comparisons", "bias_units", "concentration", "method_agreement", "stability",
            "encoding", "ig_completeness"} <= set(findings.tables)  # fmt: skip
    units = findings.tables["bias_units"]
    assert set(units.loc[units["method"] == "ablation", "p_method"]) == {"stored"}
    assert not findings.tables["ig_completeness"]["complete"].any()  # 4 IG steps: incomplete on purpose
    assert not units.loc[units["method"] == "ig", "carries"].any()


def test_sections_of_missing_or_damaged_tables_name_the_stage_and_command(small_run, fast, tmp_path):
    partial = tmp_path / "partial"
    shutil.copytree(small_run, partial, ignore=shutil.ignore_patterns("models", ".cache"))
    for table in ("head_ablation", "head_importance", "head_ig", "patching", "comparison", "probes_layers",
                  "probes_control", "erasure"):  # fmt: skip
        (partial / "tables" / f"{table}.parquet").unlink(missing_ok=True)
    (partial / "tables" / "bias_metrics.parquet").write_bytes(b"not parquet")  # damaged: voids what reads it
    with pytest.raises(DamagedTablesError, match="table bias_metrics is damaged"):  # written, then refused
        write_report(partial, fast)
    text = (partial / "report" / "index.html").read_text()
    for rq in ("RQ2", "RQ3", "RQ5"):
        section = text.split(f"<h2>{rq} ")[1].split("</section>")[0]
        assert "cannot answer" in section and "bias-atlas run CONFIG" in section
    assert "&#x27;attribution&#x27; stage" in text and "&#x27;probes&#x27; stage" in text
    assert "Traceback" not in text and "<h2>RQ1 " in text
    rq1 = text.split("<h2>RQ1 ")[1].split("</section>")[0]
    assert "Not answered: the run&#x27;s table bias_metrics is damaged" in rq1  # never from part of the evidence


def test_not_a_run_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        open_run(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not a run folder"):
        write_report(tmp_path / "empty")
    started = tmp_path / "started"
    (started / "tables").mkdir(parents=True)
    (started / "manifest.json").write_text(json.dumps({"name": "started", "stages": {}}))
    with pytest.raises(ValueError, match="no tables yet"):
        main([str(started)])


def test_command_line(small_run, tmp_path, capsys):
    assert main([str(small_run), "--out", str(tmp_path / "out"), "--n-boot", "200"]) == 0
    assert (tmp_path / "out" / "index.html").exists() and "wrote" in capsys.readouterr().out


@pytest.mark.skipif("report" not in COMMANDS, reason="`report` is not yet a row of pipeline.cli.main.COMMANDS")
def test_bias_atlas_report_reports_bad_input_without_a_traceback(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert cli_main(["report", str(tmp_path / "empty")]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_findings_stage_returns_registered_tables(small_run, fast, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(small_run, run_dir, ignore=shutil.ignore_patterns("models", ".cache"))
    ctx = StageContext(SimpleNamespace(findings=fast), run_dir, Manifest(run_dir / "manifest.json"), stage="findings")
    tables = findings_stage(ctx)
    assert {"fitness", "comparisons", "bias_units"} <= set(tables)
    assert {TABLES[name].stage for name in tables} == {"findings"}
    assert findings_stage(ctx).keys() == tables.keys() and ctx.counts == {"ran": 1, "cached": 1}


@pytest.mark.browser
def test_report_renders_offline_in_chromium(report):
    """The report opened from disk in headless Debian Chromium: every heading shown, every figure decoded."""
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        pytest.skip("no /usr/bin/chromium: apt-get install -y chromium")
    sync_api = pytest.importorskip("playwright.sync_api", reason="no playwright: pip install playwright")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(chromium), args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.route("http*://**", lambda route: route.abort())  # offline: any network request fails
            page.goto(report[0].as_uri())
            headings = page.locator("h2").all_inner_texts()
            widths = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.naturalWidth)")
            page.eval_on_selector_all("details", "ds => ds.forEach(d => d.open = true)")  # every table shown
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        finally:
            browser.close()
    assert [h.split(" ")[0] for h in headings if h.startswith("RQ")] == list(RQS)
    assert widths and all(w > 0 for w in widths)
    assert overflow <= 0, f"the page is {overflow} px wider than a 1400 px window"


def test_tables_and_numbers_open_on_a_click_and_p_values_are_never_point_values_below_0001(report):
    page, markdown = report
    text = page.read_text()
    assert "<details open>" in text.split("id='glossary'")[1]  # the glossary is the content: shown
    assert "<details open>" not in text.split("id='glossary'")[0]  # every other table and number list collapsed
    assert re.search(r"<summary>The numbers \(\d+\)</summary>", text)
    for table in re.findall(r"<table.*?</table>", text, flags=re.DOTALL):
        columns = re.findall(r"<th>(.*?)</th>", table)
        for row in re.findall(r"<tr>(.*?)</tr>", table, flags=re.DOTALL)[1:]:
            cells = dict(zip(columns, re.findall(r"<td>(.*?)</td>", row, flags=re.DOTALL)))
            for name in ("p", "q"):
                value = cells.get(name, "")
                assert value in ("", "&lt; 0.001") or float(value) >= 0.001, (name, value)
    assert "## Glossary" in markdown.read_text() and "| GAP_RMS |" in markdown.read_text()


def test_the_run_reports_its_stored_findings_exactly_as_computed_ones(small_run, tmp_path):
    """At the end of a run the report reads the findings the stage just wrote instead of computing them twice: the
    same report as recomputing them; a findings table the last findings stage did not write is never read."""
    manifest = json.loads((small_run / "manifest.json").read_text())
    cfg = FindingsConfig(**manifest["config"].get("findings", {}))
    _, markdown = write_report(small_run, cfg, tmp_path / "recomputed")
    assert markdown.read_text() == (small_run / "report" / "report.md").read_text()
    copy = tmp_path / "copy"
    shutil.copytree(small_run, copy)
    written = manifest["stages"]["findings"]["tables"]
    stale = next(n for n in ("mitigation", "frontier", "stability") if n not in written)
    shutil.copy(copy / "tables" / "fitness.parquet", copy / "tables" / f"{stale}.parquet")  # left by an older run
    assert set(fresh_findings(open_run(copy))) == set(written)


def test_every_answer_opens_with_one_sentence_that_agrees_with_it(small_run, fast, report):
    from pipeline.report.run_report import build_sections

    sections = {s.key: s for s in build_sections(compute_findings(small_run, fast))}
    for key in ("fitness", "rq1", "rq2", "rq3", "rq4", "rq5", "rq6", "circuits"):
        short = sections[key].short
        assert short.endswith(".") and len(short) < 300 and not re.search(r"\. [A-Z]", short), (key, short)
    primary = re.search(r"Primary metric \([^)]*\): (\d+) of (\d+) readable comparisons", sections["rq1"].answer)
    if primary:  # the headline counts what the answer counts
        k, n = primary.groups()
        expected = "No compressed model changes" if k == "0" else f"detectably in {k} of {n} comparisons"
        assert expected in sections["rq1"].short
    markdown = report[1].read_text()
    for s in sections.values():  # printed first, unless the answer already opens with it
        first = f"**In short.** {s.lead()}\n\n" if s.lead() else ""
        assert f"## {s.title}\n\n{first}**Answer.**" in markdown
    assert sections["rq1"].lead() == sections["rq1"].short
    assert f"<b>In short:</b> {sections['rq1'].short}" in report[0].read_text().replace("&#x27;", "'")
    repeat = Section("rq7", "RQ7", "Cannot decide: no circuits to compare.", short="Cannot decide: no circuits.")
    assert repeat.lead() == "" and Section("x", "X", "Long answer.", short="Short.").lead() == "Short."
