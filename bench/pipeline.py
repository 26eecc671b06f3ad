"""Where the time of a pipeline run goes: wall time per stage and per unit (variant), read from its manifest.

    bias-atlas run configs/demo.toml        # time the whole run with `time`
    python -m bench.pipeline runs/demo              # then break it down

Each stage records its own seconds and each cached unit (one variant in one stage) its seconds in
``manifest.json``; a unit served from the cache costs ~0 s and is marked ``cached``. The shares are of the summed
stage time of the last execution of each stage (model loading inside a unit is part of that unit).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd


def stage_table(manifest: dict) -> pd.DataFrame:
    """One row per stage: seconds, share of the total, units run and cached in the last execution."""
    rows = []
    for name, record in manifest["stages"].items():
        units = record.get("units", {})
        rows.append(
            {
                "stage": name,
                "seconds": record.get("seconds", float("nan")),
                "last": record.get("last", ""),
                "units": len(units),
                "executions": record.get("executions", 0),
            }
        )
    frame = pd.DataFrame(rows)
    frame["share"] = frame["seconds"] / frame["seconds"].sum()
    return frame


def unit_table(manifest: dict) -> pd.DataFrame:
    """One row per (stage, unit) with its recorded seconds, slowest first."""
    rows = [
        {"stage": stage, "unit": unit, "seconds": record.get("seconds", float("nan"))}
        for stage, srecord in manifest["stages"].items()
        for unit, record in srecord.get("units", {}).items()
    ]
    return pd.DataFrame(rows).sort_values("seconds", ascending=False, ignore_index=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path, help="a run folder (holds manifest.json)")
    parser.add_argument("--top", type=int, default=12, help="slowest units to list")
    args = parser.parse_args()
    path = args.run_dir / "manifest.json"
    if not path.is_file():
        raise SystemExit(f"{path} does not exist; give a run folder written by `bias-atlas run`.")
    manifest = json.loads(path.read_text())
    stages = stage_table(manifest)
    print(
        f"run {manifest.get('name')}: {stages['seconds'].sum():.0f} s in stages "
        f"({manifest.get('processes', 1)} process(es), torch {manifest.get('versions', {}).get('torch')})"
    )
    print(stages.to_string(index=False, float_format="{:.2f}".format))
    print()
    print(unit_table(manifest).head(args.top).to_string(index=False, float_format="{:.1f}".format))


if __name__ == "__main__":
    main()
