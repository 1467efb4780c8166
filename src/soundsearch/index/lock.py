"""One writer per index: an exclusive ``fcntl.flock`` on ``<index>/index.lock``.

The lock file holds the pid, host and start time of the holder so that a second ``soundsearch index``
can say who is writing. The kernel drops a flock when its process dies (even on SIGKILL), so a
crashed run never leaves a stale lock; the text in the file is only information. Readers (search,
serve) take no lock: SQLite in WAL mode lets them read while the writer commits.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from soundsearch.errors import UserError

LOCK_NAME = "index.lock"


class IndexBusyError(UserError):
    """Another process holds the index lock."""


class IndexLock:
    """Context manager: ``with IndexLock(index_dir): ...`` holds the writer lock or raises."""

    def __init__(self, index_dir: str | os.PathLike):
        self.path = Path(index_dir) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise IndexBusyError(
                f"the index at {self.path.parent} is being updated by another `soundsearch index` "
                f"run ({holder}); wait for it to finish, or stop it, then run again"
            ) from None
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def writer_running(index_dir: str | os.PathLike) -> bool:
    """True while an `index` run holds the lock (read from the lock file, without locking: the
    pid written there is alive on this host). A run killed with -9 leaves its pid behind; a dead
    pid reads as not running."""
    try:
        info = json.loads((Path(index_dir) / LOCK_NAME).read_text() or "{}")
    except (OSError, ValueError):
        return False
    pid = info.get("pid")
    if not pid or info.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by someone else
    return True


def _read_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info.get("pid"):
        return "holder unknown"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("since", 0)))
    return f"pid {info['pid']} on host {info.get('host', '?')}, since {since}"
