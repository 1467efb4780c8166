"""WavCaps: one JSON file per source plus the extracted audio of each source.

Layout under ``root`` (as in the WavCaps Hugging Face repository, archives extracted)::

    json_files/<Source>/*.json   {"num_captions_per_audio": 1, "data": [{"id", "caption", "audio", ...}]}
    audio/<Source>/...           the audio files (any subfolders); ``<Source>/...`` directly under
                                 ``root`` is accepted too

Sources: AudioSet_SL, BBC_Sound_Effects, FreeSound, SoundBible (other folder names under
``json_files`` can be asked for by name; ``json_files/blacklist`` is never read as data). An
entry's audio file is found by the base name of its ``audio`` field; when that field has no
extension, or is a placeholder such as ``wav_path``, by the stem (``audio`` field, then ``id``)
with any audio extension. ``id`` of the FreeSound source is the Freesound sound id (leakage filter).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from soundsearch.audio import AUDIO_EXTENSIONS
from soundsearch.data.records import (
    AudioCaption,
    MissingAudio,
    ReadStats,
    RowProblems,
    check_policy,
    finish_stats,
    read_text,
)
from soundsearch.errors import DataError

log = logging.getLogger(__name__)

WAVCAPS_SOURCES = ("AudioSet_SL", "BBC_Sound_Effects", "FreeSound", "SoundBible")


def load_json(path: Path) -> Any:
    """Parse a JSON file; a syntax error is a DataError naming the file, line and column."""
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}, line {e.lineno} column {e.colno}: invalid JSON ({e.msg})") from e


class AudioIndex:
    """Files of one source folder by exact name and by stem (for fields without an extension)."""

    def __init__(self, folder: Path | None):
        self.by_name: dict[str, Path] = {}
        self.by_stem: dict[str, Path] = {}
        if folder is None:
            return
        for dirpath, _, files in os.walk(folder):
            for name in sorted(files):
                stem, ext = os.path.splitext(name)
                if ext.lower() not in AUDIO_EXTENSIONS:
                    continue
                path = Path(dirpath) / name
                self.by_name.setdefault(name, path)
                self.by_stem.setdefault(stem, path)

    def find(self, audio_field: str, entry_id: str) -> Path | None:
        base = os.path.basename(audio_field.replace("\\", "/")) if audio_field else ""
        if base and base in self.by_name:
            return self.by_name[base]
        for stem in (os.path.splitext(base)[0], base, entry_id, os.path.splitext(entry_id)[0]):
            if stem and stem in self.by_stem:
                return self.by_stem[stem]
        return None


def _audio_folder(root: Path, source: str) -> Path | None:
    for folder in (root / "audio" / source, root / source):
        if folder.is_dir():
            return folder
    return None


def wavcaps_json_files(root: Path, source: str) -> list[Path]:
    folder = root / "json_files" / source
    files = sorted(folder.glob("*.json")) if folder.is_dir() else []
    single = root / "json_files" / f"{source}.json"
    if single.is_file():
        files.append(single)
    if not files:
        raise DataError(f"no WavCaps JSON for source {source!r}: expected {folder}/*.json")
    return files


def read_wavcaps(
    root: str | os.PathLike,
    sources: tuple[str, ...] | list[str] | None = None,
    *,
    on_error: str = "raise",
    on_missing: str | None = None,
    stats: ReadStats | None = None,
) -> list[AudioCaption]:
    """Records of the given WavCaps sources (default: the four of the release that are present)."""
    on_missing = check_policy(on_error, on_missing)
    stats = stats if stats is not None else ReadStats()
    root = Path(root)
    if sources is None:
        sources = [s for s in WAVCAPS_SOURCES if (root / "json_files" / s).is_dir()]
        if not sources:
            raise DataError(
                f"{root}: no WavCaps sources found (expected json_files/<Source>/*.json for "
                f"any of {', '.join(WAVCAPS_SOURCES)})"
            )
    records: list[AudioCaption] = []
    for source in sources:
        folder = _audio_folder(root, source)
        index = AudioIndex(folder if on_missing != "keep" else None)
        missing = MissingAudio(
            f"WavCaps {source} ({folder or root / 'audio' / source})", on_missing, stats
        )
        for path in wavcaps_json_files(root, source):
            records.extend(_read_json(path, source, folder, index, missing, on_error, stats))
        missing.finish()
    finish_stats(stats, records, f"WavCaps {', '.join(sources)}")
    return records


def _read_json(
    path: Path,
    source: str,
    folder: Path | None,
    index: AudioIndex,
    missing: MissingAudio,
    on_error: str,
    stats: ReadStats,
) -> list[AudioCaption]:
    doc = load_json(path)
    data = doc.get("data") if isinstance(doc, dict) else doc
    if not isinstance(data, list):
        raise DataError(f'{path}: expected {{"data": [...]}} (a list of entries) at the top level')
    problems = RowProblems(path, on_error, stats)
    out = []
    for i, entry in enumerate(data):
        stats.rows += 1
        parsed = _parse_entry(entry, f"entry data[{i}]", problems)
        if parsed is None:
            continue
        entry_id, captions, audio_field = parsed
        if missing.on_missing == "keep":
            audio = (folder or path.parent) / (os.path.basename(audio_field) or entry_id)
        else:
            audio = index.find(audio_field, entry_id)
            if audio is None:
                missing.note(f"{audio_field or entry_id} (id {entry_id})")
                continue
        out.append(_record(source, entry_id, audio, captions, entry, i))
    problems.finish()
    return out


def _parse_entry(
    entry: Any, where: str, problems: RowProblems
) -> tuple[str, tuple[str, ...], str] | None:
    if not isinstance(entry, dict):
        problems.report(where, f"expected an object, found {type(entry).__name__}")
        return None
    entry_id = entry.get("id")
    if entry_id is None or str(entry_id).strip() == "":
        problems.report(where, "no 'id'")
        return None
    caption = entry.get("caption")
    captions = [caption] if isinstance(caption, str) else caption
    if (
        not isinstance(captions, list)
        or not captions
        or not all(isinstance(c, str) and c.strip() for c in captions)
    ):
        problems.report(where, f"'caption' must be a non-empty string (id {entry_id})")
        return None
    audio_field = entry.get("audio", "")
    if not isinstance(audio_field, str):
        problems.report(where, f"'audio' must be a string (id {entry_id})")
        return None
    return str(entry_id).strip(), tuple(c.strip() for c in captions), audio_field.strip()


def _record(
    source: str, entry_id: str, audio: Path, captions: tuple[str, ...], entry: dict, i: int
) -> AudioCaption:
    meta: dict[str, Any] = {"id": entry_id, "entry": i}
    if isinstance(entry.get("duration"), int | float):
        meta["duration"] = float(entry["duration"])
    if source == "FreeSound" and entry_id.isdigit():
        meta["freesound_id"] = entry_id
    tags = entry.get("tags")
    keywords = tuple(str(t) for t in tags) if isinstance(tags, list) else ()
    return AudioCaption(
        audio_id=f"wavcaps/{source}/{entry_id}",
        path=audio,
        captions=captions,
        keywords=keywords,
        source=f"wavcaps/{source}",
        meta=meta,
    )
