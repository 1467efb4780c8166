"""The index on disk: one SQLite database (WAL) holding files, segments, vectors, keywords, errors.

Layout of an index folder::

    index.db        SQLite, WAL mode: files, segments, errors, meta, roots, fts (FTS5, porter stemmer)
    index.lock      writer lock (see lock.py)
    cache/          vectors-<uuid>-<generation>.npz: the vectors as contiguous float16 matrices

Vectors are float16 BLOBs inside SQLite, written in the same transaction as the rows they belong
to, so a crash (Ctrl-C, kill -9, power loss) can never leave vectors and rows out of step: what a
committed batch wrote is all there, an interrupted batch left nothing. Searching needs one matrix
per channel; reading a million BLOBs takes seconds, so the matrices are also written to a cache file
named after the index's ``generation`` (a counter every write transaction bumps). A reader whose
generation matches loads the cache (one sequential read); otherwise it rebuilds it from SQLite.
The cache is derived data: deleting ``cache/`` is always safe.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from soundsearch.errors import UserError

log = logging.getLogger(__name__)

DB_NAME = "index.db"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS roots (path TEXT PRIMARY KEY, added REAL NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,      -- resolved absolute path: the file's identity
    root TEXT NOT NULL,             -- the indexed folder it was found under
    rel TEXT NOT NULL,              -- path relative to root (its folders are metadata)
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    hash TEXT NOT NULL,             -- content hash (scan.content_hash)
    duration REAL, sample_rate INTEGER, channels INTEGER,
    tags TEXT NOT NULL DEFAULT '{}',  -- JSON {field: [values]}
    doc TEXT NOT NULL DEFAULT '',     -- the sentence the text model embedded
    text_vec BLOB,                    -- float16 [text_dim]
    acoustic_model TEXT,              -- identity of the model that embedded its segments
    indexed_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS segments (
    id INTEGER PRIMARY KEY,
    file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL, start REAL NOT NULL, end REAL NOT NULL,
    vec BLOB NOT NULL                 -- float16 [acoustic_dim]
);
CREATE INDEX IF NOT EXISTS segments_file ON segments(file_id);
CREATE TABLE IF NOT EXISTS errors (
    path TEXT PRIMARY KEY, root TEXT NOT NULL, kind TEXT NOT NULL, reason TEXT NOT NULL,
    size INTEGER, mtime_ns INTEGER, time REAL NOT NULL
);
CREATE VIRTUAL TABLE IF NOT EXISTS fts USING fts5(
    name, folder, tags, tokenize = 'porter unicode61 remove_diacritics 2'
);
"""


@dataclass
class Segment:
    start: float  # seconds
    end: float
    vec: np.ndarray  # [acoustic_dim] float16, L2-normalised


@dataclass
class FileRecord:
    """Everything one indexed file contributes, written in one go."""

    path: str
    root: str
    rel: str
    size: int
    mtime_ns: int
    hash: str
    duration: float | None = None
    sample_rate: int | None = None
    channels: int | None = None
    tags: dict[str, list[str]] = field(default_factory=dict)
    doc: str = ""
    fts_name: str = ""
    fts_folder: str = ""
    fts_tags: str = ""
    text_vec: np.ndarray | None = None  # [text_dim] float16
    segments: list[Segment] | None = None  # None: no acoustic model
    acoustic_model: str | None = None


@dataclass
class ErrorRecord:
    path: str
    root: str
    kind: str  # not-audio | corrupt | empty | permission | symlink | bad-name | crashed | other
    reason: str
    size: int | None = None
    mtime_ns: int | None = None


@dataclass
class Known:
    """What the index knows about a path, for the incremental diff."""

    id: int
    size: int
    mtime_ns: int
    hash: str
    acoustic_model: str | None


@dataclass
class Matrices:
    """The vectors of one generation, as contiguous arrays (row order = id order)."""

    generation: str
    text: np.ndarray  # [F, text_dim] float16
    text_file: np.ndarray  # [F] int64 file ids
    acoustic: np.ndarray  # [S, acoustic_dim] float16
    seg_file: np.ndarray  # [S] int64 file ids
    seg_start: np.ndarray  # [S] float32 seconds


