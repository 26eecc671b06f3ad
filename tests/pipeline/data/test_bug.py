from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np
import pytest

from pipeline.data import FEMALE, MALE, TaskData, fix_mojibake, load_bug, split_task

HEADER = "sentence_text,profession,profession_first_index,predicted gender"


def _tiny_bug(path: Path, rows: list[str]) -> Path:
    path.write_bytes(("\r\n".join([HEADER, *rows]) + "\r\n").encode("utf-8"))
    return path


def test_raw_row_count(root: Path) -> None:
    with open(root / "bug" / "balanced_BUG.csv", newline="", encoding="utf-8") as handle:
        assert sum(1 for _ in csv.DictReader(handle)) == 25_504
    assert len(load_bug(rare="fold")) == 25_504  # folding keeps every row; no non-binary genders here


def test_default_threshold_counts(bug: TaskData) -> None:
    assert bug.name == "bug-balanced"
    assert len(bug.label_names) == 61
    assert len(bug) == 23_876
    assert list(bug.label_names) == sorted(bug.label_names)
    assert bug.counts().groupby("label")["n"].sum().min() >= 50
    assert {k: len(v) for k, v in split_task(bug).items()} == {"train": 19_100, "dev": 2_397, "test": 2_379}


def test_rows_are_masked_and_labelled(bug: TaskData) -> None:
    agent, person = bug.label_names.index("agent"), bug.label_names.index("person")
    assert bug.texts[1] == "Hepaprotective [MASK] glycyrrhizinate was added to her treatment ."
    assert (bug.labels[1], bug.genders[1]) == (agent, FEMALE)
    # every mention of the entity word is masked, not only the one at profession_first_index
    assert bug.texts[0] == (
        "Notice of contact depends on the time the infectious [MASK] is informed of her infection and the "
        "time-to-reach-all-contacts of that [MASK] ."
    )
    assert bug.labels[0] == person
    assert not any("\r" in t for t in bug.texts)
    assert all("[MASK]" in t for t in bug.texts)


def test_mask_options() -> None:
    raw = load_bug(file="gold", min_per_class=1, mask_profession=False)
    assert raw.texts[1].startswith("• Lastly , for the patient that")
    custom = load_bug(file="gold", min_per_class=1, mask_token="<mask>")
    assert custom.texts[2] == (
        "Her early years as a resident <mask> in the Northern Territory sparked her interest in Aboriginal health ."
    )


def test_gold_mojibake_is_repaired_and_case_folded() -> None:
    gold = load_bug(file="gold", min_per_class=1)
    assert gold.name == "bug-gold"
    assert len(gold) == 1_717 and len(gold.label_names) == 116  # 143 raw values, 116 lower-cased
    assert gold.texts[1] == (
        "• Lastly , for the [MASK] that did not need hospitalization and that has been managed at his own home , "
        "community reintegration follows the process as below :"
    )
    assert gold.label_names[gold.labels[1]] == "patient" and gold.genders[1] == MALE
    assert not any("â€" in t or "Ã" in t or "Â" in t for t in gold.texts)
    assert sum("Sánchez" in t for t in gold.texts) >= 1


def test_fix_mojibake() -> None:
    assert fix_mojibake("â€¢ a â€” b SÃ¡nchez â€\x9d") == "• a — b Sánchez ”"
    assert fix_mojibake("CittÃ di , 16 Â km .Â") == "Città di , 16 km .Â"
    assert fix_mojibake("day 2 . Â") == "day 2 ."
    assert fix_mojibake("plain ascii") == "plain ascii"
    assert fix_mojibake("déjà vu — ok") == "déjà vu — ok"


def test_rare_fold_and_drop(tmp_path: Path) -> None:
    rows = ["the nurse said she is ok .,nurse,1,female"] * 3 + ["the doctor said he is ok .,doctor,1,male"] * 3
    rows += ["the pilot said he flew .,pilot,1,male", "the cook said she ate .,cook,1,female"]
    path = _tiny_bug(tmp_path / "b.csv", rows)
    dropped = load_bug(path, min_per_class=3)
    assert dropped.label_names == ("doctor", "nurse") and len(dropped) == 6
    folded = load_bug(path, min_per_class=3, rare="fold")
    assert folded.label_names == ("doctor", "nurse", "other") and len(folded) == 8
    assert folded.texts[-1] == "the [MASK] said she ate ."
    with pytest.raises(ValueError, match="min_per_class=4.*Fix: lower min_per_class"):
        load_bug(path, min_per_class=4)
    with pytest.raises(ValueError, match="rare="):
        load_bug(path, rare="merge")  # type: ignore[arg-type]


def test_non_binary_rows_dropped_and_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rows = [
        "a nurse ran .,nurse,1,female",
        "a nurse sat .,nurse,1,male",
        "a clerk ran .,clerk,1,female",
        "a clerk sat .,clerk,1,male",
        "a clerk hid .,clerk,1,neutral",
        "the CEO : clerk ,clerk,0,male",
    ]
    path = _tiny_bug(tmp_path / "n.csv", rows)
    with caplog.at_level(logging.INFO, logger="pipeline.data.bug"):
        data = load_bug(path, min_per_class=1)
    assert "dropped 1 rows whose gender is not male/female" in caplog.text
    assert len(data) == 5
    # the offset is wrong in the last row; the word is still found and masked
    assert data.texts[-1] == "the CEO : [MASK]"
    assert np.array_equal(data.genders, [FEMALE, MALE, FEMALE, MALE, MALE])


def test_errors_name_file_and_fix(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        load_bug(tmp_path / "missing.csv")
    with pytest.raises(FileNotFoundError, match="gold_BUG.csv"):
        load_bug(tmp_path, file="gold")
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("text,label\na,b\n", encoding="utf-8")
    with pytest.raises(ValueError, match="wrong.csv: missing column") as info:
        load_bug(wrong)
    assert "sentence_text" in str(info.value) and "Fix" in str(info.value)
    with pytest.raises(ValueError, match="file="):
        load_bug(file="full")  # type: ignore[arg-type]
