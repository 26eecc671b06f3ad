"""Alias of ``bias-atlas`` (:mod:`pipeline.cli.main`), kept for ``python -m pipeline``."""

import sys

from pipeline.cli.main import main

sys.exit(main(sys.argv[1:]))
