"""Find the files under the indexed folders, and fingerprint their content.

The walk follows symbolic links to folders but never enters the same folder twice (tracked by
device and inode), so link loops end. Each file is identified by its resolved path; two links to
one file are one file. Hidden entries (names starting with ``.``, e.g. ``.DS_Store`` or macOS
``._name.wav`` resource forks) are skipped and counted. Anything that goes wrong for one entry
(permission denied, broken link, a name that is not valid UTF-8) becomes a :class:`ScanProblem`;
the walk goes on.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import stat
from dataclasses import dataclass, field

from soundsearch.audio import AUDIO_EXTENSIONS

log = logging.getLogger(__name__)

HASH_FULL_LIMIT = 64 << 20  # files up to 64 MiB are hashed whole
HASH_SAMPLE = 4 << 20  # bigger ones: size + first, middle and last 4 MiB


@dataclass(frozen=True)
class Candidate:
    """A regular file found under ``root``."""

    path: str  # resolved, absolute
    root: str
    rel: str  # path as found, relative to root (links keep the name the user gave them)
    size: int
    mtime_ns: int
    is_audio: bool  # extension in AUDIO_EXTENSIONS


@dataclass(frozen=True)
class ScanProblem:
    path: str
    root: str
    kind: str  # permission | symlink | bad-name | other
    reason: str


@dataclass
class ScanResult:
    files: list[Candidate] = field(default_factory=list)
    problems: list[ScanProblem] = field(default_factory=list)
    hidden: int = 0


def content_hash(path: str | os.PathLike, size: int | None = None) -> str:
    """blake2b-128 of the file; above :data:`HASH_FULL_LIMIT` of its size and three 4 MiB
    samples (start, middle, end), so that hour-long recordings are not read twice."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size if size is None else size
        if size <= HASH_FULL_LIMIT:
            while chunk := f.read(1 << 20):
                h.update(chunk)
            return h.hexdigest()
        h.update(size.to_bytes(8, "little"))
        for offset in (0, size // 2 - HASH_SAMPLE // 2, size - HASH_SAMPLE):
            f.seek(offset)
            h.update(f.read(HASH_SAMPLE))
    return "s" + h.hexdigest()  # "s": sampled


def _valid_name(path: str) -> bool:
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes arrive as lone surrogates
        return False
    return True


def _printable(path: str) -> str:
    return os.fsencode(path).decode("utf-8", "backslashreplace")


class _Walker:
    def __init__(self, root: str, result: ScanResult, seen_files: set[str]):
        self.root = root
        self.result = result
        self.seen_dirs: set[tuple[int, int]] = set()
        self.seen_files = seen_files

    def problem(self, path: str, kind: str, reason: str) -> None:
        self.result.problems.append(ScanProblem(_printable(path), self.root, kind, reason))

    def walk(self, folder: str) -> None:
        try:
            st = os.stat(folder)
        except OSError as e:
            self.problem(folder, _kind(e), f"folder not readable ({e.strerror})")
            return
        key = (st.st_dev, st.st_ino)
        if key in self.seen_dirs:
            log.debug("%s: already visited (symbolic link loop or repeat), skipped", folder)
            return
        self.seen_dirs.add(key)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as e:
            self.problem(folder, _kind(e), f"folder not readable ({e.strerror})")
            return
        for entry in entries:
            self.visit(entry)

    def visit(self, entry: os.DirEntry) -> None:
        if entry.name.startswith("."):
            self.result.hidden += 1
            return
        if not _valid_name(entry.path):
            self.problem(entry.path, "bad-name", "file name is not valid UTF-8; rename it")
            return
        try:
            st = os.stat(entry.path)  # follows links
        except OSError as e:
            broken_link = entry.is_symlink() and e.errno in (errno.ELOOP, errno.ENOENT)
            self.problem(entry.path, "symlink" if broken_link else _kind(e), _link_reason(entry, e))
            return
        if stat.S_ISDIR(st.st_mode):
            self.walk(entry.path)
        elif stat.S_ISREG(st.st_mode):
            self.add_file(entry.path, st)

    def add_file(self, path: str, st: os.stat_result) -> None:
        resolved = os.path.realpath(path)
        if resolved in self.seen_files:
            return
        self.seen_files.add(resolved)
        rel = os.path.relpath(path, self.root)
        ext = os.path.splitext(path)[1].lower()
        self.result.files.append(
            Candidate(resolved, self.root, rel, st.st_size, st.st_mtime_ns, ext in AUDIO_EXTENSIONS)
        )


def _kind(e: OSError) -> str:
    if isinstance(e, PermissionError):
        return "permission"
    if e.errno == errno.ELOOP:
        return "symlink"
    return "other"


def _link_reason(entry: os.DirEntry, e: OSError) -> str:
    if entry.is_symlink():
        if e.errno == errno.ELOOP:
            return "symbolic link loop"
        if isinstance(e, FileNotFoundError):
            return f"broken symbolic link (to {os.readlink(entry.path)})"
    return f"cannot read file information ({e.strerror})"


def scan(roots: list[str], exclude: list[str] = ()) -> ScanResult:
    """Walk every root (already resolved, absolute). Files are listed once, in path order.
    Folders in ``exclude`` (the index itself, when it lives inside a root) are not entered."""
    result = ScanResult()
    seen_files: set[str] = set()
    skip = set()
    for folder in exclude:
        try:
            st = os.stat(folder)
            skip.add((st.st_dev, st.st_ino))
        except OSError:
            pass
    for root in roots:
        walker = _Walker(root, result, seen_files)
        walker.seen_dirs |= skip
        walker.walk(root)
    return result
