"""Alias of ``bias-atlas probe`` (:mod:`pipeline.runs.cli`), kept for ``python -m probes``."""

import sys

from pipeline.runs.cli import main

sys.exit(main(["probe", *sys.argv[1:]]))
