"""The viewer on a damaged run and outside its runs folder: one bad table is named once and costs only the views
that need it; the runs-folder box opens nothing outside the folder the viewer serves."""

from __future__ import annotations

import shutil

from viewer_helpers import infos, open_app, show


def test_a_truncated_table_is_named_and_the_other_pages_still_work(demo_run, tmp_path):
    run = tmp_path / "runs" / "demo"
    shutil.copytree(demo_run, run, ignore=shutil.ignore_patterns("models"))
    table = run / "tables" / "head_ablation.parquet"
    table.write_bytes(table.read_bytes()[:64])
    at = open_app(run.parent)
    assert not at.exception
    assert any("head_ablation is damaged" in w.value for w in at.sidebar.warning)
    overview = show(at, "Overview")
    assert len(overview.dataframe[0].value) > 0
    at.session_state["page"] = "Heads"
    at.run()
    assert not at.exception and "head_ablation.parquet cannot be read" in at.error[0].value
    assert show(at, "Probes").dataframe


def test_the_runs_folder_box_refuses_folders_outside_the_served_root(demo_run):
    at = open_app(demo_run.parent)
    at.sidebar.text_input(key="root").set_value("/").run()
    assert not at.exception
    assert "outside the runs folder this viewer serves" in at.error[0].value and not infos(at)
