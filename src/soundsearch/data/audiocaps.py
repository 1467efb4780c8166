"""AudioCaps: the caption CSVs plus whatever 10 s clips the user has downloaded.

``{train,val,test}.csv`` have the columns ``audiocap_id,youtube_id,start_time,caption``. The audio is
not distributed; each user has a folder of clips fetched from YouTube, many missing. The audio
folder is searched recursively once (split subfolders are fine) and each ``youtube_id`` is matched
to a file with any audio extension (``soundsearch.audio.AUDIO_EXTENSIONS``) named, for the id
``abc`` and start time 30:

    abc.wav   Yabc.wav   abc_30.wav   abc_30.000.wav   abc_30_40.wav   abc_30.000_40.000.wav
    (and the same with the ``Y`` prefix of the AudioSet downloads)

A name carrying a start time is preferred when it matches the row's start time. Rows of one clip
(val/test have five captions per clip) are grouped into one record, in first-appearance order.
Clips not found are counted and logged (``on_missing``, default "skip": missing clips are normal).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from soundsearch.audio import AUDIO_EXTENSIONS
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

AUDIOCAPS_SPLITS = ("train", "val", "test")
SPLIT_ALIASES = {"development": "train", "validation": "val", "evaluation": "test"}
COLUMNS = ("youtube_id", "start_time", "caption")
_TIMED = re.compile(r"^(?P<id>.+?)_(?P<start>\d+(?:\.\d+)?)(?:_(?P<end>\d+(?:\.\d+)?))?$")


def audiocaps_split(split: str) -> str:
    name = SPLIT_ALIASES.get(split, split)
    if name not in AUDIOCAPS_SPLITS:
        choices = ", ".join(AUDIOCAPS_SPLITS + tuple(SPLIT_ALIASES))
        raise DataError(f"unknown AudioCaps split {split!r}; choose one of: {choices}")
    return name


class ClipFinder:
    """Maps a YouTube id (and start time) to a local file, from one walk of the audio folder."""

    def __init__(self, audio_dir: Path):
        self.by_id: dict[str, list[tuple[float | None, Path]]] = {}
        if not audio_dir.is_dir():
            raise DataError(f"AudioCaps audio folder {audio_dir} not found")
        for path in sorted(_walk_audio(audio_dir)):
            for key, start in _keys(path.stem):
                self.by_id.setdefault(key, []).append((start, path))

    def find(self, youtube_id: str, start_time: float | None) -> Path | None:
        """The file for this clip: one whose name has this start time, else one without a time."""
        found = self.by_id.get(youtube_id, [])
        timed = [
            p for s, p in found if s is not None and start_time is not None and s == start_time
        ]
        if timed:
            return timed[0]
        plain = [p for s, p in found if s is None]
        if plain:
            return plain[0]
        return found[0][1] if found else None


def _walk_audio(folder: Path):
    for dirpath, _, files in os.walk(folder):
        for name in files:
            if os.path.splitext(name)[1].lower() in AUDIO_EXTENSIONS:
                yield Path(dirpath) / name


def _keys(stem: str) -> list[tuple[str, float | None]]:
    """Every (id, start time) reading of a file stem: with/without ``Y``, with/without times."""
    out: list[tuple[str, float | None]] = []
    for name in (stem, stem[1:] if stem.startswith("Y") and len(stem) > 1 else None):
        if not name:
            continue
        out.append((name, None))
        m = _TIMED.match(name)
        if m:
            out.append((m["id"], float(m["start"])))
    return out


def read_audiocaps(
    csv_dir: str | os.PathLike,
    split: str,
    audio_dir: str | os.PathLike | None = None,
    *,
    on_error: str = "raise",
    on_missing: str | None = "skip",
    stats: ReadStats | None = None,
) -> list[AudioCaption]:
    """AudioCaps clips of ``split`` found under ``audio_dir`` (default: ``csv_dir``), captions grouped.

    ``on_missing`` "keep" acts like "skip" here: a clip that is not on disk has no path to keep.
    """
    on_missing = check_policy(on_error, on_missing)
    stats = stats if stats is not None else ReadStats()
    split = audiocaps_split(split)
    path = Path(csv_dir) / f"{split}.csv"
    if not path.is_file():
        raise DataError(f"{path} not found: give the folder holding AudioCaps' {split}.csv")
    audio_dir = Path(audio_dir) if audio_dir is not None else Path(csv_dir)
    finder = ClipFinder(audio_dir)
    problems = RowProblems(path, on_error, stats)
    policy = "skip" if on_missing == "keep" else on_missing
    missing = MissingAudio(f"AudioCaps {split} ({audio_dir})", policy, stats)
    groups = _group_rows(path, finder, problems, missing)
    problems.finish()
    missing.finish()
    records = [_record(split, audio, g) for audio, g in groups.items()]
    finish_stats(stats, records, f"AudioCaps {split}")
    return records


def _group_rows(
    path: Path, finder: ClipFinder, problems: RowProblems, missing: MissingAudio
) -> dict[Path, dict]:
    """audio file -> {"id", "start", "captions", "rows"} in first-appearance order."""
    groups: dict[Path, dict] = {}
    absent: set[str] = set()
    for line, _, row in iter_csv(path, problems, COLUMNS):
        clip = _parse_row(row, line, problems)
        if clip is None:
            continue
        youtube_id, start, caption = clip
        audio = finder.find(youtube_id, start)
        if audio is None:
            if youtube_id not in absent:
                absent.add(youtube_id)
                missing.note(youtube_id)
            continue
        group = groups.setdefault(
            audio, {"id": youtube_id, "start": start, "captions": [], "rows": []}
        )
        group["captions"].append(caption)
        group["rows"].append(row.get("audiocap_id", "").strip() or line)
    return groups


def _parse_row(
    row: dict[str, str], line: int, problems: RowProblems
) -> tuple[str, float | None, str] | None:
    youtube_id = row["youtube_id"].strip()
    caption = row["caption"].strip()
    raw_start = row["start_time"].strip()
    if not youtube_id:
        problems.report(f"line {line}", "empty youtube_id")
        return None
    if not caption:
        problems.report(f"line {line}", "empty caption")
        return None
    try:
        start = float(raw_start) if raw_start else None
    except ValueError:
        problems.report(f"line {line}", f"start_time {raw_start!r} is not a number")
        return None
    return youtube_id, start, caption


def _record(split: str, audio: Path, group: dict) -> AudioCaption:
    return AudioCaption(
        audio_id=f"audiocaps/{group['id']}",
        path=audio,
        captions=tuple(group["captions"]),
        source="audiocaps",
        meta={
            "split": split,
            "youtube_id": group["id"],
            "start_time": group["start"],
            "audiocap_ids": group["rows"],
        },
    )
