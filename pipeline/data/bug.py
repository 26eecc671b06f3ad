"""BUG as an offline occupation-classification task.

BUG (Levy, Lazar & Stanovsky 2021, "Collecting a Large-Scale Gender Bias Dataset for Coreference Resolution and
Machine Translation", Findings of EMNLP) holds real sentences that name a person by an entity word (``doctor``,
``author``, ``patient``) and refer to them with a gendered pronoun. Used as a stand-in for Bias in Bios: the text is
the sentence with the entity word masked, the class is the entity word and the gender is the pronoun's gender.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from pipeline.data._io import read_data_file, require_columns
from pipeline.data.paths import data_root
from pipeline.data.task import TaskData, check_usable, parse_genders

__all__ = ["BUG_FILES", "DEFAULT_MIN_PER_CLASS", "RARE_CLASS", "load_bug"]

logger = logging.getLogger(__name__)

BUG_FILES = {"balanced": "balanced_BUG.csv", "gold": "gold_BUG.csv"}
DEFAULT_MIN_PER_CLASS = 50
RARE_CLASS = "other"  # the class that rare entity words fold into with rare="fold"

_COLUMNS = ["sentence_text", "profession", "profession_first_index", "predicted gender"]

# UTF-8 text that was decoded as cp1252 (e.g. "â€¢" for "•"): a lead byte 0xC2-0xF4 followed by the right
# number of continuation bytes 0x80-0xBF, each shown as its cp1252 character, or as the raw C1 control for the
# five bytes cp1252 leaves undefined (gold BUG has "â€\x9d" for a closing quote).
_UNDEFINED_CP1252 = "\x81\x8d\x8f\x90\x9d"
_CONT = "[" + re.escape(bytes(range(0x80, 0xC0)).decode("cp1252", errors="ignore") + _UNDEFINED_CP1252) + "]"
_MOJIBAKE = re.compile(f"[\u00c2-\u00df]{_CONT}|[\u00e0-\u00ef]{_CONT}{{2}}|[\u00f0-\u00f4]{_CONT}{{3}}")
# "Ã" + no-break space is "à" and "Â" + no-break space a no-break space; BUG's tokeniser split at the no-break
# space, leaving "Ã"/"Â" before a plain space ("CittÃ di", "16 Â km").
_A_GRAVE = re.compile("\u00c3(?= |$)")
_NBSP = re.compile("( |^)\u00c2(?= |$)")


def _repair(match: re.Match[str]) -> str:
    raw = bytes(ord(c) if c in _UNDEFINED_CP1252 else c.encode("cp1252")[0] for c in match.group())
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:  # not mojibake after all; keep the characters
        return match.group()


def fix_mojibake(text: str) -> str:
    """Undo UTF-8-read-as-cp1252 damage (mojibake), leaving other text unchanged.

    Examples: ``"â€¢"`` -> ``"•"``, ``"SÃ¡nchez"`` -> ``"Sánchez"``, ``"CittÃ di"`` -> ``"Città di"``,
    ``"16 Â km"`` -> ``"16 km"``.
    """
    if text.isascii():
        return text
    return _NBSP.sub("", _A_GRAVE.sub("à", _MOJIBAKE.sub(_repair, text)))


def _mask(text: str, index: int, word: str, mask_token: str) -> str | None:
    """Replace every whitespace token equal to ``word`` (case-insensitive) by ``mask_token``.

    Returns None when the word is not a token of the sentence; ``index`` (``profession_first_index``) is only a
    hint because BUG's offsets come from spaCy and differ from whitespace tokens in a few rows.
    """
    tokens = text.split()
    hits = [i for i, tok in enumerate(text.lower().split()) if tok == word]
    if not hits:
        return None
    if 0 <= index < len(tokens) and index not in hits:
        logger.debug("BUG row: %r not at token %d, masking token(s) %s", word, index, hits)
    for i in hits:
        tokens[i] = mask_token
    return " ".join(tokens)


def _resolve(path: str | Path | None, file: str) -> Path:
    if file not in BUG_FILES:
        raise ValueError(f"file={file!r}: choose one of {sorted(BUG_FILES)}.")
    if path is None:
        return data_root() / "bug" / BUG_FILES[file]
    path = Path(path).expanduser()
    return path / BUG_FILES[file] if path.is_dir() else path


def load_bug(
    path: str | Path | None = None,
    *,
    file: Literal["balanced", "gold"] = "balanced",
    min_per_class: int = DEFAULT_MIN_PER_CLASS,
    rare: Literal["drop", "fold"] = "drop",
    mask_profession: bool = True,
    mask_token: str = "[MASK]",
    encoding: str | None = None,
) -> TaskData:
    """Load BUG as (masked sentence, entity class, gender).

    Steps, each logged with its row count:

    1. Rows whose ``predicted gender`` is not male/female (case-insensitive) are dropped.
    2. The label is ``profession`` lower-cased (gold BUG capitalises some, e.g. ``Doctor``).
    3. With ``mask_profession``, every whitespace token equal to the entity word is replaced by ``mask_token``,
       not only the one at ``profession_first_index``: a second mention would leak the label. The offset is a
       spaCy offset that disagrees with whitespace tokens in about 0.2% of balanced and 6% of gold rows, so
       matching is by word. Rows where the word is not a token are dropped (none in the shipped files).
    4. Mojibake (UTF-8 read as cp1252, e.g. ``â€¢`` in gold BUG) is repaired; CRLF line ends are handled by the
       CSV reader.
    5. Classes with fewer than ``min_per_class`` rows are dropped or folded into ``"other"``.

    The default mask token is ``"[MASK]"``: BERT-family tokenisers map it to their mask token, so the model sees an
    empty slot rather than a substitute word. A neutral word such as ``"person"`` is no option here because
    ``person`` is itself one of BUG's classes (1,401 balanced rows). The default ``min_per_class=50`` keeps 61 of
    161 balanced classes (23,876 of 25,504 rows) and leaves at least 5 rows per class in a 10% test split.

    Args:
        path: A BUG CSV, or a folder holding it; default ``data_root()/bug``.
        file: Which file to read from a folder: ``"balanced"`` (25,504 rows) or ``"gold"`` (1,717 rows).
        min_per_class: Smallest class kept as its own class.
        rare: ``"drop"`` rare classes or ``"fold"`` them into ``"other"``.
        mask_profession: Mask the entity word (otherwise the task is trivial).
        mask_token: The replacement string.
        encoding: Codec of the CSV; default strict UTF-8.

    Returns:
        The task, named ``"bug-balanced"``/``"bug-gold"`` (else ``"bug-<file stem>"``); class names sorted,
        ``"other"`` last when folding.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: Bad option, missing columns, bad encoding, or fewer than two classes left.
    """
    if rare not in ("drop", "fold"):
        raise ValueError(f"rare={rare!r}: choose 'drop' or 'fold'.")
    if min_per_class < 1:
        raise ValueError(f"min_per_class={min_per_class!r}: give a positive number of rows.")
    source = _resolve(path, file)
    table = read_data_file(source, encoding=encoding)
    require_columns(table, _COLUMNS, source, "point load_bug at a BUG CSV (balanced_BUG.csv or gold_BUG.csv).")

    gender = table["predicted gender"].astype(str).str.strip().str.lower()
    binary = gender.isin(["male", "female"]).to_numpy()
    if not binary.all():
        logger.info("%s: dropped %d rows whose gender is not male/female", source.name, int((~binary).sum()))
    table, gender = table[binary], gender[binary]
    professions = table["profession"].astype(str).str.strip().str.lower()

    texts: list[str | None] = []
    columns = (table["sentence_text"].tolist(), table["profession_first_index"].tolist(), professions.tolist())
    for text, index, word in zip(*columns):
        if mask_profession:
            text = _mask(str(text), int(index), word, mask_token)
        texts.append(None if text is None else fix_mojibake(text))
    found = np.array([t is not None for t in texts])
    if not found.all():
        logger.info("%s: dropped %d rows whose entity word is not a token", source.name, int((~found).sum()))
    frame = pd.DataFrame({"text": texts, "label": professions.to_numpy(), "gender": gender.to_numpy()})[found]

    sizes = frame["label"].value_counts()
    common = sorted(sizes.index[sizes >= min_per_class])
    is_rare = ~frame["label"].isin(common)
    n_rare = int(is_rare.sum())
    label_names = tuple(common)
    if rare == "drop":
        frame = frame[~is_rare]
    elif n_rare:
        frame = frame.assign(label=frame["label"].where(~is_rare, RARE_CLASS))
        label_names += (RARE_CLASS,)
    logger.info(
        "%s: %d classes with >= %d rows kept; %d rarer classes (%d rows) %s",
        source.name,
        len(common),
        min_per_class,
        len(sizes) - len(common),
        n_rare,
        "dropped" if rare == "drop" else f"folded into {RARE_CLASS!r}",
    )
    if len(label_names) < 2:
        raise ValueError(
            f"{source}: only {len(label_names)} class(es) have at least min_per_class={min_per_class} rows; a "
            f"classification task needs two. Fix: lower min_per_class{', or pass rare=fold' if rare == 'drop' else ''}."
        )

    index = {name: i for i, name in enumerate(label_names)}
    known = {filename: key for key, filename in BUG_FILES.items()}
    data = TaskData(
        name=f"bug-{known.get(source.name, source.stem)}",
        texts=tuple(frame["text"]),
        labels=np.array([index[v] for v in frame["label"]], dtype=np.int64),
        genders=parse_genders(frame["gender"], source=source, column="predicted gender"),
        label_names=label_names,
    )
    return check_usable(data, source)
