"""The watchdog on a whole run: when progress.json has not changed for `timeouts.NO_PROGRESS` seconds (a
stuck thread, a hung DNS lookup, anything the network deadlines miss), it records the run as failed,
saying so, and ends the process; the lock goes with it, so the retry line can try again.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

from . import timeouts
from .state import ProgressFile


class Watchdog:
    """Watches a ProgressFile from a daemon thread. `on_stall(message)` records the run (it must not
    block); then the process exits with `exit_code`. `stop()` before the run records its own result:
    once it has returned, the watchdog does nothing more."""

    def __init__(
        self,
        progress: ProgressFile,
        on_stall: Callable[[str], None],
        exit_code: int,
        limit: float | None = None,
    ):
        self.progress = progress
        self.on_stall = on_stall
        self.exit_code = exit_code
        self.limit = timeouts.NO_PROGRESS if limit is None else limit
        self._stopped = threading.Event()
        self._deciding = threading.Lock()  # held by whichever ends the run: the watchdog or stop()
        self._thread = threading.Thread(target=self._watch, name="watchdog", daemon=True)

    def __enter__(self) -> Watchdog:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def stop(self) -> None:
        with self._deciding:  # while the watchdog records a stall, wait for the exit it leads to
            self._stopped.set()

    def _watch(self) -> None:
        while True:
            changed, data = self.progress.watched()
            left = changed + self.limit - time.monotonic()
            if left > 0:
                if self._stopped.wait(left):
                    return
                continue
            with self._deciding:
                if self._stopped.is_set():
                    return
                self.on_stall(stall_message(self.limit, data))
                os._exit(self.exit_code)


def no_progress_limit(config) -> float:
    """The watchdog's limit for a run of `config` (a SyncConfig): NO_PROGRESS, or longer than the waits
    that report no progress and that the config makes longer (Glance's conversion, the image-modifier)."""
    from .modify import HOOK_TIMEOUT

    waits = [timeouts.NO_PROGRESS]
    if config.image_import_conversion:
        waits.append(config.import_timeout + timeouts.READ)
    if config.modify_hook:
        waits.append(HOOK_TIMEOUT + timeouts.READ)
    return max(waits)


def stall_message(limit: float, progress: dict) -> str:
    """E.g. 'no progress for 3600 s (phase uploading, item ubuntu-… 2 of 8): the watchdog ended the run'."""
    where = f"phase {progress.get('phase') or 'starting'}"
    if progress.get("item"):
        where += f", item {progress['item']} {progress.get('item_index')} of {progress.get('item_count')}"
    return f"no progress for {timeouts.seconds(limit)} ({where}): the watchdog ended the run"
