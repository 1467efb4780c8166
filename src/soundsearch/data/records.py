"""The record every reader returns, and the shared rules for bad rows and missing audio.

Readers parse a data set's files into :class:`AudioCaption` records. Two things can go wrong and
both follow one policy chosen by the caller:

- a malformed row (CSV) or entry (JSON): ``on_error="raise"`` stops with a :class:`DataError`
  naming the file, the line (or entry) and what is wrong; ``"skip"`` logs a warning and counts it;
- a missing audio file: ``on_missing`` is ``"raise"``, ``"skip"`` (log + count) or ``"keep"``
  (keep the record without looking at the disk: captions-only use such as caption augmentation).

What a reader did is counted in a :class:`ReadStats` the caller may pass in, and logged.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from soundsearch.errors import DataError

log = logging.getLogger(__name__)

ON_ERROR = ("raise", "skip")
ON_MISSING = ("raise", "skip", "keep")
MAX_WARNINGS = 10  # per file: further bad rows are only counted (and summarised)
MAX_EXAMPLES = 5  # missing files named in a summary


@dataclass(frozen=True)
class AudioCaption:
    """One audio file and its captions."""

    audio_id: str  # unique within the union of sources, e.g. "clotho/development/Foo bar.wav"
    path: Path  # the audio file
    captions: tuple[str, ...]  # 5 for ClothoV2, 1 for AudioCaps/WavCaps rows
    keywords: tuple[str, ...] = ()
    source: str = ""  # "clotho", "audiocaps", "wavcaps/FreeSound", "pairs", ...
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass
class ReadStats:
    """What readers did: rows seen, records made, rows skipped and why, files missing."""

    rows: int = 0  # data rows / JSON entries seen
    records: int = 0  # records returned
    captions: int = 0  # captions in the returned records
    bad_rows: int = 0  # malformed rows skipped (on_error="skip")
    missing_audio: int = 0  # records dropped (or that would be) because their audio is absent
    filtered: int = 0  # records dropped by a filter (e.g. Freesound ids of evaluation clips)
    missing_examples: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # one line per skipped row (first few)

    def add(self, other: ReadStats) -> None:
        """Accumulate ``other`` into this one (several sources, one summary)."""
        for name in ("rows", "records", "captions", "bad_rows", "missing_audio", "filtered"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        room = MAX_EXAMPLES - len(self.missing_examples)
        self.missing_examples.extend(other.missing_examples[: max(0, room)])
        self.problems.extend(other.problems[: max(0, 100 - len(self.problems))])

    def summary(self) -> str:
        return (
            f"{self.records} files, {self.captions} captions from {self.rows} rows; "
            f"{self.bad_rows} malformed rows skipped, {self.missing_audio} audio files missing"
            + (f", {self.filtered} filtered out" if self.filtered else "")
        )


def check_policy(on_error: str, on_missing: str | None) -> str:
    """Validate the two options; returns the effective ``on_missing`` (None: like on_error)."""
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, not {on_error!r}")
    on_missing = on_error if on_missing is None else on_missing
    if on_missing not in ON_MISSING:
        raise ValueError(f"on_missing must be one of {ON_MISSING}, not {on_missing!r}")
    return on_missing


class RowProblems:
    """Raise or record malformed rows of one file, per ``on_error``."""

    def __init__(self, path: Path, on_error: str, stats: ReadStats):
        self.path = path
        self.on_error = on_error
        self.stats = stats
        self.count = 0

    def report(self, where: str, what: str) -> None:
        """``where`` is e.g. "line 12" or "entry data[3]"; ``what`` says what is wrong."""
        message = f"{self.path}, {where}: {what}"
        if self.on_error == "raise":
            raise DataError(message + " (fix the file, or skip bad rows with on_error='skip')")
        self.count += 1
        self.stats.bad_rows += 1
        if len(self.stats.problems) < 100:
            self.stats.problems.append(message)
        if self.count <= MAX_WARNINGS:
            log.warning("skipping malformed row: %s", message)

    def finish(self) -> None:
        if self.count > MAX_WARNINGS:
            log.warning("%s: %d malformed rows skipped in all", self.path, self.count)


class MissingAudio:
    """Raise, record, or ignore records whose audio file is not there, per ``on_missing``."""

    def __init__(self, what: str, on_missing: str, stats: ReadStats):
        self.what = what
        self.on_missing = on_missing
        self.stats = stats
        self.missing: list[str] = []

    def exists(self, path: Path) -> bool:
        """True when the record should be kept (the file exists, or we do not look)."""
        if self.on_missing == "keep" or path.is_file():
            return True
        self.note(str(path))
        return False

    def note(self, name: str) -> None:
        """Record one missing file (``name``: a path or an id that was looked for)."""
        self.missing.append(name)

    def finish(self) -> None:
        """Raise or log once for all the missing files of this read."""
        n = len(self.missing)
        if not n:
            return
        examples = ", ".join(self.missing[:MAX_EXAMPLES]) + (", ..." if n > MAX_EXAMPLES else "")
        if self.on_missing == "raise":
            raise DataError(
                f"{self.what}: {n} audio files not found (e.g. {examples}); check the audio "
                "folder, or skip them with on_missing='skip'"
            )
        self.stats.missing_audio += n
        room = MAX_EXAMPLES - len(self.stats.missing_examples)
        self.stats.missing_examples.extend(self.missing[: max(0, room)])
        log.warning("%s: %d audio files not found, skipped (e.g. %s)", self.what, n, examples)


def read_text(path: Path, encoding: str = "utf-8-sig") -> str:
    """Whole file as text; a missing file or a bad byte is a DataError naming file and line."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError as e:
        raise DataError(f"{path}: file not found") from e
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from e
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise DataError(
            f"{path}, line {line}: not valid {encoding} text (byte {e.start}: {e.reason})"
        ) from e


