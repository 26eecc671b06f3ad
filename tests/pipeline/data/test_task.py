from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.data import (
    FEMALE,
    MALE,
    TaskData,
    load_table_task,
    parse_genders,
    rebalance_genders,
    split_indices,
    split_task,
)


def _toy(n_per_cell: int = 10) -> TaskData:
    """Three classes x two genders, ``n_per_cell`` rows each, plus a skewed class 2."""
    labels, genders = [], []
    for label in range(3):
        for gender in (MALE, FEMALE):
            n = n_per_cell * (3 if (label, gender) == (2, MALE) else 1)
            labels += [label] * n
            genders += [gender] * n
    texts = tuple(f"text {i}" for i in range(len(labels)))
    return TaskData("toy", texts, np.array(labels), np.array(genders), ("a", "b", "c"))


def _write_csv(path: Path, rows: list[dict[str, object]]) -> Path:
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


GOOD_ROWS = [
    {"bio": "She is a nurse.", "job": "nurse", "sex": "F"},
    {"bio": "He is a nurse.", "job": "nurse", "sex": "m"},
    {"bio": "She codes.", "job": "engineer", "sex": "Female"},
    {"bio": "He codes.", "job": "engineer", "sex": "MALE"},
]


# --- TaskData ---------------------------------------------------------------------------------------------------


def test_taskdata_basics() -> None:
    data = _toy()
    assert len(data) == 80
    assert data.labels.dtype == np.int64 and data.genders.dtype == np.int64
    assert not data.labels.flags.writeable
    counts = data.counts()
    assert list(counts.columns) == ["label", "gender", "n"]
    assert counts.set_index(["label", "gender"])["n"].to_dict() == {
        ("a", "male"): 10, ("a", "female"): 10, ("b", "male"): 10, ("b", "female"): 10,
        ("c", "male"): 30, ("c", "female"): 10,
    }  # fmt: skip
    np.testing.assert_allclose(data.female_share(), [0.5, 0.5, 0.25])


