"""Tests for pipeline/metrics/winobias.py (stereotype and skew, de Vassimon Manela et al. 2021) and winogender.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score

from pipeline.data import MALE, load_winobias, load_winobias_all, load_winogender
from pipeline.metrics import stereotype_skew, winobias_metrics, winogender_metrics
from pipeline.metrics.winobias import binary_f1, gender_preferences, giveaway_templates
from pipeline.metrics.winogender import winogender_pairs


def test_stereotype_and_skew_by_hand():
    # Four templates; the masked text is the same in pro and anti, so the predictions repeat.
    # pro:  gold M M F F, pred M M M F -> F1_male = 2*2/(2+3) = 80, F1_female = 2*1/(2+1) = 66.7, accuracy 75
    # anti: gold F F M M, pred M M M F -> F1_male = 2*1/(2+3) = 40, F1_female = 0,              accuracy 25
    is_pro = np.array([1, 1, 1, 1, 0, 0, 0, 0], bool)
    gold_male = np.array([1, 1, 0, 0, 0, 0, 1, 1], bool)
    pred_male = np.array([1, 1, 1, 0, 1, 1, 1, 0], bool)
    stereotype, skew, acc_pro, acc_anti, f1_mp, f1_fp, f1_ma, f1_fa = stereotype_skew(is_pro, gold_male, pred_male)
    assert (f1_mp, f1_fp, f1_ma, f1_fa) == pytest.approx((80, 200 / 3, 40, 0))
    assert (acc_pro, acc_anti) == (75, 25)
    assert stereotype == pytest.approx((abs(80 - 40) + abs(200 / 3 - 0)) / 2)
    assert skew == pytest.approx((abs(80 - 200 / 3) + abs(40 - 0)) / 2)


def test_binary_f1_equals_sklearn():
    rng = np.random.default_rng(0)
    for _ in range(10):
        g, p = rng.random(15) < 0.5, rng.random(15) < 0.3
        assert binary_f1(g, p) == pytest.approx(100 * f1_score(g, p, zero_division=0))


@pytest.fixture(scope="module")
def items():
    return load_winobias(1, "pro", "dev") + load_winobias(1, "anti", "dev")


def _he_minus_she(loaded, text: str, start: int, end: int, male: str, female: str) -> float:
    """log P(male) - log P(female) at the pronoun, from one forward pass over the masked sentence's ids."""
    tok = loaded.tokenizer
    ids = tok(text[:start] + tok.mask_token + text[end:])["input_ids"]
    with torch.no_grad():
        logp = loaded.model(input_ids=torch.tensor([ids])).logits[0, ids.index(tok.mask_token_id)].double()
    logp = logp.log_softmax(-1)
    return (logp[tok.convert_tokens_to_ids(male)] - logp[tok.convert_tokens_to_ids(female)]).item()


def test_giveaway_templates_are_the_authors_42_and_4_more_with_rule_all():
    every = load_winobias_all()
    authors = giveaway_templates(every, "authors")
    assert len(authors) == 42 and sum(k[1] == "test" for k in authors) == 27  # 22 of type 1, 5 of type 2
    assert (1, "dev", 27) in authors  # "... because [he] needed to cut [his] hair."
    wider = giveaway_templates(every, "all")
    assert authors < wider and len(wider - authors) == 4  # two reflexives, two unbracketed "his"
    assert (1, "test", 252) in wider - authors  # "... because [she] was burying [herself] in writing"
    assert giveaway_templates(every, "keep") == set()
    with pytest.raises(ValueError, match="giveaways='some'"):
        giveaway_templates(every, "some")  # type: ignore[arg-type]


def test_flip_scores_the_pro_sentence_and_flips_its_gold_by_hand(tiny_mlm):
    # Type 2 test line 382: the anti file holds another template, so "file" and "flip" differ there.
    pro = [i for i in load_winobias(2, "pro", "test") if i.line in (380, 382, 383)]
    anti = [i for i in load_winobias(2, "anti", "test") if i.line in (380, 382, 383)]
    assert pro[1].text != anti[1].text.replace("him", pro[1].pronoun)
    forms = {380: ("him", "her"), 382: ("him", "her"), 383: ("him", "her")}  # 382: case table, him -> her
    gold = np.array([i.gender == MALE for i in pro])
    pred = np.array([_he_minus_she(tiny_mlm, i.text, i.pronoun_start, i.pronoun_end, *forms[i.line]) > 0 for i in pro])
    want = stereotype_skew(np.r_[[True] * 3, [False] * 3], np.r_[gold, ~gold], np.r_[pred, pred])
    frame = winobias_metrics(tiny_mlm, pro + anti, n_boot=0).set_index(["metric", "subset"])
    assert frame.loc[("winobias_stereotype", "type2"), "value"] == pytest.approx(want[0])
    assert frame.loc[("winobias_skew", "type2"), "value"] == pytest.approx(want[1])
    pro_acc, anti_acc = (
        frame.loc[("winobias_accuracy", "type2-pro"), "value"],
        frame.loc[("winobias_accuracy", "type2-anti"), "value"],
    )
    assert (pro_acc, anti_acc) == pytest.approx((want[2], want[3])) and pro_acc + anti_acc == pytest.approx(100)
    assert frame.loc[("winobias_n_dropped", "type2"), "value"] == 0 and "type1" not in frame.index.levels[1]
    # the anti file's own sentences only under the option's own names
    other = winobias_metrics(tiny_mlm, pro + anti, n_boot=0, anti="file")
    assert set(other.metric) == {m + "_anti_file" for m in frame.index.get_level_values(0)}
    anti_pred = [_he_minus_she(tiny_mlm, i.text, i.pronoun_start, i.pronoun_end, "him", "her") > 0 for i in anti]
    anti_acc = 100 * np.mean(np.array(anti_pred) == np.array([i.gender == MALE for i in anti]))
    rows = other.set_index(["metric", "subset"])
    assert rows.loc[("winobias_accuracy_anti_file", "type2-anti"), "value"] == pytest.approx(anti_acc)


