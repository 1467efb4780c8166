"""Per-file work done in worker processes: hash, read tags, decode (and resample) the audio.

:func:`process_file` turns a :class:`Task` into messages; :class:`DecodePool` runs it in ``spawn``ed
processes (no torch imported there) and yields the messages to the indexer in the main process,
which batches the segments for inference. The result queue is bounded, so memory stays bounded
however long a file is: a one-hour file arrives as 360 ten-second segments, a few at a time.

Messages are tuples ``(kind, worker id, task idx, payload...)``:

- ``("seg", w, idx, seg_index, wave [L] float32)``: one segment (acoustic mode only);
- ``("done", w, idx, FileFacts)``: the file was read completely;
- ``("same", w, idx, hash)``: content hash equals ``Task.known_hash``, nothing else was done;
- ``("error", w, idx, kind, reason)``: the file is recorded as an error (partial segments dropped).

A worker that dies (a decoder crash) is replaced; the file it was reading becomes an error of kind
``crashed`` and the files queued behind it are handed to other workers.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue
import signal
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from soundsearch.audio import SAMPLE_RATE, AudioError, audio_info, iter_segments
from soundsearch.index.scan import content_hash
from soundsearch.index.tags import read_tags

log = logging.getLogger(__name__)

VERIFY_BLOCK_SECONDS = 30.0  # metadata mode decodes in blocks of this length to check the file


@dataclass(frozen=True)
class Task:
    idx: int
    path: str
    size: int
    known_hash: str | None = None  # content unchanged -> answer "same" without decoding
    segment_samples: int = 0  # 0: metadata only (decode to verify, no segments sent)


@dataclass
class FileFacts:
    hash: str
    tags: dict[str, list[str]] = field(default_factory=dict)
    duration: float = 0.0
    sample_rate: int = 0
    channels: int = 0
    segments: int = 0


def _error_kind(reason: str) -> str:
    if reason.startswith("permission"):
        return "permission"
    if reason.startswith("empty file"):
        return "empty"
    return "corrupt"


def process_file(task: Task, wid: int = 0) -> Iterator[tuple]:
    """Messages for one task (see the module docstring). Never raises for a bad file."""
    try:
        digest = content_hash(task.path, task.size)
        if task.known_hash is not None and digest == task.known_hash:
            yield ("same", wid, task.idx, digest)
            return
        facts = FileFacts(hash=digest, tags=read_tags(task.path))
        facts.sample_rate, facts.channels, _ = audio_info(task.path)
        yield from _decode(task, wid, facts)
        yield ("done", wid, task.idx, facts)
    except AudioError as e:
        yield ("error", wid, task.idx, _error_kind(e.reason), e.reason)
    except PermissionError as e:
        yield ("error", wid, task.idx, "permission", f"permission denied ({e.strerror})")
    except OSError as e:
        yield ("error", wid, task.idx, "other", f"cannot read file ({e.strerror or e})")
    except Exception as e:  # a decoder bug must not stop the run; the reason is recorded
        log.debug("unexpected error on %s", task.path, exc_info=True)
        yield ("error", wid, task.idx, "other", f"unexpected {type(e).__name__}: {e}")


def _decode(task: Task, wid: int, facts: FileFacts) -> Iterator[tuple]:
    if task.segment_samples:
        n = 0
        for i, seg in enumerate(iter_segments(task.path, task.segment_samples)):
            n += seg.shape[0]
            facts.segments = i + 1
            yield ("seg", wid, task.idx, i, seg)
        facts.duration = n / SAMPLE_RATE
        return
    # Metadata only: decode at the native rate (no resampling) just to prove the file plays.
    sr = facts.sample_rate
    n = sum(s.shape[0] for s in iter_segments(task.path, int(VERIFY_BLOCK_SECONDS * sr), sr=sr))
    facts.duration = n / sr


def _worker_loop(wid: int, tasks: mp.Queue, results: mp.Queue, parent: int) -> None:
    """Body of a worker process: run tasks until a ``None`` arrives or the parent is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is handled by the main process
    while True:
        try:
            task = tasks.get(timeout=1.0)
        except queue.Empty:
            if os.getppid() != parent:
                return  # the indexer was killed: do not linger
            continue
        if task is None:
            return
        for msg in process_file(task, wid):
            results.put(msg)


@dataclass
class _Slot:
    proc: mp.Process
    tasks: mp.Queue
    outstanding: deque = field(default_factory=deque)  # task idx, in the order sent
    last_seen: float = field(default_factory=time.monotonic)  # last sign of progress