class Store:
    """Access to one index folder. Thread-safe (one connection behind a lock)."""

    def __init__(self, index_dir: str | os.PathLike, create: bool = False):
        self.dir = Path(index_dir)
        self.db_path = self.dir / DB_NAME
        if not self.db_path.exists() and not create:
            raise UserError(
                f"no index at {self.dir}; build one with `soundsearch index FOLDER` "
                "(or point --index / SOUNDSEARCH_INDEX at an existing one)"
            )
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self.con = sqlite3.connect(self.db_path, timeout=30.0, check_same_thread=False)
        try:
            self._open(create)
        except sqlite3.DatabaseError as e:
            self.con.close()
            raise UserError(
                f"{self.db_path} is not a usable soundsearch index ({e}); move it away, or "
                "choose another --index folder"
            ) from e

    def _open(self, create: bool) -> None:
        if create:
            # 16 KiB pages hold seven 1024-d float16 vectors (2 KiB each); 4 KiB pages hold one.
            self.con.execute("PRAGMA page_size=16384")  # no effect once the file has tables
        self.con.execute("PRAGMA journal_mode=WAL")
        self.con.execute("PRAGMA journal_size_limit=67108864")  # shrink the WAL after big runs
        self.con.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: consistent after any crash
        self.con.execute("PRAGMA foreign_keys=ON")
        if create:
            self._create()
        self._check_version()

    def _create(self) -> None:
        with self._lock:
            self.con.executescript(_SCHEMA)  # idempotent (IF NOT EXISTS); commits by itself
        with self.transaction() as con:
            con.execute(
                "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?), ('uuid', ?), "
                "('generation', '0'), ('created', ?)",
                (str(SCHEMA_VERSION), uuid.uuid4().hex, str(time.time())),
            )

    def _check_version(self) -> None:
        version = self.get_meta("schema_version")
        if version is None:
            raise UserError(f"{self.db_path} is not a soundsearch index (no schema version)")
        if int(version) != SCHEMA_VERSION:
            raise UserError(
                f"index {self.dir} has schema version {version}, this soundsearch reads "
                f"{SCHEMA_VERSION}; rebuild it with `soundsearch index --index NEW_DIR FOLDER`"
            )

    def close(self) -> None:
        with self._lock:
            self.con.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic write: commit on success, roll back on any exception (Ctrl-C included)."""
        with self._lock:
            self.con.execute("BEGIN IMMEDIATE")
            try:
                yield self.con
            except BaseException:
                self.con.rollback()
                raise
            self.con.commit()

    def query(self, sql: str, params: Iterable = ()) -> list[tuple]:
        with self._lock:
            return self.con.execute(sql, tuple(params)).fetchall()

    # meta --------------------------------------------------------------------------------
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        try:
            rows = self.query("SELECT value FROM meta WHERE key = ?", (key,))
        except sqlite3.OperationalError:
            return default
        return rows[0][0] if rows else default

    def set_meta(self, con: sqlite3.Connection, key: str, value: str | None) -> None:
        if value is None:
            con.execute("DELETE FROM meta WHERE key = ?", (key,))
        else:
            con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def generation(self) -> str:
        """Changes whenever vectors change; names the matrix cache."""
        return f"{self.get_meta('uuid')}-{self.get_meta('generation')}"

    def _bump(self, con: sqlite3.Connection) -> None:
        con.execute(
            "UPDATE meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) "
            "WHERE key = 'generation'"
        )

    # roots -------------------------------------------------------------------------------
    def add_roots(self, roots: Iterable[str]) -> None:
        with self.transaction() as con:
            for r in roots:
                con.execute("INSERT OR IGNORE INTO roots VALUES (?, ?)", (r, time.time()))

    def roots(self) -> list[str]:
        return [r[0] for r in self.query("SELECT path FROM roots ORDER BY path")]

    # incremental diff --------------------------------------------------------------------
    def known_files(self, roots: Iterable[str]) -> dict[str, Known]:
        out: dict[str, Known] = {}
        for root in roots:
            rows = self.query(
                "SELECT path, id, size, mtime_ns, hash, acoustic_model FROM files WHERE root = ?",
                (root,),
            )
            for path, *rest in rows:
                out[path] = Known(*rest)
        return out

    def known_errors(self, roots: Iterable[str]) -> dict[str, tuple[int | None, int | None, str]]:
        """path -> (size, mtime_ns, kind) of the recorded errors under ``roots``."""
        out: dict[str, tuple[int | None, int | None, str]] = {}
        for root in roots:
            for path, size, mtime, kind in self.query(
                "SELECT path, size, mtime_ns, kind FROM errors WHERE root = ?", (root,)
            ):
                out[path] = (size, mtime, kind)
        return out

    # writes ------------------------------------------------------------------------------
    def write_batch(
        self,
        files: list[FileRecord],
        errors: list[ErrorRecord] = (),
        touched: list[tuple[int, int, int]] = (),
        removed_files: list[int] = (),
        removed_errors: list[str] = (),
    ) -> None:
        """Apply one batch atomically. ``touched``: (id, size, mtime_ns) of files whose content
        hash did not change (only their stat is updated)."""
        with self.transaction() as con:
            for rec in files:
                self._put_file(con, rec)
            for err in errors:
                con.execute("DELETE FROM files WHERE path = ?", (err.path,))
                con.execute(
                    "INSERT OR REPLACE INTO errors VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (err.path, err.root, err.kind, err.reason, err.size, err.mtime_ns, time.time()),
                )
            con.executemany("UPDATE files SET size = ?, mtime_ns = ? WHERE id = ?",
                            [(s, m, i) for i, s, m in touched])  # fmt: skip
            for fid in removed_files:
                con.execute("DELETE FROM fts WHERE rowid = ?", (fid,))
                con.execute("DELETE FROM files WHERE id = ?", (fid,))
            con.executemany("DELETE FROM errors WHERE path = ?", [(p,) for p in removed_errors])
            if files or errors or removed_files:
                self._bump(con)

    def _put_file(self, con: sqlite3.Connection, rec: FileRecord) -> None:
        row = con.execute("SELECT id FROM files WHERE path = ?", (rec.path,)).fetchone()
        values = (
            rec.root, rec.rel, rec.size, rec.mtime_ns, rec.hash, rec.duration, rec.sample_rate,
            rec.channels, json.dumps(rec.tags, ensure_ascii=False), rec.doc,
            _blob(rec.text_vec), rec.acoustic_model, time.time(),
        )  # fmt: skip
        cols = (
            "root, rel, size, mtime_ns, hash, duration, sample_rate, channels, tags, doc, "
            "text_vec, acoustic_model, indexed_at"
        )
        if row is None:
            cur = con.execute(
                f"INSERT INTO files (path, {cols}) VALUES (?{', ?' * len(values)})",
                (rec.path, *values),
            )
            fid = int(cur.lastrowid)
        else:
            fid = int(row[0])
            sets = ", ".join(f"{c.strip()} = ?" for c in cols.split(","))
            con.execute(f"UPDATE files SET {sets} WHERE id = ?", (*values, fid))
            con.execute("DELETE FROM segments WHERE file_id = ?", (fid,))
            con.execute("DELETE FROM fts WHERE rowid = ?", (fid,))
        con.execute(
            "INSERT INTO fts (rowid, name, folder, tags) VALUES (?, ?, ?, ?)",
            (fid, rec.fts_name, rec.fts_folder, rec.fts_tags),
        )
        con.execute("DELETE FROM errors WHERE path = ?", (rec.path,))
        if rec.segments:
            con.executemany(
                "INSERT INTO segments (file_id, idx, start, end, vec) VALUES (?, ?, ?, ?, ?)",
                [(fid, i, s.start, s.end, _blob(s.vec)) for i, s in enumerate(rec.segments)],
            )

    def clear_acoustic(self) -> None:
        """Forget every acoustic vector (before re-embedding with another model)."""
        with self.transaction() as con:
            con.execute("DELETE FROM segments")
            con.execute("UPDATE files SET acoustic_model = NULL")
            for key in ("acoustic_model_identity", "acoustic_model_spec", "acoustic_dim"):
                self.set_meta(con, key, None)
            self._bump(con)

    def set_text_vectors(self, vectors: list[tuple[int, np.ndarray]]) -> None:
        """Replace the text vectors of existing files (after the text model changed)."""
        with self.transaction() as con:
            con.executemany(
                "UPDATE files SET text_vec = ? WHERE id = ?", [(_blob(v), i) for i, v in vectors]
            )
            self._bump(con)

    # reads -------------------------------------------------------------------------------
    def files_by_id(self, ids: Iterable[int]) -> dict[int, dict]:
        ids = [int(i) for i in ids]
        out: dict[int, dict] = {}
        cols = "id, path, root, rel, size, duration, sample_rate, channels, tags, doc"
        for chunk in range(0, len(ids), 500):
            part = ids[chunk : chunk + 500]
            marks = ",".join("?" * len(part))
            for row in self.query(f"SELECT {cols} FROM files WHERE id IN ({marks})", part):
                d = dict(zip([c.strip() for c in cols.split(",")], row, strict=True))
                d["tags"] = json.loads(d["tags"])
                out[d["id"]] = d
        return out

    def file_id(self, path: str) -> int | None:
        rows = self.query("SELECT id FROM files WHERE path = ?", (path,))
        return int(rows[0][0]) if rows else None

    def segment_vectors(self, file_id: int) -> np.ndarray:
        """[S, D] float32 acoustic vectors of one file (empty if none)."""
        rows = self.query("SELECT vec FROM segments WHERE file_id = ? ORDER BY idx", (file_id,))
        dim = int(self.get_meta("acoustic_dim") or 0)
        if not rows or not dim:
            return np.zeros((0, dim), dtype=np.float32)
        return np.frombuffer(b"".join(r[0] for r in rows), dtype=np.float16).reshape(-1, dim)

    def keyword_search(self, match: str, limit: int) -> list[tuple[int, float, None]]:
        """(file id, BM25 score (higher is better), None) for an FTS5 MATCH expression."""
        rows = self.query(
            "SELECT rowid, bm25(fts, 4.0, 1.0, 2.0) AS s FROM fts WHERE fts MATCH ? "
            "ORDER BY s LIMIT ?",
            (match, limit),
        )
        return [(int(r), -float(s), None) for r, s in rows]

    # matrices ----------------------------------------------------------------------------
    def matrices(self) -> Matrices:
        """The vectors of the current generation, from the cache file or rebuilt from SQLite."""
        gen = self.generation()
        cache = self.dir / "cache" / f"vectors-{gen}.npz"
        if cache.exists():
            try:
                with np.load(cache, allow_pickle=False) as z:
                    return Matrices(gen, *(z[k] for k in _MATRIX_KEYS))
            except (OSError, ValueError, KeyError) as e:
                log.warning("matrix cache %s unreadable (%s); rebuilding it", cache, e)
        t0 = time.perf_counter()
        m = self._read_matrices(gen)
        self._write_cache(cache, m)
        log.info("loaded %d file and %d segment vectors from the database in %.1f s",
                 len(m.text_file), len(m.seg_file), time.perf_counter() - t0)  # fmt: skip
        return m

    def _read_matrices(self, gen: str) -> Matrices:
        with self._lock:
            self.con.execute("BEGIN")  # one snapshot for both tables
            try:
                tdim = int(self.get_meta("text_dim") or 0)
                text, tkeys = _read_vectors(
                    self.con,
                    "SELECT id, text_vec FROM files WHERE text_vec IS NOT NULL ORDER BY id",
                    tdim,
                )
                adim = int(self.get_meta("acoustic_dim") or 0)
                acoustic, skeys = _read_vectors(
                    self.con, "SELECT file_id, start, vec FROM segments ORDER BY id", adim
                )
            finally:
                self.con.rollback()
        return Matrices(
            gen,
            text,
            tkeys[:, 0].astype(np.int64),
            acoustic,
            skeys[:, 0].astype(np.int64),
            skeys[:, 1].astype(np.float32),
        )

    def _write_cache(self, cache: Path, m: Matrices) -> None:
        cache.parent.mkdir(exist_ok=True)
        tmp = cache.with_name(f".{cache.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as f:
                np.savez(f, **{k: getattr(m, k) for k in _MATRIX_KEYS})
            os.replace(tmp, cache)
        except OSError as e:  # a read-only index still works, just without the cache
            log.warning("could not write matrix cache %s (%s)", cache, e)
            tmp.unlink(missing_ok=True)
            return
        for old in cache.parent.glob("vectors-*.npz"):
            if old != cache:
                old.unlink(missing_ok=True)

    # status ------------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        one = lambda sql: int(self.query(sql)[0][0])
        return {
            "files": one("SELECT COUNT(*) FROM files"),
            "segments": one("SELECT COUNT(*) FROM segments"),
            "errors": one("SELECT COUNT(*) FROM errors"),
            "seconds": int(one("SELECT COALESCE(SUM(duration), 0) FROM files")),
        }

    def error_kinds(self) -> dict[str, int]:
        rows = self.query("SELECT kind, COUNT(*) FROM errors GROUP BY kind ORDER BY 2 DESC")
        return {k: int(n) for k, n in rows}

    def errors(self, limit: int | None = None) -> list[dict]:
        # Real failures first; files skipped for their extension last.
        sql = "SELECT path, kind, reason, time FROM errors ORDER BY kind = 'not-audio', kind, path"
        rows = self.query(sql + (" LIMIT ?" if limit else ""), (limit,) if limit else ())
        return [{"path": p, "kind": k, "reason": r, "time": t} for p, k, r, t in rows]

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.dir.rglob("*") if p.is_file())


_MATRIX_KEYS = ("text", "text_file", "acoustic", "seg_file", "seg_start")


def _blob(vec: np.ndarray | None) -> bytes | None:
    if vec is None:
        return None
    return np.ascontiguousarray(vec, dtype=np.float16).tobytes()


def _read_vectors(con: sqlite3.Connection, sql: str, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Stream rows (key columns..., float16 blob) into a matrix [N, dim] and keys [N, K] float64."""
    ncols = len(con.execute(sql + " LIMIT 0").description) - 1
    n = int(con.execute(f"SELECT COUNT(*) FROM ({sql})").fetchone()[0]) if dim else 0
    mat = np.empty((n, dim), dtype=np.float16)
    keys = np.empty((n, ncols), dtype=np.float64)
    cur = con.execute(sql)
    i = 0
    while i < n:
        rows = cur.fetchmany(20000)
        if not rows:
            break
        j = min(n, i + len(rows))  # rows added after COUNT(*) cannot appear: same snapshot
        mat[i:j] = np.frombuffer(b"".join(r[-1] for r in rows), np.float16).reshape(-1, dim)
        keys[i:j] = [r[:-1] for r in rows]
        i = j
    return mat[:i], keys[:i]
