"""Optional pre-decoded audio: decode every file once so training does not decode each epoch.

Layout: one ``.npy`` file per audio file, ``FOLDER/<k[:2]>/<k>.npy``, holding the whole file as a
1-D array at 32 kHz mono in ``float16`` (default: half the size of float32, no clipping of peaks
above 1.0, error below 5e-4 relative) or ``float32`` (exact). ``k`` is a hash of the file's
absolute path, size and modification time (and of the sample rate and dtype), so an edited file is
decoded again and a stale entry is simply never read (delete the folder to reclaim the space).
Entries are memory-mapped on read: a 30 s crop of an hour-long file reads only that crop.
Entries are written atomically (temporary file + rename), so several processes may fill the cache
at once. Size: 64 KB per second of audio in float16 (ClothoV2 development: about 5 GB).
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing as mp
import os
import tempfile
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from soundsearch.audio import SAMPLE_RATE, AudioError, load_audio

log = logging.getLogger(__name__)

DTYPES = ("float16", "float32")


@dataclass
class CacheReport:
    """What :meth:`AudioCache.build` did."""

    present: int = 0  # already cached
    built: int = 0  # decoded now
    failed: dict[str, str] = field(default_factory=dict)  # path -> reason


class AudioCache:
    """Decoded audio keyed by path + size + mtime; see the module docstring for the layout."""

    def __init__(
        self, folder: str | os.PathLike, dtype: str = "float16", sample_rate: int = SAMPLE_RATE
    ):
        if dtype not in DTYPES:
            raise ValueError(f"cache dtype must be one of {DTYPES}, not {dtype!r}")
        self.folder = Path(folder)
        self.dtype = dtype
        self.sample_rate = sample_rate
        self.hits = 0  # in this process
        self.misses = 0

    def entry(self, path: str | os.PathLike) -> Path:
        """Where the decoded copy of ``path`` lives (whether or not it exists yet)."""
        p = Path(path).resolve()
        try:
            st = p.stat()
        except OSError as e:
            raise AudioError(
                p, "file not found" if isinstance(e, FileNotFoundError) else str(e)
            ) from e
        ident = f"{p}\0{st.st_size}\0{st.st_mtime_ns}\0{self.sample_rate}\0{self.dtype}"
        key = hashlib.blake2b(ident.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
        return self.folder / key[:2] / f"{key}.npy"

    def __contains__(self, path: str | os.PathLike) -> bool:
        try:
            return self.entry(path).is_file()
        except AudioError:
            return False

    def get(self, path: str | os.PathLike, write: bool = True) -> np.ndarray:
        """The whole file, 1-D, memory-mapped in the cache's dtype (slice, then convert).

        On a miss the file is decoded (an :class:`AudioError` if it cannot be) and, with
        ``write``, stored for next time.
        """
        entry = self.entry(path)
        if entry.is_file():
            try:
                data = np.load(entry, mmap_mode="r")
                self.hits += 1
                return data
            except (ValueError, OSError) as e:
                log.warning("cache entry %s for %s unreadable (%s): decoding again", entry, path, e)
        self.misses += 1
        wave = load_audio(path, sr=self.sample_rate).astype(self.dtype)
        if write:
            try:
                _write_atomic(entry, wave)
            except OSError as e:  # a full disk must not stop training: the wave is still good
                log.warning("cannot write cache entry %s for %s: %s", entry, path, e)
        return wave

    def load(self, path: str | os.PathLike) -> np.ndarray:
        """The whole file as float32 [N] (a copy)."""
        return np.asarray(self.get(path), dtype=np.float32)

    def build(
        self,
        paths: Iterable[str | os.PathLike],
        workers: int | None = None,
        progress: bool = True,
    ) -> CacheReport:
        """Decode every file not yet cached, with ``workers`` processes (default: CPU count).

        A file that cannot be decoded is logged, recorded in the report and left out; the build
        goes on.
        """
        report = CacheReport()
        todo: list[tuple[str, str]] = []
        for path in dict.fromkeys(str(p) for p in paths):
            try:
                entry = self.entry(path)
            except AudioError as e:
                report.failed[path] = e.reason
                continue
            if entry.is_file():
                report.present += 1
            else:
                todo.append((path, str(entry)))
        if todo:
            self._run(todo, workers, progress, report)
        log.info(
            "audio cache %s: %d built, %d already there, %d failed",
            self.folder,
            report.built,
            report.present,
            len(report.failed),
        )
        return report

    def _run(
        self, todo: list[tuple[str, str]], workers: int | None, progress: bool, report: CacheReport
    ) -> None:
        workers = max(1, min(workers or os.cpu_count() or 1, len(todo)))
        bar = tqdm(total=len(todo), desc="decoding audio", unit="file", disable=not progress)
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
            futures = [pool.submit(_decode, p, e, self.sample_rate, self.dtype) for p, e in todo]
            for future in as_completed(futures):
                path, error = future.result()
                if error is None:
                    report.built += 1
                else:
                    report.failed[path] = error
                    log.warning("cannot cache %s: %s", path, error)
                bar.update(1)
        bar.close()


def _decode(path: str, entry: str, sample_rate: int, dtype: str) -> tuple[str, str | None]:
    """Worker: decode one file into its cache entry. Returns (path, error reason or None)."""
    try:
        wave = load_audio(path, sr=sample_rate).astype(dtype)
        _write_atomic(Path(entry), wave)
    except AudioError as e:
        return path, e.reason
    except OSError as e:
        return path, f"cannot write cache entry ({e})"
    return path, None


def _write_atomic(entry: Path, wave: np.ndarray) -> None:
    entry.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=entry.stem, suffix=".tmp", dir=entry.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, np.ascontiguousarray(wave))
        os.replace(tmp, entry)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
