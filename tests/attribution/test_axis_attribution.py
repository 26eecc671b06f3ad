"""Attribution along other bias axes (issue #30): :func:`attribution.axis_data.from_axis` and a planted model where
one head carries race bias and another gender bias; single-head ablation tells them apart by axis."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny import make_tiny
from transformers import BertTokenizer

from attribution.ablation import HeadAblation
from attribution.axis_data import from_axis
from attribution.data import AttributionData
from attribution.scores import CounterfactualGap
from pipeline.anatomy import Anatomy
from pipeline.data import FEMALE, MALE, TaskData
from pipeline.data.group_swap import LISTS, GroupSwapper, read_group_list
from pipeline.models import LoadedModel

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
MALE_WORDS = ("he", "man", "father", "son", "brother", "boy", "john", "mr")
FEMALE_WORDS = ("she", "woman", "mother", "daughter", "sister", "girl", "mary", "mrs")
WHITE_WORDS = ("white", "whites")  # race.tsv terms (any case): european_american side
BLACK_WORDS = ("black", "blacks")  # african_american side
OCCUPATIONS = ["doctor", "nurse", "engineer", "teacher", "lawyer", "cook", "pilot", "writer"]
FILLERS = ["the", "a", "said", "that", "was", "is", "late", "early", "and", "to", "at", "work", "today", "good",
           "busy", "asked", "told", "stay", "came", "wrote", "letter", "neighbour"]  # fmt: skip
WORDS = SPECIALS + list(MALE_WORDS + FEMALE_WORDS + WHITE_WORDS + BLACK_WORDS) + OCCUPATIONS + FILLERS
VOCAB = WORDS + [f"[unused{i}]" for i in range(120 - len(WORDS))]  # 120 ids, as the tiny models
GENDER_HEAD = (1, 2)  # reads the gender direction (dims 0/1)
RACE_HEAD = (1, 3)  # reads the race direction (dims 6/7); the tiny BERT has 4 heads a layer
TEMPLATES = [
    "the {r} {o} said that {g} was late", "{g} asked the {r} {o} to stay", "the {o} met the {r} {g} at work today",
    "the {r} neighbour is a good {o} and {g} is busy", "the {o} told {g} that the {r} came early",
    "{g} wrote a letter to the {r} {o}",
]  # fmt: skip


def make_tokenizer() -> BertTokenizer:
    assert len(VOCAB) == 120 and len(set(VOCAB)) == 120
    return BertTokenizer(vocab={word: i for i, word in enumerate(VOCAB)}, do_lower_case=True)


@torch.no_grad()
def build_two_axes(tokenizer) -> LoadedModel:
    """A 3-layer BERT classifier (the route of ``conftest.build_planted``) with two planted heads.

    Dims 0/1 hold the gender of gendered words (+4/-4 male, -4/+4 female), dims 6/7 the race of race terms
    (+4/-4 white(s), -4/+4 black(s)). Head (1, 2) attends uniformly and writes ``x0 - x1`` to dims 2/3; head (1, 3)
    writes ``x6 - x7`` there too. Neurons (1, 5/17/30) read ``x2 - x3`` and write dims 4/5; the pooler and the
    classifier read only ``x4 - x5``. Every other weight is the small random init.
    """
    model = make_tiny("bert", "classifier", seed=1, num_labels=2)
    anatomy = Anatomy(model)
    g = torch.Generator().manual_seed(1)
    words = anatomy.word_embeddings.weight
    words.zero_()
    words[:, 8:] = torch.randn(words.shape[0], words.shape[1] - 8, generator=g)
    for plus, minus, dims in ((MALE_WORDS, FEMALE_WORDS, (0, 1)), (WHITE_WORDS, BLACK_WORDS, (6, 7))):
        for word in plus + minus:
            sign = 1.0 if word in plus else -1.0
            words[tokenizer.convert_tokens_to_ids(word), list(dims)] = torch.tensor([sign, -sign]) * 4.0
    anatomy.embeddings.position_embeddings.weight.zero_()
    anatomy.embeddings.token_type_embeddings.weight.zero_()
    layer = GENDER_HEAD[0]
    d = anatomy.head_dim
    q, k, v = anatomy.qkv(layer)
    out = anatomy.out_proj(layer)
    for (_, head), (a, b) in ((GENDER_HEAD, (0, 1)), (RACE_HEAD, (6, 7))):
        rows = slice(head * d, (head + 1) * d)
        for lin in (q, k, v):
            lin.weight[rows] = 0.0
            lin.bias[rows] = 0.0
        v.weight[head * d, a], v.weight[head * d, b] = 1.0, -1.0
        out.weight[:, rows] = 0.0
        out.weight[2, head * d], out.weight[3, head * d] = 3.0, -3.0
    inter, output = anatomy.ffn_act(layer).dense, anatomy.layer(layer).output.dense
    for n, sign in zip((5, 17, 30), (1.0, 1.0, -1.0)):
        inter.weight[n] = 0.0
        inter.weight[n, 2], inter.weight[n, 3], inter.bias[n] = 1.5 * sign, -1.5 * sign, 0.0
        output.weight[:, n] = 0.0
        output.weight[4, n], output.weight[5, n] = sign, -sign
    pooler = anatomy.base.pooler.dense
    pooler.weight[0] = 0.0
    pooler.weight[0, 4], pooler.weight[0, 5], pooler.bias[0] = 0.1, -0.1, 0.0
    model.classifier.weight[:, 0] = torch.tensor([1.5, -1.5])
    return LoadedModel(model, tokenizer, anatomy, "classifier", True, "two-axes")


def two_axis_task(n: int = 48) -> TaskData:
    """``n`` texts, each with one gendered word and one race term (balanced), all of class 1."""
    rng = np.random.default_rng(3)
    texts, genders = [], []
    for i in range(n):
        gender, race = i % 2, (i // 2) % 2
        pick = lambda words: words[rng.integers(len(words))]
        texts.append(
            TEMPLATES[i % len(TEMPLATES)].format(
                o=pick(OCCUPATIONS),
                g=pick((MALE_WORDS, FEMALE_WORDS)[gender][:6]),
                r=(WHITE_WORDS, BLACK_WORDS)[race][0],
            )
        )
        genders.append((MALE, FEMALE)[gender])
    return TaskData("two-axes", tuple(texts), np.ones(n, dtype=np.int64), np.array(genders), ("a", "b"))


@pytest.fixture(scope="module")
def two_axes():
    tokenizer = make_tokenizer()
    return build_two_axes(tokenizer), two_axis_task()


def test_race_terms_are_single_tokens_swapped_in_any_case():
    race = read_group_list(LISTS / "race.tsv")
    kinds = {words: kind for kind, words in race.rows}
    assert kinds[("white", "black")] == "term" and kinds[("whites", "blacks")] == "term"
    tok = make_tokenizer()
    for word in WHITE_WORDS + BLACK_WORDS + MALE_WORDS + FEMALE_WORDS:
        assert tok.tokenize(word) == [word]
    swapper = GroupSwapper.from_list(race, "european_american", "african_american")
    assert swapper.swap("White whites") == "Black blacks"
    assert swapper.sides_in("the white cook") == {0} and swapper.sides_in("Blacks") == {1}
    assert swapper.sides_in("white and black") == {0, 1} and swapper.sides_in("the cook") == frozenset()
    assert swapper.part("train").sides.keys() <= swapper.sides.keys()


def test_gender_axis_equals_from_task(two_axes):
    loaded, task = two_axes
    built = from_axis(loaded, task, "gender")
    reference = AttributionData.from_task(loaded, task)
    assert built.pair == ("female", "male") and built.n_no_mention == 0 and built.n_ambiguous == 0
    data = built.data
    assert data.texts == reference.texts and data.cf_texts == reference.cf_texts and data.name == reference.name
    for field in ("input_ids", "attention_mask", "cf_input_ids", "cf_attention_mask", "labels", "genders"):
        assert torch.equal(getattr(data, field), getattr(reference, field)), field
    flipped = from_axis(loaded, task, "gender", ("male", "female")).data
    assert torch.equal(flipped.genders, 1 - reference.genders)


def _one(text: str) -> TaskData:
    return TaskData("one", (text,), np.ones(1, dtype=np.int64), np.zeros(1, dtype=np.int64), ("a", "b"))


def test_race_axis_orients_by_group_and_leaves_out(two_axes):
    loaded, task = two_axes
    extra = TaskData(
        "mixed",
        task.texts[:4] + ("the white cook met the black nurse", "the cook was late"),
        np.ones(6, dtype=np.int64),
        np.zeros(6, dtype=np.int64),
        ("a", "b"),
    )
    built = from_axis(loaded, extra, "race")
    assert (built.n_no_mention, built.n_ambiguous) == (1, 1) and len(built.data) == 4
    want = [FEMALE if " white " in f" {t} " else MALE for t in task.texts[:4]]  # first group = FEMALE role
    assert built.data.genders.tolist() == want and built.data.name == "mixed-race"
    assert all(("white" in a) != ("white" in b) for a, b in zip(built.data.texts, built.data.cf_texts))
    with pytest.raises(ValueError, match=r"race.*european_american.*Fix"):
        from_axis(loaded, _one("the cook was late"), "race")
    with pytest.raises(ValueError, match="both groups"):
        from_axis(loaded, _one("white and black"), "race")


def _flagged(loaded, data) -> set[tuple[int, int]]:
    """Heads whose single-head ablation changes the gap significantly (q < 0.05) and moves it towards 0."""
    table = HeadAblation(loaded, CounterfactualGap()).attribute(data, mode="single", baseline="zero", progress=False)
    bias = float(table[table["metric"] == "intact_score"]["value"].iloc[0])
    assert abs(bias) > 0.01
    heads = table[table["metric"] == "delta_score"]
    towards_zero = (np.sign(heads["value"]) == -np.sign(bias)) & ((bias + heads["value"]).abs() < abs(bias))
    hits = heads[(heads["q"] < 0.05) & towards_zero]
    return {(int(layer), int(head)) for layer, head in zip(hits["layer"], hits["head"])}


def test_planted_heads_are_told_apart_by_axis(two_axes):
    loaded, task = two_axes
    race = from_axis(loaded, task, "race")
    gender = from_axis(loaded, task, "gender")
    assert len(race.data) == len(gender.data) == len(task)
    race_heads, gender_heads = _flagged(loaded, race.data), _flagged(loaded, gender.data)
    assert RACE_HEAD in race_heads and GENDER_HEAD not in race_heads
    assert GENDER_HEAD in gender_heads and RACE_HEAD not in gender_heads
