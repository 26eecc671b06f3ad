"""The orchestration floor (DESIGN.md section 2): a run config becomes a plan of variants, built and analysed in
cached stages, written to a run folder that the viewer, the figures and the report read.

- :mod:`.config`: the run config (composes the settings each concept owns).
- :mod:`.plan`: the variant plan (names from :mod:`pipeline.variants`).
- :mod:`.stages`: cached, content-hashed stages and units, atomic writes, the manifest.
- :mod:`.build`, :mod:`.task_metrics`, :mod:`.stage_bias_metrics`, :mod:`.stage_attribution`,
  :mod:`.stage_probes`: the stages; :mod:`.run` lists them in order and runs them.
- :mod:`.tables`: the table registry; :mod:`.runfolder`: the run-folder reader; :mod:`.figures`: figures.
- :mod:`.cli`: the ``bias-atlas`` command line.

This is the only package that imports :mod:`attribution` and :mod:`probes`; neither imports it.
"""
