"""Token IG of the bias (from the gender-swapped twin) and of the prediction (from padding): what each adds up to,
which tokens carry it, pairs of unequal length, and the labels."""

from __future__ import annotations

import pytest
import torch

from attribution.data import AttributionData
from attribution.scores import CounterfactualGap, SkewGap, TrueClassProb
from attribution.token_ig import TokenIntegratedGradients

from .conftest import FEMALE_WORDS, MALE_WORDS


@pytest.mark.parametrize("score", [CounterfactualGap(), SkewGap([1.0, -1.0])], ids=["cf_gap", "cf_skew_gap"])
def test_twin_baseline_sums_to_the_gap_and_the_gendered_words_carry_it(planted, score):
    loaded, data = planted
    data = data.subset(range(6))
    # the planted gender feature flips sign half-way along the path: 128 Gauss-Legendre steps reach completeness
    frame = TokenIntegratedGradients(loaded, score).attribute(data, n_steps=128, batch_size=768, progress=False)
    tokens = frame[frame["unit"] == "token"]
    assert set(tokens["score"]) == {f"{score.name} from twin"} and set(tokens["baseline"]) == {"twin"}
    assert frame.loc[frame["metric"] == "pairs_dropped", ["value", "n"]].values.tolist() == [[0.0, 6]]
    with torch.no_grad():
        gap = score(loaded, data.batch(torch.arange(6))).double()  # the per-example bias being explained
    assert gap.abs().min() > 0.1
    total = torch.tensor(tokens.groupby("example")["value"].sum().to_numpy())
    assert ((total - gap).abs() <= 0.01 * gap.abs()).all()  # completeness within the 1% tolerance
    assert (tokens.groupby("example")["delta_rel"].first() < 0.01).all()
    gendered = tokens["token"].isin(MALE_WORDS + FEMALE_WORDS)
    assert (tokens.loc[~gendered, "value"] == 0).all()  # a token the swap leaves alone has no path: exactly 0
    for _, rows in tokens.groupby("example"):
        assert rows["token"].iloc[rows["value"].abs().argmax()] in MALE_WORDS + FEMALE_WORDS


def test_padding_baseline_keeps_the_prediction_attributions_under_its_own_label(planted):
    """The old behaviour: the twin held fixed, the text's tokens from [PAD]; sums to S(text) - S(padding)."""
    loaded, data = planted
    data = data.subset([0, 1, 2])
    ig = TokenIntegratedGradients(loaded, CounterfactualGap(), baseline="padding")
    frame = ig.attribute(data, n_steps=48, batch_size=96, progress=False)
    assert set(frame["unit"]) == {"token"}  # nothing dropped: no pairs_dropped row
    assert set(frame["score"]) == {"cf_gap from padding"} and set(frame["baseline"]) == {"padding"}
    pad = loaded.tokenizer.pad_token_id
    batch = data.batch(torch.arange(3))
    special = torch.isin(batch.input_ids, torch.tensor(sorted(loaded.tokenizer.all_special_ids)))
    ids = torch.where(special, batch.input_ids, torch.full_like(batch.input_ids, pad))
    with torch.no_grad():
        text = CounterfactualGap()(loaded, batch).double()
        base = CounterfactualGap()(loaded, type(batch)(**{**vars(batch), "input_ids": ids})).double()
    total = torch.tensor(frame.groupby("example")["value"].sum().to_numpy())
    assert ((total - (text - base)).abs() <= 0.01 * (text - base).abs()).all()
    assert (frame.loc[~frame["token"].isin(["[CLS]", "[SEP]"]), "value"] != 0).mean() > 0.5  # every word gets some


