"""Alias of ``bias-atlas`` (:mod:`pipeline.runs.cli`), kept for ``python -m pipeline``."""

import sys

from pipeline.runs.cli import main

sys.exit(main(sys.argv[1:]))
