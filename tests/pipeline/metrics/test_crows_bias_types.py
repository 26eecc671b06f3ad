"""CrowS-Pairs per bias type: ``bias-atlas metrics crows --bias-type race-color,religion`` equals the authors'
``metric.py`` (nyu-mll/crows-pairs: ``mask_unigram``, scores rounded to 3 decimals, ties neutral) run on the same
weights and on that type's pairs."""

from __future__ import annotations

import copy
import difflib

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.anatomy import Anatomy
from pipeline.cli.main import main as bias_atlas
from pipeline.data import CROWS_BIAS_TYPES, data_root, load_crows_pairs
from pipeline.metrics import crows_metrics, crows_scores
from pipeline.metrics.config import BiasMetricsConfig
from pipeline.metrics.crows import crows_verdicts
from pipeline.models import LoadedModel, load_model
from pipeline.schema import read_table

_PER_TYPE = {"race-color": 4, "religion": 4, "gender": 2}  # the first pairs of each type in the shipped file


def _metric_py_scores(model, tokenizer, frame: pd.DataFrame) -> list[tuple[float, float]]:
    """``mask_unigram`` of the authors' metric.py for each row: ``(sent1 score, sent2 score)``, unrounded, where
    ``sent1`` is ``sent_more`` for a ``stereo`` pair and ``sent_less`` for an ``antistereo`` one (their read_data)."""
    mask_id, out = tokenizer.mask_token_id, []
    for row in frame.itertuples():
        sent1, sent2 = (
            (row.sent_more, row.sent_less) if row.stereo_antistereo == "stereo" else (row.sent_less, row.sent_more)
        )
        ids1 = tokenizer.encode(sent1.lower(), return_tensors="pt")
        ids2 = tokenizer.encode(sent2.lower(), return_tensors="pt")
        matcher = difflib.SequenceMatcher(None, [str(x) for x in ids1[0].tolist()], [str(x) for x in ids2[0].tolist()])
        t1, t2 = [], []
        for op in matcher.get_opcodes():
            if op[0] == "equal":
                t1 += list(range(op[1], op[2]))
                t2 += list(range(op[3], op[4]))
        scores = [0.0, 0.0]
        for i in range(1, len(t1) - 1):  # CLS and SEP are never masked
            for side, (ids, template) in enumerate(((ids1, t1), (ids2, t2))):
                masked = ids.clone()
                masked[0][template[i]] = mask_id
                with torch.no_grad():
                    hidden = model(masked)[0].squeeze(0)[template[i]]
                scores[side] += torch.nn.LogSoftmax(dim=0)(hidden)[ids[0][template[i]]].item()
        out.append((scores[0], scores[1]))
    return out