class DecodePool:
    """Run tasks in ``workers`` processes (0: in this process) and yield their messages."""

    TASKS_AHEAD = 2  # tasks queued per worker, so it never waits for the main process

    def __init__(self, workers: int, result_queue_size: int = 32, stall_seconds: float = 600.0):
        self.workers = max(0, int(workers))
        self.stall_seconds = stall_seconds  # a busy worker silent this long is stopped
        self._ctx = mp.get_context("spawn")
        self._results = self._ctx.Queue(maxsize=result_queue_size) if self.workers else None
        self._slots: list[_Slot] = []

    def run(self, tasks: Iterable[Task]) -> Iterator[tuple]:
        if self.workers == 0:
            for t in tasks:
                yield from process_file(t)
            return
        pending = deque(tasks)
        by_idx = {t.idx: t for t in pending}
        finished: set[int] = set()
        self._slots = [self._start(w) for w in range(min(self.workers, max(1, len(pending))))]
        last_check = time.monotonic()
        while len(finished) < len(by_idx):
            for slot in self._slots:
                self._feed(slot, pending)
            try:
                msg = self._results.get(timeout=0.5)
            except queue.Empty:
                msg = None
            if msg is None or time.monotonic() - last_check > 1.0:
                last_check = time.monotonic()
                for err in list(self._reap(pending, by_idx)):
                    finished.add(err[2])
                    yield from self._yield(err)
            if msg is None or msg[2] in finished:
                continue  # nothing yet, or a late message from a worker already declared dead
            slot = self._slots[msg[1]]
            slot.last_seen = time.monotonic()
            if msg[0] in ("done", "same", "error"):
                finished.add(msg[2])
                if msg[2] in slot.outstanding:
                    slot.outstanding.remove(msg[2])
            yield from self._yield(msg)

    def _yield(self, msg: tuple) -> Iterator[tuple]:
        """Yield one message; time the consumer spends (inference) is not the workers' stall."""
        t0 = time.monotonic()
        yield msg
        paused = time.monotonic() - t0
        for slot in self._slots:
            slot.last_seen += paused

    def _start(self, wid: int) -> _Slot:
        tasks = self._ctx.Queue()
        proc = self._ctx.Process(
            target=_worker_loop,
            args=(wid, tasks, self._results, os.getpid()),
            name=f"soundsearch-decode-{wid}",
            daemon=True,
        )
        proc.start()
        return _Slot(proc, tasks)

    def _feed(self, slot: _Slot, pending: deque) -> None:
        while pending and len(slot.outstanding) < self.TASKS_AHEAD:
            if not slot.outstanding:
                slot.last_seen = time.monotonic()  # idle until now: the clock starts here
            task = pending.popleft()
            slot.outstanding.append(task.idx)
            slot.tasks.put(task)

    def _reap(self, pending: deque, by_idx: dict[int, Task]) -> Iterator[tuple]:
        """Replace dead or stalled workers: their current file is an error, their queued files
        go back to the queue."""
        now = time.monotonic()
        for wid, slot in enumerate(self._slots):
            stalled = bool(slot.outstanding) and now - slot.last_seen > self.stall_seconds
            if slot.proc.is_alive() and not stalled:
                continue
            if stalled:
                slot.proc.kill()
                slot.proc.join(timeout=5)
                reason = (
                    f"no progress for {self.stall_seconds:.0f} s while reading this file "
                    "(a stalled device, or not a regular file?); the reader was stopped"
                )
            else:
                reason = (
                    f"decoder process died (exit code {slot.proc.exitcode}) while reading this file"
                )
            if slot.outstanding:
                culprit = slot.outstanding.popleft()
                pending.extendleft(by_idx[i] for i in reversed(slot.outstanding))
                log.warning("%s: %s", by_idx[culprit].path, reason)
                yield ("error", wid, culprit, "crashed", reason)
            self._slots[wid] = self._start(wid)

    def close(self) -> None:
        """Stop the workers (queued work is dropped: nothing was committed for it)."""
        for slot in self._slots:
            if slot.proc.is_alive():
                slot.proc.terminate()
        for slot in self._slots:
            slot.proc.join(timeout=5)
            slot.tasks.cancel_join_thread()
            slot.tasks.close()
        if self._results is not None:
            self._results.cancel_join_thread()
            self._results.close()
        self._slots = []
