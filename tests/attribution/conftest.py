"""Fixtures for the attribution tests: tiny random models with a real word-level tokenizer, and tiny task data.

The tiny models of ``tests/tiny.py`` have a 120-token vocabulary; a BERT word-piece tokenizer over 120 real words
(pronouns, gendered nouns, names, occupations, fillers) lets the attribution data be built from text, with the
real gender swapper, exactly as for a hub model.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny import make_tiny
from transformers import BertTokenizer

from attribution.data import AttributionData
from pipeline.anatomy import Anatomy
from pipeline.data import TaskData
from pipeline.models import LoadedModel

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
GENDERED = ["he", "she", "him", "her", "his", "hers", "himself", "herself", "man", "woman", "mr", "mrs",
            "john", "mary", "father", "mother", "son", "daughter", "brother", "sister", "boy", "girl"]  # fmt: skip
OCCUPATIONS = ["doctor", "nurse", "engineer", "teacher", "lawyer", "cook", "pilot", "writer"]
FILLERS = ["the", "a", "said", "that", "was", "is", "late", "early", "because", "car", "broke", "and", "to", "of",
           "in", "at", "work", "home", "today", "very", "good", "bad", "new", "old", "day", "night", "went", "came",
           "saw", "met", "with", "for", "on", "by", "it", "this", "they", "them", "their", "who", "asked", "told",
           "stay", "leave", "help", "call", "wrote", "read", "book", "letter", "city", "town", "team", "friend",
           "patient", "client", "office", "store", "school", "house", "busy", "happy", "tired", "ready", "again",
           "often", "never", "always", "soon", "then", "here", "there", "long", "short", "year", "week", "hour",
           "room", "door", "table", "phone", "plan", "idea", "job", "task"]  # fmt: skip
VOCAB = (SPECIALS + GENDERED + OCCUPATIONS + FILLERS)[:120]


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Every test here runs its small models on one thread (``one_torch_thread`` in tests/conftest.py)."""


def make_tokenizer() -> BertTokenizer:
    """A lower-casing word-level BERT tokenizer over :data:`VOCAB` (120 ids, as the tiny models)."""
    assert len(VOCAB) == 120 and len(set(VOCAB)) == 120
    return BertTokenizer(vocab={word: i for i, word in enumerate(VOCAB)}, do_lower_case=True)


@pytest.fixture(scope="session")
def tiny_tokenizer() -> BertTokenizer:
    return make_tokenizer()


@pytest.fixture(scope="session")
def tiny_loaded(tiny_tokenizer):
    """Factory: ``tiny_loaded(family, head, **config_overrides)`` -> a :class:`LoadedModel` of a tiny model.

    Weights are drawn with std 0.2 (not BERT's 0.02): with 0.02 a 32-wide random model outputs near-uniform
    probabilities and every attribution is ~1e-6, which would make 1e-5 equality tests vacuous.
    """

    def build(family: str = "bert", head: str = "classifier", *, seed: int = 0, **overrides) -> LoadedModel:
        overrides.setdefault("initializer_range", 0.2)
        model = make_tiny(family, head, seed=seed, **overrides)
        return LoadedModel(model, tiny_tokenizer, Anatomy(model), head, True, f"tiny-{family}-{head}")

    return build


TEMPLATES = [
    "the {o} said that {p} was late", "{p} asked the {o} to stay", "the {o} met {n} at work today",
    "{n} is a good {o} and {p} is busy", "the {o} told {n} that {p} came early", "{p} wrote a letter to the {o}",
]  # fmt: skip


@pytest.fixture(scope="session")
def tiny_task() -> TaskData:
    """24 texts with gendered words, 3 classes (occupation groups), genders from the pronoun."""
    rng = np.random.default_rng(0)
    texts, labels, genders = [], [], []
    for i in range(24):
        gender = i % 2
        texts.append(
            TEMPLATES[i % len(TEMPLATES)].format(
                o=OCCUPATIONS[rng.integers(len(OCCUPATIONS))], p=("he", "she")[gender], n=("john", "mary")[gender]
            )
        )
        labels.append(int(rng.integers(3)))
        genders.append(gender)
    return TaskData("tiny", tuple(texts), np.array(labels), np.array(genders), ("a", "b", "c"))


# ---- the planted-structure model -----------------------------------------------------------------------------
PLANTED_HEAD = (1, 2)  # (layer, head) that carries gender to the prediction
SUPPRESSOR_HEAD = (1, 3)  # with ``suppressor=True``: writes the opposite of the planted head, half as strong
PLANTED_NEURONS = (5, 17, 30)  # FFN neurons of layer 1 that carry it on
SCALE = 1.5  # classifier weight on the planted feature: p(class | gender) stays away from 0 and 1
MALE_WORDS = ("he", "him", "his", "himself", "man", "mr", "john", "father", "son", "brother", "boy")
FEMALE_WORDS = ("she", "her", "hers", "herself", "woman", "mrs", "mary", "mother", "daughter", "sister", "girl")


