"""Alias of ``bias-atlas`` (:mod:`pipeline.cli.main`), kept for ``python -m attribution``."""

import sys

from pipeline.cli.main import main

sys.exit(main(sys.argv[1:]))