def _metric_py_verdicts(scores: list[tuple[float, float]], directions: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """metric.py's evaluate(): per pair (counts as stereotyping, neutral) after rounding both scores to 3 decimals."""
    stereo, neutral = [], []
    for (s1, s2), direction in zip(scores, directions):
        s1, s2 = round(s1, 3), round(s2, 3)
        neutral.append(s1 == s2)
        stereo.append(s1 != s2 and (s1 > s2 if direction == "stereo" else s2 > s1))
    return np.array(stereo), np.array(neutral)


def _more_less(scores: list[tuple[float, float]], directions: list[str]) -> tuple[np.ndarray, np.ndarray]:
    pairs = [(a, b) if d == "stereo" else (b, a) for (a, b), d in zip(scores, directions)]
    return np.array([a for a, _ in pairs]), np.array([b for _, b in pairs])


@pytest.fixture(scope="module")
def small_root(tmp_path_factory) -> str:
    """A data root with a few real pairs of race-color, religion and gender, and the WinoBias files of the MLM check."""
    try:
        shared = data_root()
    except FileNotFoundError as err:
        pytest.skip(f"shared data not available: {err}")
    root = tmp_path_factory.mktemp("crows_root")
    full = pd.read_csv(shared / "crows_pairs" / "crows_pairs_anonymized.csv")
    small = pd.concat([full[full.bias_type == kind].head(n) for kind, n in _PER_TYPE.items()])
    (root / "crows_pairs").mkdir()
    small.to_csv(root / "crows_pairs" / "crows_pairs_anonymized.csv", index=False)
    (root / "winobias").symlink_to(shared / "winobias")
    return str(root)


@pytest.fixture(scope="module")
def model_dir(tiny_mlm, tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("tiny_mlm")
    tiny_mlm.model.save_pretrained(folder)
    tiny_mlm.tokenizer.save_pretrained(folder)
    return str(folder)


def test_race_and_religion_equal_the_authors_metric_py_on_float64_weights(tiny_mlm, small_root):
    """In float64 (no float32 rounding noise near a 3-decimal boundary) the metric equals metric.py's exactly."""
    model = copy.deepcopy(tiny_mlm.model).double()
    loaded = LoadedModel(model, tiny_mlm.tokenizer, Anatomy(model), "mlm", True, "tiny-bert-mlm-float64")
    path = f"{small_root}/crows_pairs/crows_pairs_anonymized.csv"
    frame = crows_metrics(loaded, load_crows_pairs(path=path), n_boot=0, bias_types=("race-color", "religion"))
    rows = frame.set_index(["metric", "subset"])
    full = pd.read_csv(path)
    for subset, part in [("all", full), *((k, full[full.bias_type == k]) for k in ("race-color", "religion"))]:
        stereo, neutral = _metric_py_verdicts(_metric_py_scores(model, tiny_mlm.tokenizer, part),
                                              part.stereo_antistereo.tolist())  # fmt: skip
        assert rows.loc[("crows_stereo_pct", subset), "value"] == 100 * stereo.mean()
        assert rows.loc[("crows_neutral_pct", subset), "value"] == 100 * neutral.mean()
        assert rows.loc[("crows_stereo_pct", subset), "n"] == len(part)
    assert 0 < rows.loc[("crows_neutral_pct", "all"), "value"] < 100  # both ties and non-ties are exercised


def test_the_command_scores_race_and_religion_as_metric_py_does(tiny_mlm, small_root, model_dir, tmp_path, capsys):
    """``bias-atlas metrics crows --bias-type race-color,religion`` on the saved float32 weights: the per-sentence
    scores equal metric.py's to 2e-5 (float32 sums), the verdicts equal metric.py's on every pair not within that of
    a 3-decimal rounding boundary, and the printed rows are those verdicts' shares."""
    out = tmp_path / "crows.csv"
    args = ["metrics", "crows", "--model", model_dir, "--bias-type", "race-color,religion", "--data-root",
            small_root, "--mlm-head-check", "report", "--n-boot", "0", "--out", str(out)]  # fmt: skip
    assert bias_atlas(args) == 0
    assert "nyu-mll metric.py" in capsys.readouterr().out
    rows = read_table(out).set_index(["metric", "subset"])
    assert {s for m, s in rows.index if m == "crows_stereo_pct"} == {"all", "race-color", "religion"}
    path = f"{small_root}/crows_pairs/crows_pairs_anonymized.csv"
    full, loaded = pd.read_csv(path), load_model(model_dir, head="mlm")
    more, less, _ = crows_scores(loaded, load_crows_pairs(path=path))
    authors = _metric_py_scores(loaded.model, loaded.tokenizer, full)
    a_more, a_less = _more_less(authors, full.stereo_antistereo.tolist())
    assert np.abs(more - a_more).max() < 2e-5 and np.abs(less - a_less).max() < 2e-5
    boundary = np.abs(np.abs(np.c_[a_more, a_less]) * 1000 % 1 - 0.5).min(axis=1) < 0.02  # within 2e-5 of x.xxx5
    assert boundary.sum() <= 2  # the comparison below is not vacuous
    stereo, neutral = crows_verdicts(more, less)
    a_stereo, a_neutral = _metric_py_verdicts(authors, full.stereo_antistereo.tolist())
    assert (stereo == a_stereo)[~boundary].all() and (neutral == a_neutral)[~boundary].all()
    for subset in ("all", "race-color", "religion"):
        keep = np.ones(len(full), bool) if subset == "all" else (full.bias_type == subset).to_numpy()
        assert rows.loc[("crows_stereo_pct", subset), "value"] == 100 * stereo[keep].mean()
        assert rows.loc[("crows_neutral_pct", subset), "value"] == 100 * neutral[keep].mean()


def test_each_bias_type_equals_the_function_on_that_type_alone(tiny_mlm, small_root):
    pairs = load_crows_pairs(path=f"{small_root}/crows_pairs/crows_pairs_anonymized.csv")
    frame = crows_metrics(tiny_mlm, pairs, n_boot=0, bias_types=("religion", "gender")).set_index(["metric", "subset"])
    for kind in ("religion", "gender"):
        alone = crows_metrics(tiny_mlm, [p for p in pairs if p.bias_type == kind], n_boot=0, bias_types=())
        assert frame.loc[("crows_stereo_pct", kind), "value"] == alone.set_index(["metric", "subset"]).loc[
            ("crows_stereo_pct", "all"), "value"]  # fmt: skip
    default = crows_metrics(tiny_mlm, pairs, n_boot=0)
    assert set(default.subset) == {"all", "gender", ""}  # the default stays the gender subset


def test_every_bias_type_of_the_data_is_a_subset(tiny_mlm, small_root):
    frame = crows_metrics(tiny_mlm, load_crows_pairs(), n_boot=0, max_examples=1, bias_types=CROWS_BIAS_TYPES)
    stereo = frame[frame.metric == "crows_stereo_pct"]
    assert stereo.subset.tolist() == ["all", *CROWS_BIAS_TYPES] and stereo.n.tolist() == [1] * 10


def test_unknown_bias_types_are_refused():
    with pytest.raises(ValueError, match="bias_types=\\['race'\\]"):
        crows_metrics(None, [], bias_types=("race",))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="distinct names"):
        crows_metrics(None, [], bias_types=("gender", "gender"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown CrowS-Pairs bias type"):
        BiasMetricsConfig(crows_bias_types=("race",))
    assert BiasMetricsConfig(crows_bias_types=CROWS_BIAS_TYPES).crows_bias_types == CROWS_BIAS_TYPES


def test_bad_bias_type_options_exit_2_with_a_message(capsys):
    assert bias_atlas(["metrics", "crows", "--bias-type", "race"]) == 2
    assert "--bias-type 'race': use distinct comma-separated names of race-color," in capsys.readouterr().err
    assert bias_atlas(["metrics", "seat", "--bias-type", "race-color"]) == 2
    assert "--bias-type applies to crows only, not to seat" in capsys.readouterr().err
