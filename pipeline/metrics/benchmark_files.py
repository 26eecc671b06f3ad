"""The benchmark files each bias-metric family reads, and their content hashes (what a cached result depends on).

A run's cache key for the ``bias_metrics`` stage and its units includes :func:`benchmark_hashes`: the sha256 of
every file the configured families read under the data root (SEAT's gender tests of the configured form,
CrowS-Pairs, StereoSet, WinoBias, Winogender, the swap lists behind the counterfactual twins, and the WinoBias dev
sentences of the MLM-head check), so an edited benchmark file recomputes exactly the results that read it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from pipeline.data.paths import data_root
from pipeline.data.seat import GENDER_SEAT_TESTS
from pipeline.metrics.config import BiasMetricsConfig
from pipeline.metrics.registry import FAMILIES

__all__ = ["SWAP_LISTS", "benchmark_hashes", "files_hashes"]

SWAP_LISTS = ("winobias/generalized_swaps.txt", "winobias/extra_gendered_words.txt")  # GenderSwapper.from_winobias
_WINOBIAS_DEV = tuple(f"winobias/{s}_stereotyped_type{t}.txt.dev" for t in (1, 2) for s in ("pro", "anti"))


def _seat(cfg: BiasMetricsConfig) -> tuple[str, ...]:
    prefixes = {"word": ("",), "sentence": ("sent-",), "both": ("", "sent-")}[cfg.seat_form]
    return tuple(f"seat/{p}{name}.jsonl" for p in prefixes for name in GENDER_SEAT_TESTS)


def _winobias(cfg: BiasMetricsConfig) -> tuple[str, ...]:
    splits = ("dev", "test") if cfg.winobias_split == "both" else (cfg.winobias_split,)
    return tuple(f"winobias/{s}_stereotyped_type{t}.txt.{sp}" for t in (1, 2) for sp in splits for s in ("pro", "anti"))


# The files each built-in family reads (relative to the data root; the record's ``files``,
# pipeline.metrics.registry); the MLM families also read the MLM-head check's sentences (the WinoBias dev files).
def counterfactual_files(cfg: BiasMetricsConfig) -> tuple[str, ...]:
    return SWAP_LISTS


def seat_files(cfg: BiasMetricsConfig) -> tuple[str, ...]:
    return _seat(cfg)


def crows_files(cfg: BiasMetricsConfig) -> tuple[str, ...]:
    return ("crows_pairs/crows_pairs_anonymized.csv", *_WINOBIAS_DEV)


def stereoset_files(cfg: BiasMetricsConfig) -> tuple[str, ...]:
    return ("stereoset/intrasentence_stereo_set.csv", *_WINOBIAS_DEV)


def winobias_files(cfg: BiasMetricsConfig) -> tuple[str, ...]:
    return (*_winobias(cfg), *_WINOBIAS_DEV)


def winogender_files(cfg: BiasMetricsConfig) -> tuple[str, ...]:
    return ("winogender/all_sentences.tsv", "winogender/occupations-stats.tsv", *_WINOBIAS_DEV)


def files_hashes(root: Path, names: Iterable[str]) -> dict[str, str]:
    """``{name: sha256 of root/name}`` for each name (``"missing"`` for a file that is not there)."""
    out = {}
    for name in sorted(set(names)):
        path = Path(root) / name
        out[name] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "missing"
    return out


def benchmark_hashes(cfg: BiasMetricsConfig) -> dict[str, str]:
    """Content hashes of every benchmark file the families named in ``cfg.metrics`` read (under ``cfg.data_root``)."""
    names = [name for family in cfg.metrics for name in FAMILIES[family].file_names(cfg)]
    return files_hashes(data_root(cfg.data_root), names) if names else {}
