"""The ClothoV2_GPT variations file (REFERENCE.md section 6): rephrasings of each caption.

A JSON list of records ``{"idx", "path", "caption", "query", "response", "variations": [...], ...}``
where ``idx`` = row * 5 + caption number of the ClothoV2 development captions file. Only ``idx``
and ``variations`` are needed to read it; other fields are kept as written. JSON Lines (one record
per line) and ``{"data": [...]}`` are read too.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from soundsearch.data.records import ReadStats, RowProblems, check_policy, read_text
from soundsearch.errors import DataError

log = logging.getLogger(__name__)


def _entries(path: Path) -> list[tuple[str, Any]]:
    """(location, record) pairs from a JSON list, ``{"data": [...]}`` or JSON Lines file."""
    text = read_text(path)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        if not text.lstrip().startswith("{"):
            raise DataError(
                f"{path}, line {e.lineno} column {e.colno}: invalid JSON ({e.msg})"
            ) from e
        return _json_lines(text)  # several objects: JSON Lines
    if isinstance(doc, dict):
        doc = doc.get("data", [doc])
    if not isinstance(doc, list):
        raise DataError(f"{path}: expected a JSON list of variation records")
    return [(f"record [{i}]", r) for i, r in enumerate(doc)]


def _json_lines(text: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            out.append((f"line {n}", json.loads(line)))
        except json.JSONDecodeError as e:
            out.append((f"line {n}", DataError(f"invalid JSON ({e.msg})")))
    return out


def read_variations(
    path: str | os.PathLike, *, on_error: str = "raise", stats: ReadStats | None = None
) -> dict[int, list[str]]:
    """idx -> its variations. Bad records raise a DataError naming file and record, or are skipped."""
    check_policy(on_error, None)
    path = Path(path)
    stats = stats if stats is not None else ReadStats()
    problems = RowProblems(path, on_error, stats)
    out: dict[int, list[str]] = {}
    for where, record in _entries(path):
        stats.rows += 1
        if isinstance(record, DataError):
            problems.report(where, str(record))
            continue
        parsed = _parse(record, where, problems)
        if parsed is None:
            continue
        idx, variations = parsed
        if idx in out:
            problems.report(where, f"idx {idx} appears more than once")
            continue
        out[idx] = variations
    problems.finish()
    stats.records += len(out)
    stats.captions += sum(len(v) for v in out.values())
    log.info("%s: variations of %d captions", path, len(out))
    return out


def _parse(record: Any, where: str, problems: RowProblems) -> tuple[int, list[str]] | None:
    if not isinstance(record, dict):
        problems.report(where, f"expected an object, found {type(record).__name__}")
        return None
    idx = record.get("idx")
    if isinstance(idx, str) and idx.strip().isdigit():
        idx = int(idx)
    if not isinstance(idx, int) or isinstance(idx, bool) or idx < 0:
        problems.report(where, f"'idx' must be a non-negative integer, found {idx!r}")
        return None
    variations = record.get("variations")
    if not isinstance(variations, list) or not all(
        isinstance(v, str) and v.strip() for v in variations
    ):
        problems.report(where, f"'variations' must be a list of non-empty strings (idx {idx})")
        return None
    if not variations:
        problems.report(where, f"'variations' is empty (idx {idx})")
        return None
    return idx, [v.strip() for v in variations]


def write_variations(path: str | os.PathLike, records: list[dict[str, Any]]) -> None:
    """Write records (each with ``idx`` and ``variations``) as a JSON list, atomically.

    The file appears complete or not at all: a temporary file in the same folder is written,
    flushed to disk and renamed over ``path``.
    """
    path = Path(path)
    problems = RowProblems(path, "raise", ReadStats())
    for i, record in enumerate(records):
        _parse(record, f"record [{i}] (to be written)", problems)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(records, f, ensure_ascii=False, indent=1)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
