"""Alias of ``bias-atlas metrics`` (:mod:`pipeline.runs.cli`), kept for ``python -m pipeline.metrics``."""

import sys

from pipeline.runs.cli import main

sys.exit(main(["metrics", *sys.argv[1:]]))
