"""The findings floor: statistics over a run folder's tables (q-values, paired comparisons, bias-carrying units,
concentration, stability, encoding, remedies) and the ``findings`` stage that writes them (docs/FINDINGS.md).

Above the orchestration (it reads the run folder), below the readers (the report, the viewer and the figures read
its tables)."""
