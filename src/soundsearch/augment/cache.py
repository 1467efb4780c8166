"""The answer cache: an append-only JSONL file, one line per caption asked, durable line by line.

Every line carries the prompt version, so a changed prompt never reuses old answers. A line is
flushed and fsynced before the next caption is counted as done, so a crash loses at most the
caption in flight; a half-written last line (the crash happened while writing it) is cut off with a
warning when the cache is opened again. The file is locked while a run uses it: two runs writing
one cache would ask for the same captions twice.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import IO, Any, Self

from soundsearch.errors import UserError

log = logging.getLogger(__name__)

try:
    import fcntl
except ModuleNotFoundError:  # pragma: no cover - Windows: no lock
    fcntl = None  # type: ignore[assignment]


class CacheError(UserError):
    """The cache file cannot be used (locked by another run, unreadable)."""


def _cut_partial_tail(path: Path) -> None:
    """Drop a last line that has no newline and is not valid JSON (a write cut short)."""
    with open(path, "rb+") as f:
        data = f.read()
        if not data or data.endswith(b"\n"):
            return
        start = data.rfind(b"\n") + 1
        try:
            json.loads(data[start:])
        except ValueError:
            log.warning(
                "%s: ignoring a partly written last line (%d bytes; a run was cut off while "
                "writing it); that caption will be asked again",
                path,
                len(data) - start,
            )
            f.truncate(start)
            return
        f.write(b"\n")  # complete line that only lacks its newline


def read_cache(path: str | os.PathLike, version: str) -> dict[int, dict[str, Any]]:
    """The newest line of prompt ``version`` for every idx (later lines win). Bad lines: warned."""
    path = Path(path)
    if not path.exists():
        return {}
    entries: dict[int, dict[str, Any]] = {}
    bad = other = 0
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                idx = int(rec["idx"])
            except (ValueError, KeyError, TypeError):
                bad += 1
                log.warning("%s:%d: not a cache record, ignored", path, lineno)
                continue
            if rec.get("version") != version:
                other += 1
                continue
            entries[idx] = rec
    if other:
        log.info("%s: %d answers of another prompt version are not reused", path, other)
    return entries


class CacheWriter:
    """Appends records to the cache, each durable (flush + fsync) before :meth:`append` returns."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._f: IO[str] | None = None

    def __enter__(self) -> Self:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = open(self.path, "a+", encoding="utf-8")
        if fcntl is not None:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                f.close()
                raise CacheError(
                    f"{self.path} is in use by another augment run; wait for it or use --cache"
                ) from e
        _cut_partial_tail(self.path)
        self._f = f
        return self

    def __exit__(self, *exc: object) -> None:
        if self._f is not None:
            self._f.close()  # closing releases the lock
            self._f = None

    def append(self, record: dict[str, Any]) -> None:
        assert self._f is not None, "use CacheWriter as a context manager"
        self._f.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())
