"""The MLM head a variant keeps beside its classifier (pipeline/mlm_head.py) and the build operations that save it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hub_layouts import WORDS, tinybert_layout
from tiny import make_tiny

from pipeline.anatomy import Anatomy
from pipeline.data import FEMALE, MALE, TaskData
from pipeline.mlm_head import MlmHead, describe_mlm_head, mlm_head_state, read_mlm_head
from pipeline.models import LoadedModel, load_model
from pipeline.runs.build import build_step, save_model
from pipeline.runs.config import config_from_dict
from pipeline.runs.plan import Step
from pipeline.runs.task_metrics import task_metric_rows
from pipeline.train import make_accelerator

LABELS = ("nurse", "doctor", "chef")


@pytest.mark.parametrize("family", ["bert", "distilbert"])
def test_a_saved_mlm_head_reloads_exactly_and_the_classifier_ignores_it(family, minilm, tmp_path):
    mlm = make_tiny(family, "mlm", seed=3)
    classifier = make_tiny(family, "classifier", seed=4)
    classifier.base_model.load_state_dict(mlm.base_model.state_dict(), strict=False)  # same encoder
    loaded = LoadedModel(classifier, minilm.tokenizer, Anatomy(classifier), "classifier", True, "tiny")
    head = MlmHead(mlm_head_state(mlm), "checkpoint").after("fine-tuned")
    assert not any(k.startswith(f"{mlm.base_model_prefix}.") for k in head.state)  # tied decoder left out
    save_model(loaded, tmp_path, head)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["mlm_head"] == {"origin": "checkpoint", "since": ["fine-tuned"]} and config["task_head_trained"]

    ids = torch.randint(5, 120, (2, 7))
    back = load_model(tmp_path, head="mlm")
    assert back.head_trained and describe_mlm_head(back.model.config) == "pretrained, encoder fine-tuned since"
    torch.testing.assert_close(back.model(input_ids=ids).logits, mlm(input_ids=ids).logits)
    same = load_model(tmp_path, head="classifier")
    torch.testing.assert_close(same.model(input_ids=ids).logits, classifier(input_ids=ids).logits)


def test_a_variant_without_mlm_head_says_why(tmp_path):
    assert read_mlm_head("minilm") == (None, "its source (minilm) has no MLM head")
    save_model(load_model("minilm", head="classifier", num_labels=2), tmp_path, no_mlm_head="narrower than the teacher")
    head, reason = read_mlm_head(tmp_path)
    assert head is None and reason == "narrower than the teacher"
    assert describe_mlm_head(load_model(tmp_path, head="classifier").model.config) == ""


def _toy_task() -> TaskData:
    rng = np.random.default_rng(0)
    texts = tuple(" ".join(rng.choice(WORDS, 6)) for _ in range(24))
    labels = np.arange(24) % 3
    genders = np.where(np.arange(24) % 2, FEMALE, MALE)
    return TaskData("toy", texts, labels, genders, LABELS)


@pytest.mark.parametrize(
    ("op", "variant", "origin"),
    [
        ("mlm", "teacher-mlm", "masked-LM fine-tuned together with this encoder"),
        ("distil", "distil-ft_none", "trained by general distillation together with this encoder"),
    ],
)
def test_mlm_built_variants_are_saved_as_classifiers_with_the_task_labels_and_their_mlm_head(
    op, variant, origin, tmp_path, one_torch_thread
):
    """Issue #20 item 4: general distillation from a teacher with an MLM head (and masked-LM fine-tuning) gave a
    BertForMaskedLM folder that reloaded as a 2-class classifier and crashed task_metrics on 3 classes."""
    teacher = tmp_path / "teacher"
    tinybert_layout(teacher)
    cfg = config_from_dict(
        {
            "run": {"name": "t", "out_dir": str(tmp_path), "device": "cpu"},
            "teacher": {"source": str(teacher)},
            "finetune": {"batch_size": 8, "mlm_domain": op == "mlm"},
            "compress": {"distil": {"orders": ["none"], "epochs": 1, "batch_size": 8}},
        }
    )
    data = _toy_task()
    step = Step(variant, 0, op, source=str(teacher), params={"mixup": False} if op == "distil" else {})
    built = build_step(
        step, cfg=cfg, train=data, dev=data, parent=None, parent_dir=None, accelerator=make_accelerator("cpu")
    )
    assert built.model.head == "classifier" and not built.model.head_trained and built.mlm_head.joint
    folder = tmp_path / variant
    save_model(built.to_save, folder, built.mlm_head, no_mlm_head=built.no_mlm_head)

    classifier = load_model(folder, head="classifier")
    assert classifier.label_names == LABELS and classifier.model.config.task_head_trained is False
    rows, preds = task_metric_rows(
        classifier, data, folder=folder, batch_size=8, max_length=16, latency_batch_sizes=(1,), latency_repeats=1
    )
    assert len(preds) == len(data) and {r["metric"] for r in rows} >= {"accuracy", "head_trained"}
    mlm = load_model(folder, head="mlm")
    assert mlm.head_trained and describe_mlm_head(mlm.model.config) == origin
    for key, tensor in built.mlm_head.state.items():
        torch.testing.assert_close(mlm.model.state_dict()[key], tensor)
    if op == "distil":
        assert classifier.anatomy.n_layers == 2 and classifier.model.config.layer_map == [0, 2]