def iter_csv(
    path: Path, problems: RowProblems, columns: tuple[str, ...], encoding: str = "utf-8-sig"
) -> Iterator[tuple[int, int, dict[str, str]]]:
    """(line number, data row index, row as a dict keyed by the header) for each good row.

    The header must hold ``columns`` (else a DataError: a whole-file problem). Rows whose number
    of fields differs from the header are reported to ``problems``; blank lines are ignored. The
    line number is the physical line where the row ends (1-based, the header is line 1); the data
    row index counts every non-blank row after the header from 0, malformed ones included.
    """
    reader = csv.reader(io.StringIO(read_text(path, encoding), newline=""))
    header = _header(path, reader, columns)
    index = -1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            index += 1
            problems.stats.rows += 1
            problems.report(f"line {reader.line_num}", f"malformed CSV ({e})")
            continue
        if not row or all(not c.strip() for c in row):
            continue
        index += 1
        problems.stats.rows += 1
        if len(row) != len(header):
            problems.report(
                f"line {reader.line_num}", f"{len(row)} fields, the header has {len(header)}"
            )
            continue
        yield reader.line_num, index, dict(zip(header, row, strict=True))


def _header(path: Path, reader: Iterator[list[str]], columns: tuple[str, ...]) -> list[str]:
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise DataError(f"{path}: empty file (expected a header row)") from None
    except csv.Error as e:
        raise DataError(f"{path}, line 1: malformed CSV header ({e})") from e
    absent = [c for c in columns if c not in header]
    if absent:
        raise DataError(
            f"{path}, line 1: missing column(s) {', '.join(absent)}; "
            f"expected a header with {', '.join(columns)}"
        )
    return header


def finish_stats(stats: ReadStats, records: list[AudioCaption], what: str) -> None:
    """Count the returned records and log one summary line."""
    stats.records += len(records)
    stats.captions += sum(len(r.captions) for r in records)
    log.info("%s: %d files, %d captions", what, len(records), sum(len(r.captions) for r in records))
