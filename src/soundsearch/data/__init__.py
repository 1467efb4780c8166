"""Data sets as records, one reader per source, and the training dataset over them.

A source is named by a spec string (the CLI's ``--data`` and a recipe's ``sources``)::

    clotho:ROOT                      ClothoV2 folder (captions + metadata CSVs, split folders)
    audiocaps:CSV_DIR[:AUDIO_DIR]    AudioCaps CSVs; the clips under AUDIO_DIR (default CSV_DIR)
    wavcaps:ROOT[:Source,...]        WavCaps JSON + audio; all four sources when none are named
    pairs:FILE.csv                   your own ``path,caption`` file

``split`` is a source's split name (train/val/test or ClothoV2's development/validation/
evaluation); several joined with ``+`` (``train+val+test``) are read one after the other. WavCaps and
pairs files have no splits: their records are returned for any split.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable

from soundsearch.data.audiocaps import read_audiocaps
from soundsearch.data.clotho import CLOTHO_SPLITS, read_clotho
from soundsearch.data.filters import (
    filter_freesound_ids,
    freesound_ids,
    read_id_list,
    write_id_list,
)
from soundsearch.data.gpt import read_variations, write_variations
from soundsearch.data.pairs import read_pairs
from soundsearch.data.records import AudioCaption, ReadStats
from soundsearch.data.wavcaps import WAVCAPS_SOURCES, read_wavcaps
from soundsearch.errors import DataError

log = logging.getLogger(__name__)

SOURCE_KINDS = ("clotho", "audiocaps", "wavcaps", "pairs")


def parse_spec(spec: str) -> tuple[str, str, str | None]:
    """``"kind:PATH[:EXTRA]"`` -> (kind, path, extra or None)."""
    kind, sep, rest = spec.partition(":")
    if not sep or kind not in SOURCE_KINDS or not rest:
        forms = (
            "clotho:ROOT, audiocaps:CSV_DIR[:AUDIO_DIR], wavcaps:ROOT[:Source,...], pairs:FILE.csv"
        )
        raise DataError(f"data source {spec!r} not understood; use one of: {forms}")
    path, sep, extra = rest.partition(":")
    return kind, path, (extra if sep else None)


def load_source(
    spec: str,
    split: str = "train",
    *,
    on_error: str = "raise",
    on_missing: str | None = None,
    stats: ReadStats | None = None,
) -> list[AudioCaption]:
    """The records of one source spec and split (see the module docstring).

    Audio files are checked: ``on_missing`` (default: same as ``on_error``) decides whether a
    missing one raises or is skipped and counted. ``stats`` (optional) accumulates the counts.
    """
    kind, path, extra = parse_spec(spec)
    options = {"on_error": on_error, "on_missing": on_missing, "stats": stats}
    records: list[AudioCaption] = []
    for part in split.split("+"):
        if kind == "clotho":
            if extra:
                raise DataError(f"{spec}: clotho takes no second field")
            records += read_clotho(path, part, **options)
        elif kind == "audiocaps":
            records += read_audiocaps(path, part, extra or None, **options)
        elif kind == "wavcaps":
            chosen = tuple(s for s in extra.split(",") if s) if extra else None
            return read_wavcaps(path, chosen, **options)  # no splits: read once
        else:
            if extra:
                raise DataError(f"{spec}: pairs takes one CSV file")
            return read_pairs(path, **options)
    return records


def load_sources(
    specs: Iterable[str | tuple[str, str]],
    split: str = "train",
    *,
    exclude_freesound_ids: str | os.PathLike | set[str] | None = None,
    on_error: str = "raise",
    on_missing: str | None = None,
    stats: ReadStats | None = None,
) -> list[AudioCaption]:
    """The union of several sources (training data), leakage-filtered, duplicates dropped.

    An item of ``specs`` is a spec read at ``split``, or a (spec, split) pair with its own split.

    ``exclude_freesound_ids`` is a CSV of Freesound ids, or a set of them (e.g. ``freesound_ids``
    of the ClothoV2 evaluation records), whose records are removed (see
    :mod:`soundsearch.data.filters`).
    """
    stats = stats if stats is not None else ReadStats()
    records: list[AudioCaption] = []
    for item in specs:
        spec, part = (item, split) if isinstance(item, str) else item
        records += load_source(spec, part, on_error=on_error, on_missing=on_missing, stats=stats)
    seen: set[str] = set()
    unique = []
    for r in records:
        if r.audio_id in seen:
            stats.records -= 1
            stats.captions -= len(r.captions)
            continue
        seen.add(r.audio_id)
        unique.append(r)
    if len(unique) < len(records):
        log.warning("dropped %d records listed twice (same audio id)", len(records) - len(unique))
    if exclude_freesound_ids:
        ids = exclude_freesound_ids
        ids = set(ids) if isinstance(ids, set) else read_id_list(ids)
        unique = filter_freesound_ids(unique, ids, stats)
    log.info("training data: %s", stats.summary())
    return unique


__all__ = [
    "CLOTHO_SPLITS",
    "SOURCE_KINDS",
    "WAVCAPS_SOURCES",
    "AudioCaption",
    "ReadStats",
    "filter_freesound_ids",
    "freesound_ids",
    "load_source",
    "load_sources",
    "parse_spec",
    "read_audiocaps",
    "read_clotho",
    "read_id_list",
    "read_pairs",
    "read_variations",
    "read_wavcaps",
    "write_id_list",
    "write_variations",
]
