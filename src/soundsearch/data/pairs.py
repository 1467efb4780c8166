"""A plain ``pairs.csv``: the simplest way to train or evaluate on your own sounds.

Header ``path,caption``; one row per (audio file, caption). Relative paths are resolved against
the CSV's folder. Several rows with the same path give that file several captions (one record,
captions in row order, records in first-appearance order).
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

log = logging.getLogger(__name__)


def read_pairs(
    csv_path: str | os.PathLike,
    *,
    on_error: str = "raise",
    on_missing: str | None = None,
    stats: ReadStats | None = None,
) -> list[AudioCaption]:
    """Records of a ``path,caption`` CSV, grouped by audio file."""
    on_missing = check_policy(on_error, on_missing)
    stats = stats if stats is not None else ReadStats()
    csv_path = Path(csv_path)
    base = csv_path.parent
    problems = RowProblems(csv_path, on_error, stats)
    missing = MissingAudio(str(csv_path), on_missing, stats)
    groups: dict[Path, dict] = {}
    absent: set[Path] = set()
    for line, _, row in iter_csv(csv_path, problems, ("path", "caption")):
        name, caption = row["path"].strip(), row["caption"].strip()
        if not name:
            problems.report(f"line {line}", "empty path")
            continue
        if not caption:
            problems.report(f"line {line}", f"empty caption for {name}")
            continue
        audio = Path(os.path.normpath(base / Path(name).expanduser()))
        if audio in absent:
            continue
        if audio not in groups and not missing.exists(audio):
            absent.add(audio)
            continue
        group = groups.setdefault(audio, {"name": name, "captions": [], "lines": []})
        group["captions"].append(caption)
        group["lines"].append(line)
    problems.finish()
    missing.finish()
    records = [_record(audio, g, base) for audio, g in groups.items()]
    finish_stats(stats, records, f"pairs {csv_path}")
    return records


def _record(audio: Path, group: dict, base: Path) -> AudioCaption:
    try:
        key = audio.relative_to(base).as_posix()
    except ValueError:
        key = audio.as_posix()
    return AudioCaption(
        audio_id=f"pairs/{key}",
        path=audio,
        captions=tuple(group["captions"]),
        source="pairs",
        meta={"lines": group["lines"]},
    )
