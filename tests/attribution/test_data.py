"""AttributionData: tokenised once, twins aligned by position, masked pronouns, SEAT sets, slicing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attribution.data import AttributionData
from pipeline.data import TaskData, load_seat, load_winobias, load_winogender


def test_task_twins_share_padding_and_unchanged_texts_are_dropped(tiny_loaded, tiny_task):
    loaded = tiny_loaded()
    texts = tiny_task.texts + ("the doctor was late",)  # no gendered word: no counterfactual signal
    task = TaskData("t", texts, np.r_[tiny_task.labels, 0], np.r_[tiny_task.genders, 0], tiny_task.label_names)
    data = AttributionData.from_task(loaded, task)
    assert len(data) == len(tiny_task) and data.texts == tiny_task.texts
    assert data.cf_input_ids.shape == data.input_ids.shape
    tok = loaded.tokenizer
    assert tok.convert_ids_to_tokens(data.input_ids[1].tolist())[1] == "she"
    assert tok.convert_ids_to_tokens(data.cf_input_ids[1].tolist())[1] == "he"
    assert torch.equal(data.labels, torch.tensor(np.array(tiny_task.labels)))


def test_batch_is_trimmed_and_swapped_exchanges_views(tiny_loaded, tiny_task):
    data = AttributionData.from_task(tiny_loaded(), tiny_task)
    batch = data.batch(torch.tensor([0, 5]))
    longest = int(torch.maximum(data.attention_mask[[0, 5]].sum(1), data.cf_attention_mask[[0, 5]].sum(1)).max())
    assert batch.input_ids.shape == (2, longest) and batch.attention_mask[:, -1].any()
    swapped = batch.swapped()
    assert torch.equal(swapped.input_ids, batch.cf_input_ids) and torch.equal(swapped.cf_input_ids, batch.input_ids)
    assert torch.equal(swapped.genders, 1 - batch.genders)
    twice = batch.repeat(3)
    assert torch.equal(twice.index, torch.tensor([0, 5] * 3))


def test_aligned_drops_pairs_whose_length_changes(tiny_loaded):
    loaded = tiny_loaded()
    data = AttributionData.from_texts(loaded, ["he was late", "he came"], cf_texts=["she was late", "she came home"])
    aligned, dropped = data.aligned()
    assert dropped == 1 and aligned.texts == ("he was late",)
    with pytest.raises(ValueError, match="no counterfactual twins"):
        AttributionData.from_texts(loaded, ["a"]).aligned()


def test_pronouns_are_masked_with_case_matched_pairs(minilm):
    items = [i for i in load_winobias(1, "pro", "dev") if i.pronoun.lower() in ("he", "her", "his")][:20]
    items += [i for i in load_winogender() if i.gender == "neutral"][:2]
    data = AttributionData.from_pronouns(minilm, items, name="wb")
    tok = minilm.tokenizer
    assert (data.input_ids[torch.arange(len(data)), data.target_pos] == tok.mask_token_id).all()
    pairs = {tuple(tok.convert_ids_to_tokens(p.tolist())) for p in data.pronoun_ids}
    assert ("he", "she") in pairs and ("his", "her") in pairs
    by_text = {
        d.split("[MASK]")[1].split()[0]: tuple(tok.convert_ids_to_tokens(p.tolist()))
        for d, p in zip(data.texts, data.pronoun_ids)
    }
    assert by_text["birthday."] == ("his", "her") and by_text["idea"] == ("his", "her")
    assert data.genders[-1] == -1 and tuple(tok.convert_ids_to_tokens(data.pronoun_ids[-1].tolist())) == ("he", "she")


def test_seat_sets_are_grouped(minilm):
    test = load_seat("weat6")
    data = AttributionData.from_seat(minilm, test)
    sizes = [len(test.targ1), len(test.targ2), len(test.attr1), len(test.attr2)]
    assert torch.bincount(data.groups).tolist() == sizes and data.group_names[0] == test.targ1_name


def test_empty_data_is_a_clear_error(tiny_loaded):
    with pytest.raises(ValueError, match="empty"):
        AttributionData.from_texts(tiny_loaded(), [])
    with pytest.raises(ValueError, match="empty"):
        AttributionData.from_task(tiny_loaded(), TaskData("e", (), np.zeros(0, int), np.zeros(0, int), ("a",)))
    with pytest.raises(ValueError, match="no items"):
        AttributionData.from_pronouns(tiny_loaded(), [])
