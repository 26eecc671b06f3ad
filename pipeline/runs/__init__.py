"""The orchestration floor: a run config becomes a plan of variants, built and measured in cached stages, written to
a run folder that the findings, the report, the viewer and the figures read.

- :mod:`.config`: the run config (composes the settings each concept owns).
- :mod:`.plan`: the variant plan (names from :mod:`pipeline.variants`).
- :mod:`.stages`: cached, content-hashed stages and units, atomic writes; :mod:`.manifest`: the manifest and lock.
- :mod:`.build`, :mod:`.task_metrics`, :mod:`.stage_bias_metrics`, :mod:`.stage_attribution`,
  :mod:`.stage_probes`: the measuring stages; :mod:`.run` lists them in order and runs them.
- :mod:`.executors`: local and Ray.
- :mod:`.tables`: the table registry; :mod:`.runfolder`: the run-folder reader.

The floors above (:mod:`pipeline.findings`, the readers, :mod:`pipeline.cli`) import it; it imports none of them.
"""
