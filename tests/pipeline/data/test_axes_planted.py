"""A planted model with one race head and one gender head: head ablation on each axis's twins (pipeline/axes.py)
finds the head of that axis and not the other one (bias-atlas issue #30)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from tiny import make_tiny
from transformers import BertTokenizer

from attribution.ablation import HeadAblation
from attribution.data import AttributionData
from attribution.scores import CounterfactualGap
from pipeline.anatomy import Anatomy
from pipeline.axes import AXES
from pipeline.data import TaskData
from pipeline.models import LoadedModel

RACE_HEAD, GENDER_HEAD = (1, 0), (1, 2)  # (layer, head)
# Small writes keep the readout near-linear. Both heads write the same readout, so where it saturates they interact
# (through LayerNorm and the softmax): with writes of 4.0 and a classifier weight of 1.5, removing the gender head
# moved the race gap by 37% as much as removing the race head did. Here the cross effect is under 3%.
WRITE = 0.25
MALE, FEMALE = ("he", "him", "his"), ("she", "her", "hers")
EUROPEAN = ("brad", "brendan", "geoffrey", "greg")  # race.tsv pairs them with the names below, in order
AFRICAN = ("darnell", "hakim", "jermaine", "kareem")
FILLERS = ("the", "a", "said", "that", "was", "is", "late", "early", "met", "at", "work", "today", "doctor", "nurse",
           "asked", "to", "stay", "wrote", "letter", "told", "came")  # fmt: skip
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *MALE, *FEMALE, *EUROPEAN, *AFRICAN, *FILLERS]
TEMPLATES = ("{n} said that {p} was late", "the doctor met {n} at work and asked {o} to stay",
             "{n} wrote a letter to the nurse that {p} came early")  # fmt: skip


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Small models run on one thread (tests/conftest.py)."""


def _route(anatomy: Anatomy, head: int, read: tuple[int, int], strength: float) -> None:
    """Head ``head`` of layer 1 attends uniformly, reads ``x[read0] - x[read1]`` and writes it to dims 2 / 3."""
    d = anatomy.head_dim
    rows = slice(head * d, (head + 1) * d)
    q, k, v = anatomy.qkv(1)
    for lin in (q, k, v):
        lin.weight[rows] = 0.0
        lin.bias[rows] = 0.0
    v.weight[rows.start, read[0]], v.weight[rows.start, read[1]] = 1.0, -1.0
    out = anatomy.out_proj(1)
    out.weight[:, rows] = 0.0
    out.weight[2, rows.start], out.weight[3, rows.start] = strength, -strength


@torch.no_grad()
def _planted(tokenizer: BertTokenizer) -> LoadedModel:
    """A 3-layer BERT classifier: gender words write dims 0/1, race names dims 6/7 (every other token is 0 there);
    head (1, 2) carries gender and head (1, 0) race to dims 2/3, which alone the pooler and classifier read. Every
    other weight is the tiny model's small random init (distractors)."""
    model = make_tiny("bert", "classifier", seed=1, num_labels=2, vocab_size=len(VOCAB))
    anatomy = Anatomy(model)
    words = anatomy.word_embeddings.weight
    words.zero_()
    words[:, 8:] = torch.randn(words.shape[0], words.shape[1] - 8, generator=torch.Generator().manual_seed(1))
    for group, dims in (((MALE, FEMALE), (0, 1)), ((EUROPEAN, AFRICAN), (6, 7))):
        for sign, members in zip((1.0, -1.0), group):
            for word in members:
                words[tokenizer.convert_tokens_to_ids(word), list(dims)] = torch.tensor([sign, -sign]) * 4.0
    anatomy.embeddings.position_embeddings.weight.zero_()
    anatomy.embeddings.token_type_embeddings.weight.zero_()
    _route(anatomy, GENDER_HEAD[1], (0, 1), WRITE)
    _route(anatomy, RACE_HEAD[1], (6, 7), WRITE)
    pooler = anatomy.base.pooler.dense
    pooler.weight[0] = 0.0
    pooler.weight[0, 2], pooler.weight[0, 3], pooler.bias[0] = 0.5, -0.5, 0.0
    model.classifier.weight[:, 0] = torch.tensor([0.3, -0.3])
    return LoadedModel(model, tokenizer, Anatomy(model), "classifier", True, "planted-race-gender")


@pytest.fixture(scope="module")
def planted() -> tuple[LoadedModel, TaskData, np.ndarray]:
    """The model, 24 texts (each with one race name and one gendered pronoun, all of class 1) and each text's race
    group (1: African-American name), the orientation of the race gap as the gender ids orient the gender gap."""
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(VOCAB)}, do_lower_case=True)
    texts, race = [], []
    for i in range(24):
        names = (EUROPEAN, AFRICAN)[i % 2]
        pronoun = (MALE, FEMALE)[(i // 2) % 2]
        template = TEMPLATES[i % len(TEMPLATES)]
        texts.append(template.format(n=names[i % 4].title(), p=pronoun[0], o=pronoun[1]))
        race.append(i % 2)
    genders = np.array([(i // 2) % 2 for i in range(24)])
    task = TaskData("planted", tuple(texts), np.ones(24, dtype=np.int64), genders, ("a", "b"))
    return _planted(tokenizer), task, np.array(race)


def _effects(loaded: LoadedModel, task: TaskData, axis: str, orientation: np.ndarray) -> pd.Series:
    twins = AXES[axis].twins(task)
    words = {*EUROPEAN, *AFRICAN} if axis == "race" else {*MALE, *FEMALE}
    edits = {
        (a.lower(), b.lower()) for o, t in zip(task.texts, twins.twins.texts) for a, b in zip(o.split(), t.split())
    }
    assert twins.n_left_out == 0 and {a for a, b in edits if a != b} <= words  # only the axis's words change
    data = AttributionData.from_texts(loaded, twins.originals.texts, cf_texts=twins.twins.texts,
                                      labels=twins.originals.labels, genders=orientation[twins.rows],
                                      label_names=task.label_names, name=f"planted-{axis}")  # fmt: skip
    frame = HeadAblation(loaded, CounterfactualGap()).attribute(data, n_boot=0, progress=False)
    rows = frame[(frame.metric == "delta_score") & (frame.unit == "head")]
    return rows.set_index(["layer", "head"])["value"].abs()


@pytest.mark.parametrize(("axis", "carrier", "other"), [("race", RACE_HEAD, GENDER_HEAD),
                                                        ("gender", GENDER_HEAD, RACE_HEAD)])  # fmt: skip
def test_each_axis_finds_its_own_head_not_the_other(planted, axis, carrier, other):
    """Head ablation of the counterfactual gap on the axis's twins: its head first, by 10x; the other head below a
    tenth of it (as tests/attribution/test_planted.py's ``_first_by_far``)."""
    loaded, task, race = planted
    effects = _effects(loaded, task, axis, race if axis == "race" else task.genders)
    assert effects.idxmax() == carrier
    assert effects[carrier] > 10 * effects.drop(carrier).max()
    assert effects[other] < effects[carrier] / 10
