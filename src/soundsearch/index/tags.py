"""Descriptions and tags embedded in sound files, as ``{field: [values]}``.

Sources: Vorbis comments (OGG, Opus, FLAC), ID3 (MP3, and ID3 chunks in WAV/AIFF), MP4 atoms, all
via mutagen; and for WAV/RF64 a small RIFF chunk reader of our own for what mutagen does not read:
``LIST/INFO`` (INAM, ICMT, IKEY, ...), the Broadcast Wave ``bext`` description and ``iXML`` (including
the ``USER`` fields sound-library tools write: DESCRIPTION, CATEGORY, KEYWORDS, FXNAME, ...).

Field names are normalised to a small vocabulary (:data:`TEXT_FIELDS` feed the text model; every
field feeds keyword search). Unreadable tags never fail indexing: the reader returns what it found
and logs the rest at debug level.
"""

from __future__ import annotations

import logging
import os
import struct
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import BinaryIO

log = logging.getLogger(__name__)

# Fields that describe the sound (given to the text model, in this order).
TEXT_FIELDS = ("title", "description", "keywords", "category", "subcategory", "comment", "genre")
# Fields that are only kept for keyword search.
OTHER_FIELDS = ("artist", "album", "library", "originator", "project", "scene")

MAX_VALUE_CHARS = 2000  # per value; some libraries paste whole catalogue pages into comments
MAX_CHUNK_BYTES = 1 << 20  # iXML / INFO chunks larger than this are skipped

# Source key (lowercased) -> our field.
_KEY_MAP: dict[str, str] = {
    # Vorbis comments / generic
    "title": "title", "description": "description", "comment": "comment", "comments": "comment",
    "keywords": "keywords", "keyword": "keywords", "tags": "keywords", "genre": "genre",
    "category": "category", "subcategory": "subcategory", "artist": "artist", "album": "album",
    "library": "library", "fxname": "title", "subject": "description", "catid": "category",
    # ID3 frames
    "tit2": "title", "tit1": "category", "tit3": "description", "tpe1": "artist", "talb": "album",
    "tcon": "genre", "comm": "comment", "uslt": "description",
    # MP4 atoms
    "\xa9nam": "title", "\xa9cmt": "comment", "\xa9gen": "genre", "\xa9art": "artist",
    "\xa9alb": "album", "desc": "description", "ldes": "description",
    # RIFF LIST/INFO
    "inam": "title", "icmt": "comment", "ikey": "keywords", "isbj": "description",
    "ignr": "genre", "iart": "artist", "iprd": "album",
    # iXML
    "note": "description", "bwf_description": "description", "project": "project", "scene": "scene",
}  # fmt: skip

Tags = dict[str, list[str]]


def _add(tags: Tags, key: str, value: object) -> None:
    field = _KEY_MAP.get(key.lower().strip())
    if field is None:
        return
    text = str(value).replace("\x00", " ").strip()
    if not text:
        return
    text = text[:MAX_VALUE_CHARS]
    values = tags.setdefault(field, [])
    if text not in values:
        values.append(text)


def read_tags(path: str | os.PathLike) -> Tags:
    """All tags found in ``path`` (empty dict if none or unreadable)."""
    tags: Tags = {}
    _read_mutagen(path, tags)
    if str(path).lower().endswith((".wav", ".wave", ".bwf", ".rf64")):
        try:
            with open(path, "rb") as f:
                _read_riff(f, tags)
        except (OSError, ValueError, struct.error) as e:
            log.debug("%s: RIFF chunks not readable (%s)", path, e)
    return tags


def _read_mutagen(path: str | os.PathLike, tags: Tags) -> None:
    try:
        import mutagen

        audio = mutagen.File(path)
    # mutagen raises many exception types on corrupt files; tags are optional
    except Exception as e:  # noqa: BLE001
        log.debug("%s: mutagen could not read tags (%s: %s)", path, type(e).__name__, e)
        return
    if audio is None or audio.tags is None:
        return
    try:
        items = list(audio.tags.items())
    except Exception as e:  # noqa: BLE001 (as above)
        log.debug("%s: tag list not readable (%s)", path, e)
        return
    for key, value in items:
        _add_mutagen_item(tags, str(key), value)


