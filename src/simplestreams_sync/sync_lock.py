"""The one lock that keeps two syncs (cron and the action) from running at once: `sync.lock` in the state
dir. Standard library only: a scheduled run takes it before it loads anything else."""

from __future__ import annotations

import fcntl
import os

from .directories import make_dirs

LOCK_FILE = "sync.lock"


class SyncAlreadyRunning(Exception):
    pass


class SyncLock:
    """An exclusive, non-blocking flock on `sync.lock`; the holder's pid is written inside."""

    def __init__(self, state_dir: str | os.PathLike):
        self.path = os.path.join(state_dir, LOCK_FILE)
        self._fd: int | None = None

    def __enter__(self) -> SyncLock:
        make_dirs(os.path.dirname(self.path))
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise SyncAlreadyRunning(f"another sync is already running (pid {holder})") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def __exit__(self, *exc_info) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
