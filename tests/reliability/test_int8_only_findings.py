"""Attribution on an int8 model only: its gradient methods leave skipped rows, the causal ones real ones. The findings
read what there is (no ``KeyError: 'complete'``, the attack of issue 27) and say nothing about the skipped methods."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.findings.bias_units import bias_units
from pipeline.findings.compute import FindingsConfig
from pipeline.findings.structure import agreement_table, concentration_table, stability_table

VARIANT = "int8-ft_before"


def _skipped(table: str) -> pd.DataFrame:
    return pd.DataFrame([{"variant": VARIANT, "seed": 0, "unit": "model", "layer": -1, "head": -1, "metric": table,
                          "value": np.nan, "skipped": "int8 model: no gradients"}])  # fmt: skip


def _ablation() -> pd.DataFrame:
    rows = [{"variant": VARIANT, "seed": 0, "unit": "head", "layer": 0, "head": h, "metric": "delta_score",
             "mode": "single", "value": 0.01 * h, "ci_low": 0.0, "ci_high": 0.02, "p": 0.5, "n": 12,
             "score": "cf_skew_gap"} for h in range(4)]  # fmt: skip
    rows.append({"variant": VARIANT, "seed": 0, "unit": "model", "layer": -1, "head": -1, "metric": "intact_score",
                 "mode": "single", "value": 0.02, "ci_low": 0.01, "ci_high": 0.03, "p": 0.01, "n": 12,
                 "score": "cf_skew_gap"})  # fmt: skip
    return pd.DataFrame(rows)


def test_findings_of_an_int8_only_attribution_read_the_causal_rows():
    tables = {"head_ablation": _ablation(), **{t: _skipped(t) for t in ("head_importance", "head_ig", "neuron_ig")}}
    cfg = FindingsConfig()
    units = bias_units(tables, cfg)
    assert set(units["method"]) == {"ablation"} and units["complete"].all() and len(units) == 4
    assert not units["carries"].any()  # p = 0.5 everywhere: nothing is flagged
    assert set(concentration_table(tables, cfg)["method"]) == {"ablation"}
    assert agreement_table(tables, cfg).empty and stability_table(tables, cfg).empty  # one method, one seed
