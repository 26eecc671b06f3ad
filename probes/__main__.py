"""Alias of ``bias-atlas probe`` (:mod:`pipeline.cli.main`), kept for ``python -m probes``."""

import sys

from pipeline.cli.main import main

sys.exit(main(["probe", *sys.argv[1:]]))