@torch.no_grad()
def build_planted(tokenizer, *, suppressor: bool = False) -> LoadedModel:
    """A 3-layer BERT classifier whose only route from gender to the prediction is head (1, 2), then neurons
    (1, 5/17/30), set by hand on top of the tiny model's small random weights (which stay, as distractors).

    Residual dimensions: 0/1 hold the gender of gendered words (+a/-a for male, -a/+a for female words; every
    other token has equal values there, so ``x0 - x1`` is pure gender); head (1, 2) attends uniformly (zero
    query/key), reads ``x0 - x1`` into its value and writes it to dims 2/3; the planted neurons read ``x2 - x3``
    through a GELU and write dims 4/5; the pooler and classifier read only ``x4 - x5``. Every other weight is the
    N(0, 0.02) init, so other heads and neurons can only leak gender at second order. With ``suppressor``, head
    (1, 3) reads the same ``x0 - x1`` and writes it to dims 2/3 with the opposite sign at half the strength (the
    planted head's write halved too, out of saturation): it suppresses part of the bias, so removing it makes the
    model *more* biased.
    """
    model = make_tiny("bert", "classifier", seed=1, num_labels=2)
    anatomy = Anatomy(model)
    g = torch.Generator().manual_seed(1)
    words = anatomy.word_embeddings.weight
    words.zero_()
    words[:, 8:] = torch.randn(words.shape[0], words.shape[1] - 8, generator=g)  # content in dims 8..31
    for word in MALE_WORDS + FEMALE_WORDS:
        sign = 1.0 if word in MALE_WORDS else -1.0
        words[tokenizer.convert_tokens_to_ids(word), :2] = torch.tensor([sign, -sign]) * 4.0
    anatomy.embeddings.position_embeddings.weight.zero_()
    anatomy.embeddings.token_type_embeddings.weight.zero_()
    layer, head = PLANTED_HEAD
    d = anatomy.head_dim
    q, k, v = anatomy.qkv(layer)
    rows = slice(head * d, (head + 1) * d)
    for lin in (q, k, v):
        lin.weight[rows] = 0.0
        lin.bias[rows] = 0.0
    v.weight[head * d, 0], v.weight[head * d, 1] = 1.0, -1.0  # value dim 0 = x0 - x1
    out = anatomy.out_proj(layer)
    out.weight[:, rows] = 0.0
    strength = 3.0 if suppressor else 6.0  # with a suppressor, out of saturation so that both heads matter
    out.weight[2, head * d], out.weight[3, head * d] = strength, -strength  # -> dims 2/3
    if suppressor:
        other = slice(SUPPRESSOR_HEAD[1] * d, (SUPPRESSOR_HEAD[1] + 1) * d)
        for lin in (q, k, v):
            lin.weight[other] = 0.0
            lin.bias[other] = 0.0
        v.weight[other.start, 0], v.weight[other.start, 1] = 1.0, -1.0
        out.weight[:, other] = 0.0
        out.weight[2, other.start], out.weight[3, other.start] = -strength / 2, strength / 2  # against it
    inter, output = anatomy.ffn_act(layer).dense, anatomy.layer(layer).output.dense
    for n, sign in zip(PLANTED_NEURONS, (1.0, 1.0, -1.0)):  # two fire for male texts, one for female ones
        inter.weight[n] = 0.0
        inter.weight[n, 2], inter.weight[n, 3], inter.bias[n] = 1.5 * sign, -1.5 * sign, 0.0
        output.weight[:, n] = 0.0
        output.weight[4, n], output.weight[5, n] = sign, -sign  # -> dims 4/5
    pooler = anatomy.base.pooler.dense
    pooler.weight[0] = 0.0
    pooler.weight[0, 4], pooler.weight[0, 5], pooler.bias[0] = 0.1, -0.1, 0.0  # tanh stays near-linear
    model.classifier.weight[:, 0] = torch.tensor([SCALE, -SCALE])  # class 0 "male", class 1 "female"
    return LoadedModel(model, tokenizer, anatomy, "classifier", True, "planted")


@pytest.fixture(scope="session")
def planted(tiny_tokenizer):
    """``(loaded, data)``: the planted model and 24 gendered texts, all of class 1, with their twins."""
    loaded = build_planted(tiny_tokenizer)
    rng = np.random.default_rng(2)
    texts, genders = [], []
    for i in range(24):
        gender = i % 2
        texts.append(
            TEMPLATES[i % len(TEMPLATES)].format(
                o=OCCUPATIONS[rng.integers(len(OCCUPATIONS))], p=("he", "she")[gender], n=("john", "mary")[gender]
            )
        )
        genders.append(gender)
    task = TaskData("planted", tuple(texts), np.ones(24, dtype=np.int64), np.array(genders), ("m", "f"))
    return loaded, AttributionData.from_task(loaded, task)


@pytest.fixture(scope="session")
def planted_truth() -> tuple[tuple[int, int], tuple[int, ...]]:
    """``(head, neurons)`` planted in :func:`build_planted`: (layer, head) and the FFN neurons of that layer."""
    return PLANTED_HEAD, PLANTED_NEURONS
