"""Run folders for the viewer tests, made by the pipeline itself in the test session: a full one, an empty one
and a partial one.

The full run (``demo``) is ``pipeline.runs.run.run`` on a config sized for a test (:func:`demo_config`), with every
analysis stage on. Its teacher is a small random BERT (4 layers x 4 heads, width 64) saved with
``save_pretrained`` into a temporary folder and given as ``teacher.source``; its word embeddings are MiniLM's,
randomly projected to width 64, so that fine-tuning has something to work with, and MiniLM's tokenizer is saved
beside it. The run builds, for seeds 0 and 1, the variants

    teacher (seed 0 only: the pretrained model with a random head), teacher-ft, distil-ft_before (2 blocks from
    teacher blocks 0 and 2), int8-ft_before

and writes every table of the stages build, task_metrics, bias_metrics, attribution (+ comparison) and probes
to ``<tmp>/runs/demo/tables``, the models to ``models/<variant>/seed<k>/`` and ``manifest.json``.

The partial run (``partial``) is the same config with ``run.analyses = []``: the pipeline stops after the build
and the task metrics, as a run does before its analyses have been asked for. It is built in its own folder from
the models of the full run (copied, so the build stage finds them cached and only the task metrics run).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from run_fixtures import demo_config, run_pipeline


@pytest.fixture(scope="session")
def empty_run(tmp_path_factory) -> Path:
    """A run that has started but written nothing yet: a manifest and an empty tables/ folder."""
    run_dir = tmp_path_factory.mktemp("runs_empty") / "empty"
    (run_dir / "tables").mkdir(parents=True)
    (run_dir / "manifest.json").write_text(json.dumps({"name": "empty", "stages": {}}))
    return run_dir


@pytest.fixture(scope="session")
def partial_run(tmp_path_factory, demo_run, demo_teacher) -> Path:
    """The demo config with ``run.analyses = []``: models and task metrics, no bias metrics, attribution or probes.

    Its build stage reuses the demo run's models (copied, with the manifest that records their hashes), so only
    the task metrics are computed.
    """
    out = tmp_path_factory.mktemp("runs_partial")
    run_dir = out / "partial"
    shutil.copytree(demo_run / "models", run_dir / "models")
    (run_dir / "tables").mkdir()
    for table in ("training", "build_predictions"):  # the build stage's own tables
        shutil.copy(demo_run / "tables" / f"{table}.parquet", run_dir / "tables")
    manifest = json.loads((demo_run / "manifest.json").read_text())
    kept = {"build": manifest["stages"]["build"]}
    (run_dir / "manifest.json").write_text(json.dumps({**manifest, "name": "partial", "stages": kept}))
    result = run_pipeline(demo_config(out, demo_teacher, name="partial", analyses=[]))
    assert result.actions == {"build": "cached", "task_metrics": "ran", "findings": "ran"}, result.actions
    return run_dir


@pytest.fixture(scope="session")
def collapsed_run(tmp_path_factory, demo_run) -> Path:
    """The demo run's tables (no models) with two defects a viewer must not hide: ``int8-ft_before`` seed 0 predicts
    one class for all but one test example (collapsed), and the token explanations of ``distil-ft_before`` say it
    predicted ``person`` (so its example labels differ from the teacher's). The findings tables are removed, so the
    viewer must compute fitness from ``predictions`` itself and say that the findings stage did not run."""
    from pipeline.findings.compute import FINDINGS
    from pipeline.schema import read_table, write_table

    run_dir = tmp_path_factory.mktemp("runs_collapsed") / "collapsed"
    shutil.copytree(demo_run, run_dir, ignore=shutil.ignore_patterns("models", ".cache"))
    tables = run_dir / "tables"
    for finding in FINDINGS:
        (tables / f"{finding.name}.parquet").unlink(missing_ok=True)
    predictions = read_table(tables / "predictions.parquet")
    rows = (predictions["variant"] == "int8-ft_before") & (predictions["seed"] == 0)
    first = predictions.index[rows][0]
    predictions.loc[rows, "pred"] = 0
    predictions.loc[first, "pred"] = 1
    write_table(predictions, tables / "predictions.parquet")
    tokens = read_table(tables / "token_ig.parquet")
    distil = (tokens["variant"] == "distil-ft_before") & (tokens["unit"] == "token")
    tokens.loc[distil, "pred"] = "person"
    write_table(tokens, tables / "token_ig.parquet")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    (run_dir / "manifest.json").write_text(json.dumps({**manifest, "name": "collapsed"}))
    return run_dir
