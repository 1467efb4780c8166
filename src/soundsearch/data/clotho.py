"""ClothoV2 as distributed (REFERENCE.md section 6).

Layout under ``root``::

    clotho_captions_{split}.csv    file_name,caption_1,...,caption_5   (UTF-8)
    clotho_metadata_{split}.csv    file_name,keywords,sound_id,...     (ISO-8859-1, keywords ';'-separated)
    {split}/<file_name>            the audio (WAV 44.1 kHz in the official release)

Splits: development, validation, evaluation (aliases train, val, test). Records keep the captions
file's row order; ``meta["row"]`` is the 0-based data row, so the ClothoV2_GPT index of caption
``k`` is ``row * 5 + k``. The metadata file is optional (without it: no keywords, no sound id).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from soundsearch.data.records import (
    AudioCaption,
    MissingAudio,
    ReadStats,
    RowProblems,
    check_policy,
    finish_stats,
    iter_csv,
)
from soundsearch.errors import DataError

log = logging.getLogger(__name__)

CLOTHO_SPLITS = ("development", "validation", "evaluation")
SPLIT_ALIASES = {"train": "development", "val": "validation", "test": "evaluation"}
CAPTION_COLUMNS = tuple(f"caption_{k}" for k in range(1, 6))
METADATA_ENCODING = "ISO-8859-1"


def clotho_split(split: str) -> str:
    """The official split name for ``split`` or an alias; a UserError for anything else."""
    name = SPLIT_ALIASES.get(split, split)
    if name not in CLOTHO_SPLITS:
        choices = ", ".join(CLOTHO_SPLITS + tuple(SPLIT_ALIASES))
        raise DataError(f"unknown ClothoV2 split {split!r}; choose one of: {choices}")
    return name


def read_clotho_metadata(
    root: str | os.PathLike, split: str, on_error: str = "raise"
) -> dict[str, dict[str, object]]:
    """file_name -> {"keywords": tuple, "sound_id": str, ...} from the metadata CSV ({} if absent)."""
    split = clotho_split(split)
    path = Path(root) / f"clotho_metadata_{split}.csv"
    if not path.is_file():
        log.warning("%s not found: ClothoV2 records get no keywords and no sound id", path)
        return {}
    problems = RowProblems(path, on_error, ReadStats())
    out: dict[str, dict[str, object]] = {}
    for line, _, row in iter_csv(path, problems, ("file_name", "keywords"), METADATA_ENCODING):
        name = row["file_name"].strip()
        if not name:
            problems.report(f"line {line}", "empty file_name")
            continue
        keywords = tuple(k.strip() for k in row["keywords"].split(";") if k.strip())
        entry: dict[str, object] = {k: v.strip() for k, v in row.items() if k != "file_name"}
        entry["keywords"] = keywords
        out[name] = entry
    problems.finish()
    return out


def read_clotho(
    root: str | os.PathLike,
    split: str,
    *,
    on_error: str = "raise",
    on_missing: str | None = "keep",
    stats: ReadStats | None = None,
) -> list[AudioCaption]:
    """Every clip of a ClothoV2 split with its five captions, keywords and Freesound id.

    ``on_missing`` defaults to "keep" (captions are read without looking for the audio, e.g. for
    caption augmentation); training and evaluation pass "skip" or "raise" (see records.py).
    """
    on_missing = check_policy(on_error, on_missing)
    stats = stats if stats is not None else ReadStats()
    split = clotho_split(split)
    root = Path(root)
    path = root / f"clotho_captions_{split}.csv"
    if not path.is_file():
        raise DataError(
            f"{path} not found: give the ClothoV2 folder holding clotho_captions_{split}.csv"
        )
    metadata = read_clotho_metadata(root, split, on_error)
    problems = RowProblems(path, on_error, stats)
    missing = MissingAudio(f"ClothoV2 {split} ({root / split})", on_missing, stats)
    records: list[AudioCaption] = []
    for line, index, row in iter_csv(path, problems, ("file_name",) + CAPTION_COLUMNS):
        parsed = _parse_row(row, line, problems)
        if parsed is None:
            continue
        name, captions = parsed
        audio = root / split / name
        if not missing.exists(audio):
            continue
        records.append(_record(split, name, audio, captions, metadata.get(name, {}), index, line))
    problems.finish()
    missing.finish()
    finish_stats(stats, records, f"ClothoV2 {split}")
    return records


def _parse_row(
    row: dict[str, str], line: int, problems: RowProblems
) -> tuple[str, tuple[str, ...]] | None:
    name = row["file_name"].strip()
    captions = tuple(row[c].strip() for c in CAPTION_COLUMNS)
    if not name:
        problems.report(f"line {line}", "empty file_name")
        return None
    if not all(captions):
        empty = [c for c, text in zip(CAPTION_COLUMNS, captions, strict=True) if not text]
        problems.report(f"line {line}", f"empty caption(s): {', '.join(empty)}")
        return None
    return name, captions


def _record(
    split: str,
    name: str,
    audio: Path,
    captions: tuple[str, ...],
    meta: dict[str, object],
    index: int,
    line: int,
) -> AudioCaption:
    sound_id = str(meta.get("sound_id", "") or "").strip()
    info: dict[str, object] = {"row": index, "line": line, "split": split, "file_name": name}
    if sound_id:
        info["sound_id"] = sound_id
        if sound_id.isdigit():
            info["freesound_id"] = sound_id  # the leakage filter's key
    for key in ("sound_link", "start_end_samples", "manufacturer", "license"):
        if meta.get(key):
            info[key] = meta[key]
    return AudioCaption(
        audio_id=f"clotho/{split}/{name}",
        path=audio,
        captions=captions,
        keywords=tuple(meta.get("keywords", ())),  # type: ignore[arg-type]
        source="clotho",
        meta=info,
    )