def test_subset_keeps_label_names_and_order() -> None:
    data = _toy()
    sub = data.subset([5, 0, 79])
    assert sub.texts == ("text 5", "text 0", "text 79")
    assert sub.label_names == data.label_names
    assert sub.labels.tolist() == [0, 0, 2]
    assert len(data.subset(data.genders == FEMALE)) == 30
    assert len(data.subset([])) == 0
    assert np.isnan(data.subset([0]).female_share()[1])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"labels": [0, 1]}, "lengths differ"),
        ({"labels": [0, 1, 3]}, "labels must lie in 0..2"),
        ({"labels": [0, -1, 1]}, "labels must lie"),
        ({"genders": [0, 1, 2]}, "genders must be"),
        ({"labels": [0.0, 1.0, 1.0]}, "integers"),
        ({"label_names": ("a", "a", "b")}, "unique"),
    ],
)
def test_taskdata_validation(kwargs: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {
        "name": "t", "texts": ("x", "y", "z"), "labels": [0, 1, 2], "genders": [0, 1, 0],
        "label_names": ("a", "b", "c"),
    }  # fmt: skip
    fields.update(kwargs)
    with pytest.raises(ValueError, match=message):
        TaskData(**fields)  # type: ignore[arg-type]


# --- split and rebalance -----------------------------------------------------------------------------------------


def test_split_is_deterministic_disjoint_covering_and_stratified() -> None:
    data = _toy()
    first, again = split_indices(data, seed=3), split_indices(data, seed=3)
    assert all(np.array_equal(first[k], again[k]) for k in first)
    assert not all(np.array_equal(first[k], split_indices(data, seed=4)[k]) for k in first)
    joined = np.concatenate(list(first.values()))
    assert len(joined) == len(set(joined.tolist())) == len(data)
    # each (label, gender) cell of 10 rows splits 8 / 1 / 1; the 30-row cell 24 / 3 / 3
    sizes = {k: len(v) for k, v in first.items()}
    assert sizes == {"train": 64, "dev": 8, "test": 8}
    for part in split_task(data, seed=3).values():
        assert part.label_names == data.label_names
        assert part.counts()["n"].min() >= 1


def test_split_rejects_bad_fractions() -> None:
    with pytest.raises(ValueError, match="fractions"):
        split_task(_toy(), fractions=(0.8, 0.3, 0.1))
    with pytest.raises(ValueError, match="fractions"):
        split_task(_toy(), fractions=(0.5, 0.5))


def test_rebalance_downsamples_majority_gender() -> None:
    data = _toy()
    balanced = rebalance_genders(data, seed=1)
    counts = balanced.counts()["n"].tolist()
    assert counts == [10] * 6
    assert set(balanced.texts) <= set(data.texts)
    assert rebalance_genders(data, seed=1).texts == balanced.texts
    one_gender = data.subset(~((data.labels == 0) & (data.genders == FEMALE)))
    assert rebalance_genders(one_gender).counts()["n"].tolist()[:2] == [0, 0]


# --- load_table_task ---------------------------------------------------------------------------------------------


def test_load_table_task_csv(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "bios.csv", GOOD_ROWS)
    data = load_table_task(path, text_col="bio", label_col="job", gender_col="sex")
    assert data.name == "bios"
    assert data.label_names == ("engineer", "nurse")
    assert data.labels.tolist() == [1, 1, 0, 0]
    assert data.genders.tolist() == [FEMALE, MALE, FEMALE, MALE]
    assert data.texts[0] == "She is a nurse."


def test_load_table_task_jsonl_and_parquet_with_int_labels(tmp_path: Path) -> None:
    rows = [{"t": f"x{i}", "y": i % 11, "g": i % 2} for i in range(22)]
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    from_jsonl = load_table_task(jsonl, text_col="t", label_col="y", gender_col="g", name="n")
    assert from_jsonl.label_names == tuple(str(i) for i in range(11))  # numeric order, not "10" < "2"
    assert from_jsonl.labels.tolist() == [r["y"] for r in rows]
    parquet = tmp_path / "d.parquet"
    pd.DataFrame(rows).to_parquet(parquet)
    from_parquet = load_table_task(parquet, text_col="t", label_col="y", gender_col="g", name="n")
    assert from_parquet.texts == from_jsonl.texts
    assert np.array_equal(from_parquet.labels, from_jsonl.labels)


def test_gender_map(tmp_path: Path) -> None:
    rows = [dict(r, sex={"F": "W", "m": "H", "Female": "W", "MALE": "H"}[r["sex"]]) for r in GOOD_ROWS]
    path = _write_csv(tmp_path / "fr.csv", rows)
    data = load_table_task(path, text_col="bio", label_col="job", gender_col="sex", gender_map={"w": "female", "H": 0})
    assert data.genders.tolist() == [FEMALE, MALE, FEMALE, MALE]


def test_parse_genders_accepts_common_forms() -> None:
    values = ["m", "Male", " MAN ", "f", "female", "Woman", 0, 1, 1.0, "0"]
    assert parse_genders(values, source="s", column="c").tolist() == [0, 0, 0, 1, 1, 1, 0, 1, 1, 0]


# --- errors: each names the file and the fix ---------------------------------------------------------------------

COLS = {"text_col": "bio", "label_col": "job", "gender_col": "sex"}


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="absent.csv"):
        load_table_task(tmp_path / "absent.csv", **COLS)


def test_wrong_columns_lists_found_and_needed(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "cols.csv", [{"text": "a", "label": "x", "gender": "m"}])
    with pytest.raises(ValueError, match="cols.csv") as info:
        load_table_task(path, **COLS)
    message = str(info.value)
    assert "['text', 'label', 'gender']" in message and "['bio', 'job', 'sex']" in message
    assert "text_col=" in message


@pytest.mark.parametrize("content", [b"", b"bio,job,sex\n", b"bio,job,sex\r\n"])
def test_empty_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"empty\.csv: the file has no data rows\. Fix"):
        load_table_task(path, **COLS)


