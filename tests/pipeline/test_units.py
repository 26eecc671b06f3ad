"""Analysis units (pipeline/runs/units.py): one variant an analysis cannot run on is a skipped row, not a dead run."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.runs.plan import Step
from pipeline.runs.stages import Manifest, RunInputs, StageContext
from pipeline.runs.units import per_variant
from pipeline.schema import SchemaError, tidy
from probes.config import ProbeConfig

STEPS = [Step("teacher-ft", 0, "finetune"), Step("distil-ft_none@balanced", 0, "distil")]


def _ctx(tmp_path) -> StageContext:
    manifest = Manifest(tmp_path / "manifest.json")
    for step in STEPS:
        manifest.unit("build", step.key)["hash"] = f"hash of {step.key}"
    return StageContext(None, tmp_path, manifest, run=RunInputs(fingerprint="data"), stage="probes", code_hash="code")


def _analyse(error: Exception):
    def analyse(step: Step):
        if step.variant.endswith("@balanced"):
            raise error
        return {
            "probes_layers": tidy(
                [{"metric": "probe_accuracy", "value": 0.75, "subset": "gender"}], variant=step.variant
            )
        }

    return analyse


def test_an_expected_error_becomes_a_skipped_row_and_a_manifest_entry_and_the_run_goes_on(tmp_path):
    ctx = _ctx(tmp_path)
    error = ValueError("rebalance_genders('bios'): no class has both women and men, nothing is left.")
    tables = per_variant(ctx, STEPS, "probes", ProbeConfig(), _analyse(error), skip_table="probes_layers")
    layers = tables["probes_layers"].set_index("variant")
    assert layers.loc["teacher-ft", "value"] == 0.75 and layers.loc["teacher-ft", "skipped"] == ""
    skipped = layers.loc["distil-ft_none@balanced"]
    assert np.isnan(skipped["value"]) and skipped["metric"] == "probes"
    assert skipped["skipped"] == f"ValueError: {error}"
    entry = {"stage": "probes", "variant": "distil-ft_none@balanced", "seed": 0, "reason": f"ValueError: {error}"}
    assert ctx.manifest.data["skipped"] == [entry]

    def never(step):
        raise AssertionError("a cached unit ran again")

    again = per_variant(ctx, STEPS, "probes", ProbeConfig(), never, skip_table="probes_layers")
    assert again["probes_layers"].equals(tables["probes_layers"]) and ctx.manifest.data["skipped"] == [entry]


@pytest.mark.parametrize("error", [TypeError("a bug"), IndexError("index 2 is out of bounds"), SchemaError("bad")])
def test_programming_errors_still_end_the_run(tmp_path, error):
    with pytest.raises(type(error)):
        per_variant(_ctx(tmp_path), STEPS, "probes", ProbeConfig(), _analyse(error), skip_table="probes_layers")