def _add_mutagen_item(tags: Tags, key: str, value: object) -> None:
    frame_id = key.split(":", 1)[0]
    if frame_id.upper() == "TXXX":  # ID3 user text: TXXX:DESCRIPTION etc.
        key = key.split(":", 1)[1] if ":" in key else key
    elif frame_id.upper() in ("COMM", "USLT"):
        key = frame_id
    elif frame_id.startswith("----"):  # MP4 freeform: ----:com.apple.iTunes:DESCRIPTION
        key = key.rsplit(":", 1)[-1]
    texts = getattr(value, "text", value)
    if isinstance(texts, (str, bytes)) or not hasattr(texts, "__iter__"):
        texts = [texts]
    for t in texts:
        _add(tags, key, t.decode("utf-8", "replace") if isinstance(t, bytes) else t)


# -- RIFF / Broadcast Wave / iXML ------------------------------------------------------------


def _chunks(f: BinaryIO) -> Iterator[tuple[bytes, int, int]]:
    """(chunk id, body offset, body size) of the top-level chunks of a RIFF/RF64 WAVE file."""
    head = f.read(12)
    if len(head) < 12 or head[:4] not in (b"RIFF", b"RF64") or head[8:12] != b"WAVE":
        return
    end = os.fstat(f.fileno()).st_size
    pos = 12
    while pos + 8 <= end:
        f.seek(pos)
        cid, size = struct.unpack("<4sI", f.read(8))
        if size == 0xFFFFFFFF:  # RF64 data chunk: the real size is in ds64; nothing after it for us
            return
        if pos + 8 + size > end:
            size = end - pos - 8  # truncated file: read what is there
        yield cid, pos + 8, size
        pos += 8 + size + (size & 1)  # chunks are word aligned


def _read_riff(f: BinaryIO, tags: Tags) -> None:
    for cid, offset, size in _chunks(f):
        if size > MAX_CHUNK_BYTES or cid not in (b"LIST", b"bext", b"iXML"):
            continue
        f.seek(offset)
        body = f.read(size)
        if cid == b"LIST" and body[:4] == b"INFO":
            _parse_info(body[4:], tags)
        elif cid == b"bext":
            _parse_bext(body, tags)
        elif cid == b"iXML":
            _parse_ixml(body, tags)


def _text(raw: bytes) -> str:
    raw = raw.split(b"\x00", 1)[0]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _parse_info(body: bytes, tags: Tags) -> None:
    pos = 0
    while pos + 8 <= len(body):
        sid, size = struct.unpack("<4sI", body[pos : pos + 8])
        _add(tags, sid.decode("latin-1"), _text(body[pos + 8 : pos + 8 + size]))
        pos += 8 + size + (size & 1)


def _parse_bext(body: bytes, tags: Tags) -> None:
    """EBU Tech 3285: Description (256 bytes), Originator (32), OriginatorReference (32), ..."""
    _add(tags, "description", _text(body[:256]))
    _add(tags, "library", _text(body[256:288]))


def _parse_ixml(body: bytes, tags: Tags) -> None:
    try:
        root = ET.fromstring(body.split(b"\x00", 1)[0])
    except ET.ParseError as e:
        log.debug("iXML chunk is not valid XML (%s)", e)
        return
    for el in root.iter():
        if el.text and len(el) == 0:
            _add(tags, el.tag.split("}")[-1], el.text)


def tag_text(tags: Tags, fields: tuple[str, ...] = TEXT_FIELDS) -> str:
    """The values of ``fields`` joined into one phrase ("" if none)."""
    return ". ".join(v for f in fields for v in tags.get(f, ()))