def test_bad_encoding_is_reported_not_guessed(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes("bio,job,sex\nJosé est infirmier,nurse,m\nElle code,engineer,f\n".encode("latin-1"))
    with pytest.raises(ValueError, match="latin.csv: not valid UTF-8") as info:
        load_table_task(path, **COLS)
    assert "encoding=" in str(info.value) and "0xe9" in str(info.value)
    data = load_table_task(path, **COLS, encoding="latin-1")
    assert data.texts[0] == "José est infirmier"


def test_single_class(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "one.csv", [r for r in GOOD_ROWS if r["job"] == "nurse"])
    with pytest.raises(ValueError, match="one.csv: every row has the label 'nurse'") as info:
        load_table_task(path, **COLS)
    assert "Fix" in str(info.value)


def test_unknown_gender_names_file_column_values_and_fix(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "g.csv", GOOD_ROWS + [{"bio": "They code.", "job": "engineer", "sex": "nonbinary"}])
    with pytest.raises(ValueError, match="g.csv: column 'sex'") as info:
        load_table_task(path, **COLS)
    assert "nonbinary" in str(info.value) and "gender_map=" in str(info.value)


def test_empty_cells(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "holes.csv", GOOD_ROWS + [{"bio": "", "job": "nurse", "sex": "f"}])
    with pytest.raises(ValueError, match="holes.csv: column 'bio' is empty in 1 rows"):
        load_table_task(path, **COLS)


def test_pickle_is_refused_unless_allowed(tmp_path: Path) -> None:
    path = tmp_path / "bios.pkl"
    pd.DataFrame(GOOD_ROWS).to_pickle(path)
    with pytest.raises(ValueError, match="bios.pkl: refusing to unpickle") as info:
        load_table_task(path, **COLS)
    assert "allow_pickle=True" in str(info.value)
    assert len(load_table_task(path, **COLS, allow_pickle=True)) == 4


def test_unsupported_suffix(tmp_path: Path) -> None:
    path = tmp_path / "bios.xlsx"
    path.write_bytes(b"x")
    with pytest.raises(ValueError, match=r"bios.xlsx: unsupported file type '.xlsx'"):
        load_table_task(path, **COLS)


def test_relabel_maps_by_name_and_drops_unknown_classes(caplog):
    data = _toy(2)  # classes a, b, c: 4, 4 and 8 rows
    model_classes = ("c", "x", "a")  # the model's ids: c -> 0, a -> 2; it does not know b
    with caplog.at_level("WARNING", logger="pipeline.data.task"):
        mapped = data.relabel(model_classes)
    assert mapped.label_names == model_classes and len(mapped) == 12
    names = [mapped.label_names[i] for i in mapped.labels]
    kept = [i for i in range(len(data)) if data.label_names[data.labels[i]] != "b"]
    assert names == [data.label_names[data.labels[i]] for i in kept]  # the same class name on every row
    assert mapped.texts == tuple(data.texts[i] for i in kept) and (mapped.genders == data.genders[kept]).all()
    assert "toy: 4 of 16 rows have a class the model does not know (1 classes, e.g. ['b']); dropped" in caplog.text
    assert data.relabel(("a", "b", "c")) is data


def test_relabel_without_a_common_class_names_both_sets():
    with pytest.raises(
        ValueError,
        match=r"none of its classes \['a', 'b', 'c'\] is among the model's classes "
        r"\['LABEL_0', 'LABEL_1'\], so no row is left",
    ):
        _toy(2).relabel(["LABEL_0", "LABEL_1"])


def test_duplicate_texts_are_reported(tmp_path, caplog):
    rows = GOOD_ROWS + [GOOD_ROWS[0], GOOD_ROWS[0], GOOD_ROWS[1]]
    with caplog.at_level("WARNING", logger="pipeline.data.task"):
        data = load_table_task(
            _write_csv(tmp_path / "dup.csv", rows), text_col="bio", label_col="job", gender_col="sex"
        )
    assert len(data) == len(rows)  # reported, not dropped
    assert "2 texts occur more than once (3 extra rows of" in caplog.text and "most repeated x3" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="pipeline.data.task"):
        load_table_task(_write_csv(tmp_path / "ok.csv", GOOD_ROWS), text_col="bio", label_col="job", gender_col="sex")
    assert "occur more than once" not in caplog.text
