"""Leakage filter: drop training records whose Freesound id belongs to evaluation clips.

ClothoV2 and WavCaps' FreeSound part both come from Freesound; a WavCaps clip may be a ClothoV2
evaluation clip (the reference code did not filter, its successors do). Records carry the id in
``meta["freesound_id"]`` (ClothoV2: ``sound_id`` of the metadata CSV; WavCaps FreeSound: ``id``).
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from soundsearch.data.records import AudioCaption, ReadStats, read_text
from soundsearch.errors import DataError

log = logging.getLogger(__name__)

ID_COLUMNS = ("freesound_id", "sound_id", "id")


def read_id_list(path: str | os.PathLike) -> set[str]:
    """Freesound ids from a CSV: the column named freesound_id / sound_id / id, else the first.

    A header row is optional (a first row whose chosen cell is not a number is taken as one).
    Every other row must hold a whole number there; a DataError names the file and line if not.
    """
    path = Path(path)
    lines = read_text(path).splitlines()
    rows = [(n, [c.strip() for c in line.split(",")]) for n, line in enumerate(lines, 1)]
    rows = [(n, cells) for n, cells in rows if any(cells)]
    if not rows:
        raise DataError(f"{path}: no ids (expected one Freesound id per line)")
    column = 0
    if not rows[0][1][0].isdigit():
        header = [c.lower() for c in rows[0][1]]
        column = next((header.index(c) for c in ID_COLUMNS if c in header), 0)
        rows = rows[1:]
    ids = set()
    for n, cells in rows:
        value = cells[column] if column < len(cells) else ""
        if not value.isdigit():
            raise DataError(f"{path}, line {n}: {value!r} is not a Freesound id (a whole number)")
        ids.add(str(int(value)))
    log.info("%s: %d Freesound ids to exclude", path, len(ids))
    return ids


def freesound_ids(records: Iterable[AudioCaption]) -> set[str]:
    """The Freesound ids of ``records`` (e.g. of ClothoV2 evaluation, to exclude elsewhere)."""
    ids = (str(r.meta.get("freesound_id", "")).strip() for r in records)
    return {str(int(i)) for i in ids if i.isdigit()}


def write_id_list(path: str | os.PathLike, ids: Iterable[str]) -> None:
    """A CSV with header ``freesound_id`` and one id per line, sorted numerically."""
    rows = sorted({str(int(i)) for i in ids}, key=int)
    Path(path).write_text("freesound_id\n" + "".join(f"{i}\n" for i in rows), encoding="utf-8")


def filter_freesound_ids(
    records: Iterable[AudioCaption], ids: set[str], stats: ReadStats | None = None
) -> list[AudioCaption]:
    """``records`` without those whose Freesound id is in ``ids``; counts logged per source."""
    kept: list[AudioCaption] = []
    dropped: Counter[str] = Counter()
    dropped_captions = 0
    for r in records:
        fid = str(r.meta.get("freesound_id", "")).strip()
        if fid.isdigit() and str(int(fid)) in ids:
            dropped[r.source] += 1
            dropped_captions += len(r.captions)
        else:
            kept.append(r)
    total = sum(dropped.values())
    if stats is not None:  # the records were counted when read: move them to "filtered"
        stats.filtered += total
        stats.records -= total
        stats.captions -= dropped_captions
    per_source = ", ".join(f"{n} from {s}" for s, n in sorted(dropped.items())) or "none"
    log.info(
        "leakage filter: dropped %d records with an excluded Freesound id (%s)", total, per_source
    )
    return kept
