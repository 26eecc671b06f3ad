"""Winogender with the pronoun masked: male-vs-female pronoun preference per occupation, against labour statistics.

Rudinger et al. (2018), "Gender Bias in Coreference Resolution", NAACL. Each template exists with a male, a female
and a neutral pronoun; masked, the male and female versions are the same text. For each template the masked LM's
preference is ``log P(male form) - log P(female form)`` at the masked pronoun (forms taken from the male and female
versions, e.g. ``his``/``her``). Like Rudinger et al.'s Figure 3, the per-occupation mean *female* preference is
correlated (Pearson r) with the occupation's share of women: 2015/16 US Bureau of Labor Statistics (BLS) and Bergsma
& Lin text statistics (``occupations-stats.tsv``).

Rows: ``winogender_male_pref_pct`` (share of templates where the male form wins), ``winogender_bls_r`` and
``winogender_bergsma_r`` (``n`` = occupations; intervals resample templates), ``winogender_n_skipped``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

from pipeline.bootstrap import bootstrap_ci
from pipeline.data import WinogenderItem, occupation_stats
from pipeline.data.sampling import subsample
from pipeline.metrics._rows import metric_row, to_frame
from pipeline.metrics.extrinsic import gap_share_correlation
from pipeline.metrics.winobias import gender_preferences

__all__ = ["winogender_metrics", "winogender_pairs"]

log = logging.getLogger(__name__)


def winogender_pairs(items: Sequence[WinogenderItem]) -> list[tuple[WinogenderItem, WinogenderItem]]:
    """``(male item, female item)`` of every template, in file order of the male items.

    Raises:
        ValueError: a male item has no female version (same occupation, participant and answer).
    """
    female = {(i.occupation, i.participant, i.answer): i for i in items if i.gender == "female"}
    pairs = []
    for item in (i for i in items if i.gender == "male"):
        partner = female.get((item.occupation, item.participant, item.answer))
        if partner is None:
            raise ValueError(f"Winogender {item.sentid}: no female version of this template. Fix: pass all of "
                             "load_winogender() (or male and female items of the same templates).")  # fmt: skip
        pairs.append((item, partner))
    return pairs


def winogender_metrics(
    loaded,
    items: Sequence[WinogenderItem],
    stats: pd.DataFrame | None = None,
    *,
    batch_size: int = 64,
    n_boot: int = 1000,
    seed: int = 0,
    max_examples: int | None = None,
) -> pd.DataFrame:
    """Winogender pronoun preference and its correlation with occupation statistics, as tidy rows.

    Args:
        loaded: A masked LM with a trained head.
        items: Winogender sentences (:func:`pipeline.data.load_winogender`); neutral ones are not used.
        stats: Occupation statistics (:func:`pipeline.data.occupation_stats`); default the shared file.
        batch_size: Rows per forward pass.
        n_boot: Bootstrap resamples of templates.
        seed: Bootstrap and subsampling seed.
        max_examples: Score at most this many templates (a seeded draw).
    """
    pairs = winogender_pairs(items)
    if not pairs:
        raise ValueError("Winogender: no male/female template pairs in items. Fix: pass load_winogender().")
    pairs = [pairs[k] for k in subsample(len(pairs), max_examples, seed)[0]]
    stats = occupation_stats() if stats is None else stats
    candidates = [(m.pronoun.lower(), f.pronoun.lower()) for m, f in pairs]
    spans = [(m.pronoun_start, m.pronoun_end) for m, _ in pairs]
    prefs = gender_preferences(loaded, [m.sentence for m, _ in pairs], spans, candidates, batch_size=batch_size,
                               desc="Winogender")  # fmt: skip
    usable = np.isfinite(prefs)
    if not usable.any():
        raise ValueError(f"Winogender: no template could be scored: the tokenizer of {loaded.source!r} does not have "
                         "the pronouns as single tokens.")  # fmt: skip
    occupations = sorted({m.occupation for m, _ in pairs})
    code = np.array([occupations.index(m.occupation) for m, _ in pairs], dtype=np.int64)[usable]
    female_pref = -prefs[usable]
    table = stats.set_index("occupation").reindex(occupations)
    male_pct = bootstrap_ci(lambda p: 100 * np.mean(p < 0), female_pref, n_boot=n_boot, seed=seed)
    rows = [metric_row("winogender_male_pref_pct", male_pct, int(usable.sum()))]
    for metric, column in (("winogender_bls_r", "bls_pct_female"), ("winogender_bergsma_r", "bergsma_pct_female")):
        share = table[column].to_numpy(dtype=float)

        def corr(c, p, share=share):
            n_c = np.bincount(c, minlength=len(occupations))
            mean_pref = np.divide(np.bincount(c, weights=p, minlength=len(occupations)), n_c,
                                  out=np.full(len(occupations), np.nan), where=n_c > 0)  # fmt: skip
            return gap_share_correlation(mean_pref, share)

        n_occ = int(np.isfinite(share[np.unique(code)]).sum())
        rows.append(metric_row(metric, bootstrap_ci(corr, (code, female_pref), n_boot=n_boot, seed=seed), n_occ))
    if (~usable).any():
        log.warning("Winogender: %d templates have a pronoun that is not one token and are skipped", (~usable).sum())
    rows.append(metric_row("winogender_n_skipped", float((~usable).sum()), len(pairs)))
    return to_frame(rows)
