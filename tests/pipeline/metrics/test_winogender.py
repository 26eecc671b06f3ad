"""Tests for pipeline/metrics/winogender.py on a hand-checked case: three occupations of the real templates.

The "hand" preferences are single forward passes of the tiny masked LM on the masked male sentence; the mean per
occupation and Pearson r with the BLS share are then computed here with numpy.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.data import load_winogender, occupation_stats
from pipeline.metrics import winogender_metrics
from pipeline.metrics.winogender import winogender_pairs

OCCUPATIONS = ("technician", "nurse", "engineer")


def _male_minus_female(loaded, sentence: str, start: int, end: int, male: str, female: str) -> float:
    tok = loaded.tokenizer
    ids = tok(sentence[:start] + tok.mask_token + sentence[end:])["input_ids"]
    with torch.no_grad():
        logits = loaded.model(input_ids=torch.tensor([ids])).logits[0, ids.index(tok.mask_token_id)]
    logp = logits.double().log_softmax(-1)
    return (logp[tok.convert_tokens_to_ids(male)] - logp[tok.convert_tokens_to_ids(female)]).item()


def test_preference_share_and_bls_correlation_by_hand(sharp_mlm):
    items = [i for i in load_winogender() if i.occupation in OCCUPATIONS]
    pairs = winogender_pairs(items)
    assert len(pairs) == 12  # 4 templates (2 answers x named / "someone") per occupation
    female_pref = {occ: [] for occ in OCCUPATIONS}
    for m, f in pairs:
        pref = _male_minus_female(sharp_mlm, m.sentence, m.pronoun_start, m.pronoun_end, m.pronoun.lower(),
                                  f.pronoun.lower())  # fmt: skip
        female_pref[m.occupation].append(-pref)
    stats = occupation_stats().set_index("occupation")
    means = np.array([np.mean(female_pref[o]) for o in OCCUPATIONS])
    r = np.corrcoef(means, stats.loc[list(OCCUPATIONS), "bls_pct_female"].to_numpy())[0, 1]
    male_pct = 100 * np.mean(np.concatenate([female_pref[o] for o in OCCUPATIONS]) < 0)
    frame = winogender_metrics(sharp_mlm, items, n_boot=0).set_index("metric")
    assert frame.loc["winogender_bls_r", "value"] == pytest.approx(r, abs=1e-6)
    assert frame.loc["winogender_bls_r", "n"] == 3
    assert frame.loc["winogender_male_pref_pct", "value"] == pytest.approx(male_pct)
    assert frame.loc["winogender_n_skipped", "value"] == 0