def test_pairs_of_unequal_length_are_left_out_and_counted(planted):
    loaded, data = planted
    data = data.subset(range(6))
    twins = [t + " today" if i in (1, 4) else t for i, t in enumerate(data.cf_texts)]
    mixed = AttributionData.from_texts(loaded, data.texts, cf_texts=twins, labels=data.labels.tolist(),
                                       genders=data.genders.tolist(), label_names=data.label_names)  # fmt: skip
    ig = TokenIntegratedGradients(loaded, CounterfactualGap())
    frame = ig.attribute(mixed, n_steps=16, batch_size=64, progress=False)
    assert sorted(set(frame.loc[frame["unit"] == "token", "example"])) == [0, 2, 3, 5]  # rows of the data passed
    assert frame.loc[frame["metric"] == "pairs_dropped", ["value", "n"]].values.tolist() == [[2.0, 6]]
    aligned, dropped = ig.pairs(mixed)
    assert dropped == 2 and len(aligned) == 4
    again = ig.attribute(aligned, n_steps=16, batch_size=64, dropped=dropped, progress=False)
    assert again.loc[again["metric"] == "pairs_dropped", ["value", "n"]].values.tolist() == [[2.0, 6]]
    assert (
        frame.loc[frame["unit"] == "token", "value"].tolist() == again.loc[again["unit"] == "token", "value"].tolist()
    )
    only_dropped = ig.attribute(mixed, examples=[1, 4], n_steps=4, progress=False)  # a share with nothing to explain
    assert only_dropped[["unit", "metric", "value"]].values.tolist() == [["model", "pairs_dropped", 2.0]]
    with pytest.raises(ValueError, match="no pair of .* keeps its token length"):
        ig.attribute(mixed.subset([1, 4]), n_steps=4, progress=False)
    no_twins = AttributionData.from_texts(loaded, data.texts, labels=data.labels.tolist())
    with pytest.raises(ValueError, match="needs gender-swapped twins.*baseline='padding'"):
        TokenIntegratedGradients(loaded, TrueClassProb()).attribute(no_twins, n_steps=4, progress=False)
    with pytest.raises(ValueError, match="not a token baseline"):
        TokenIntegratedGradients(loaded, TrueClassProb(), baseline="zero")


def test_command_line_explains_the_bias_by_default(tmp_path, capsys):
    """``bias-atlas ig --over tokens``: from the twin (pairs of unequal length counted), or from padding."""
    from pipeline.cli.main import main
    from pipeline.schema import read_table

    out = tmp_path / "tokens.parquet"
    args = ["ig", "--model", "minilm", "--over", "tokens", "--n", "6", "--steps", "8", "--score", "cf_gap",
            "--max-length", "32", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    table = read_table(out)
    assert "from twin" in capsys.readouterr().out
    tokens, dropped = table[table["unit"] == "token"], table[table["metric"] == "pairs_dropped"]
    assert set(tokens["score"]) == {"cf_gap from twin"} and len(dropped) == 1
    assert tokens["example"].nunique() + int(dropped["value"].item()) == int(dropped["n"].item()) == 6
    assert main([*args, "--token-baseline", "padding"]) == 0
    table = read_table(out)
    assert set(table["score"]) == {"cf_gap from padding"} and set(table["unit"]) == {"token"}
    assert table["example"].nunique() == 6


def test_viewer_and_playground_say_what_they_explain(planted, tmp_path):
    """The Tokens page names the bias (twin) or the prediction (padding); the playground's attributions add up to
    the gap P(ŷ | text) - P(ŷ | twin) it shows beside them."""
    from pipeline.viewer.playground_compare import token_ig
    from pipeline.viewer.playground_models import probabilities
    from pipeline.viewer.viewer_tokens import explains

    loaded, data = planted
    twin_rows = TokenIntegratedGradients(loaded, CounterfactualGap()).attribute(data.subset([0]), n_steps=8,
                                                                               progress=False)  # fmt: skip
    assert explains(twin_rows).startswith("The bias: integrated gradients from the gender-swapped twin")
    padding = TokenIntegratedGradients(loaded, CounterfactualGap(), baseline="padding")
    assert explains(padding.attribute(data.subset([0]), n_steps=8, progress=False)).startswith("The prediction, not")
    assert explains(twin_rows.drop(columns=["baseline"]).assign(score="cf_gap")).startswith("The prediction")  # old
    folder = tmp_path / "planted"
    loaded.model.save_pretrained(folder)
    loaded.tokenizer.save_pretrained(folder)
    text, twin = data.texts[0], data.cf_texts[0]
    rows = token_ig(str(folder), text, twin, 1)
    probs = probabilities(loaded, [text, twin], torch.ones(3, 4))
    gap = float(probs[0, 1] - probs[1, 1])
    delta = float(rows["delta"].iloc[0])  # captum's convergence delta of the raw change p(ŷ|twin) - p(ŷ|text)
    assert abs(gap) > 0.1 and rows["value"].sum() == pytest.approx(gap - delta, abs=1e-5)
    assert set(rows["unit"]) == {"token"} and set(rows["score"]) == {"gap P(ŷ|text) − P(ŷ|twin) from twin"}
