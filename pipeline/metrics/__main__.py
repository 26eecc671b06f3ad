"""Alias of ``bias-atlas metrics`` (:mod:`pipeline.cli.main`), kept for ``python -m pipeline.metrics``."""

import sys

from pipeline.cli.main import main

sys.exit(main(["metrics", *sys.argv[1:]]))