def test_metrics_on_a_few_real_templates_per_type(tiny_mlm):
    both = load_winobias(1, "pro", "test") + load_winobias(1, "anti", "test")
    both += load_winobias(2, "pro", "test") + load_winobias(2, "anti", "test")
    frame = winobias_metrics(tiny_mlm, both, max_examples=4, n_boot=20, seed=0)
    rows = frame.set_index(["metric", "subset"])
    for group, n_drop in (("type1", 22), ("type2", 5)):
        assert rows.loc[("winobias_accuracy", f"{group}-pro"), "n"] == 4
        assert rows.loc[("winobias_accuracy", f"{group}-anti"), "n"] == 4
        assert rows.loc[("winobias_n_skipped", group), "value"] == 0
        assert rows.loc[("winobias_n_dropped", group), ["value", "n"]].tolist() == [n_drop, 396]
        gap = rows.loc[("winobias_accuracy_gap", group), "value"]
        pro, anti = (
            rows.loc[("winobias_accuracy", f"{group}-pro"), "value"],
            rows.loc[("winobias_accuracy", f"{group}-anti"), "value"],
        )
        assert gap == pytest.approx(pro - anti)
        for metric in ("winobias_stereotype", "winobias_skew"):
            assert 0 <= rows.loc[(metric, group), "value"] <= 100
    pooled = winobias_metrics(tiny_mlm, both, max_examples=4, n_boot=0, by_type=False, giveaways="keep")
    assert set(pooled.subset) >= {"all", "all-pro"} and not pooled.subset.str.startswith("type").any()
    assert pooled.metric.str.endswith("_keep_giveaways").all()


def test_candidates_come_from_the_parallel_sentence(tiny_mlm, items):
    # "... and wished [her] happy birthday" has the parallel "... wished [him] ...": compare him with her, not his.
    item = next(i for i in items if i.pronoun == "her" and "birthday" in i.text and i.stereotype == "pro")
    pref = gender_preferences(tiny_mlm, [item.text], [(item.pronoun_start, item.pronoun_end)], [("him", "her")])
    assert pref[0] == pytest.approx(_he_minus_she(tiny_mlm, item.text, item.pronoun_start, item.pronoun_end, "him",
                                                  "her"), abs=1e-6)  # fmt: skip
    one = [i for i in items if i.line == item.line]
    frame = winobias_metrics(tiny_mlm, one, n_boot=0).set_index(["metric", "subset"])
    acc = frame.loc[("winobias_accuracy", "type1-pro-female"), "value"]
    assert acc == (100.0 if pref[0] < 0 else 0.0)


def test_unpaired_items_use_the_case_table_and_an_unpaired_her_is_counted(tiny_mlm):
    pro = [i for i in load_winobias(1, "pro", "dev") if i.line <= 40]
    frame = winobias_metrics(tiny_mlm, pro, n_boot=0).set_index(["metric", "subset"])
    dropped = giveaway_templates(pro)
    kept = [i for i in pro if (i.type, i.split, i.line) not in dropped]
    n_her = sum(i.pronoun.lower() == "her" for i in kept)
    assert n_her > 0 and len(dropped) == 1
    assert frame.loc[("winobias_n_skipped", "type1"), "value"] == n_her
    assert frame.loc[("winobias_accuracy", "type1-pro"), "n"] == len(kept) - n_her
    with pytest.raises(ValueError, match="scores the pro sentences"):
        winobias_metrics(tiny_mlm, load_winobias(1, "anti", "dev")[:3], n_boot=0)


def test_winogender_pairs_and_metrics(tiny_mlm):
    all_items = load_winogender()
    pairs = winogender_pairs(all_items)
    assert len(pairs) == 240 and all(m.gender == "male" and f.gender == "female" for m, f in pairs)
    frame = winogender_metrics(tiny_mlm, all_items, max_examples=24, n_boot=20, seed=0)
    rows = frame.set_index(["metric", "subset"])
    assert rows.loc[("winogender_male_pref_pct", ""), "n"] == 24
    assert rows.loc[("winogender_n_skipped", ""), "value"] == 0
    assert -1 <= rows.loc[("winogender_bls_r", ""), "value"] <= 1
    assert 3 <= rows.loc[("winogender_bls_r", ""), "n"] <= 24
