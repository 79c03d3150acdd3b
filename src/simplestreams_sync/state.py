"""What a sync leaves behind for the charm (and operators) to read.

Files under the state dir (JSON, written atomically; no secrets in them, so mode 0644 for monitoring
such as the Nagios check that runs as the nagios user):
- `progress.json` while a sync runs: {"pid", "started", "phase", "item", "item_index", "item_count",
  "bytes_done", "bytes_total", "updated"}; removed when the run ends.
- `last-sync.json` after each run: see `SyncResult`.
- `sync.lock`: the lock that keeps two syncs (cron and action) from running at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .directories import DEFAULT_STATE_DIR as DEFAULT_STATE_DIR
from .directories import make_dirs as make_dirs
from .retry import next_try
from .timestamps import TIME_FORMAT as TIME_FORMAT
from .timestamps import parse_time as parse_time
from .timestamps import utc_now

PROGRESS_FILE = "progress.json"
RESULT_FILE = "last-sync.json"
# Why whoever sends the running sync SIGTERM asks it to stop (one line of text); see __main__.
STOP_REQUEST_FILE = "stop-request"
INTERFACES = ("public", "internal", "admin")  # of a Keystone catalog endpoint


def sha256_of_file(path: str | Path) -> str:
    """The file's sha256, read in blocks (hashlib.file_digest needs Python 3.11)."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_atomically(path: Path, text: str, mode: int = 0o644) -> None:
    """Replace `path` with `text` in one step: readers see the old file or the new one, never half.
    The file gets `mode` exactly, whatever the process umask (readers such as the Nagios check rely on it)."""
    make_dirs(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as stream:
        os.fchmod(stream.fileno(), mode)
        stream.write(text)
    os.replace(tmp, path)


def write_json_atomically(path: Path, data: dict, mode: int = 0o644) -> None:
    write_atomically(path, json.dumps(data, indent=1, sort_keys=True), mode)


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def read_stop_request(state_dir: str | Path) -> str | None:
    try:
        return (Path(state_dir) / STOP_REQUEST_FILE).read_text().strip() or None
    except OSError:
        return None


@dataclass
class SyncResult:
    """The outcome of one run, as written to `last-sync.json`."""

    started: str
    finished: str = ""
    dry_run: bool = False
    created: list[dict] = field(default_factory=list)  # {"id", "name"}
    would_create: list[dict] = field(default_factory=list)  # dry run: {"product", "version", "item", "name"}
    deleted: list[dict] = field(default_factory=list)  # {"id", "name", "reason"}
    kept: list[dict] = field(default_factory=list)  # {"id", "name", "reason"}: not wanted, yet not deleted
    # {"id", "name", "reason"}: images of ours the sync leaves to an operator (deactivated; protected although
    # their bytes do not match the source), never published
    needs_decision: list[dict] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)  # {"name", "error"}
    errors: list[str] = field(default_factory=list)  # mirror-level or publish errors
    published: bool = False
    metadata_url: str = ""  # where the image-ids metadata is served, once published
    # once published: where keystone's product-streams endpoint should point, per interface
    # ({"public", "internal", "admin"} -> URL); metadata_url is the one the sync wrote through
    product_streams_urls: dict[str, str] = field(default_factory=dict)
    object_store_missing: bool = False  # use_swift, but the catalog has no object-store endpoint
    last_success: str = ""  # when the newest run without failures finished (this one or an earlier one)
    failures_in_a_row: int = 0  # failed runs since the last success, this one included (retry.py)
    next_try: str = ""  # when the retry of a failed run is due; "" after a success or without a schedule
    bytes_transferred: int = 0
    duration_seconds: float = 0.0
    images_active: int = 0  # our images the metadata names (active in Glance) as the run leaves them
    quick_check: bool = False  # the run ended at the quick check: nothing changed since the last clean run
    stopped: str = ""  # why the run stopped at a safe point, publishing and deleting nothing after it
    # the run ended on an unexpected error: "<exception type>: <message>" (its traceback is in the sync log)
    crashed: str = ""

    @property
    def ok(self) -> bool:
        return not self.failed and not self.errors and not self.stopped and not self.crashed

    def to_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok}

    @classmethod
    def from_dict(cls, data: dict) -> SyncResult | None:
        """The result in a last-sync.json's object (keys it does not know are ignored), or None when it
        is not one."""
        return _from_dict(cls, data)


@dataclass
class Progress:
    """A running sync's progress, as written to `progress.json`."""

    pid: int
    started: str = ""
    phase: str = "starting"
    item: str | None = None  # the image being transferred
    item_index: int = 0  # its number, of item_count
    item_count: int = 0
    bytes_done: int = 0
    bytes_total: int = 0
    updated: str = ""

    @classmethod
    def from_dict(cls, data: dict) -> Progress | None:
        return _from_dict(cls, data)


def _from_dict(cls, data: object):
    if not isinstance(data, dict):
        return None
    try:
        return cls(**{name: data[name] for name in cls.__dataclass_fields__ if name in data})
    except TypeError:  # a required field missing
        return None


def publish_only_lines(metadata_url: str, product_streams_urls: dict[str, str]) -> list[str]:
    """What `--publish-only` prints: `metadata_url URL` (where it wrote), then `public_url URL`,
    `internal_url URL` and `admin_url URL` (what product-streams should point at)."""
    return [f"metadata_url {metadata_url}"] + [
        f"{interface}_url {url}" for interface, url in product_streams_urls.items()
    ]


def read_publish_only_lines(lines: list[str]) -> tuple[str, dict[str, str]] | None:
    """The metadata URL and the product-streams URLs in `--publish-only`'s output, or None when it
    does not name them all."""
    named = dict(line.split(" ", 1) for line in lines if " " in line)
    urls = {interface: named.get(f"{interface}_url", "") for interface in INTERFACES}
    if not named.get("metadata_url") or not all(urls.values()):
        return None
    return named["metadata_url"], urls


def write_result(state_dir: str | Path, result: SyncResult, frequency: str | None = None) -> None:
    """Record the run; `last_success` carries over from the previous result when this run failed, and
    after a failure `next_try` is when the retry is due (retry.py; `frequency`: the schedule's)."""
    previous = read_result(state_dir)
    result.last_success = result.finished if result.ok else (previous.last_success if previous else "")
    result.failures_in_a_row = 0 if result.ok else (previous.failures_in_a_row if previous else 0) + 1
    result.next_try = next_try(result.finished, result.failures_in_a_row, frequency)
    write_json_atomically(Path(state_dir) / RESULT_FILE, result.to_dict())


def read_result(state_dir: str | Path) -> SyncResult | None:
    """The last run's result, or None when there is none (or the file is not one)."""
    return SyncResult.from_dict(read_json(Path(state_dir) / RESULT_FILE) or {})


def read_progress(state_dir: str | Path) -> Progress | None:
    """The running sync's progress, or None when no sync is running (stale files are ignored)."""
    progress = Progress.from_dict(read_json(Path(state_dir) / PROGRESS_FILE) or {})
    if progress is None:
        return None
    try:
        os.kill(int(progress.pid), 0)
    except (ValueError, ProcessLookupError):
        return None
    except PermissionError:
        pass
    return progress


# A test hook, never set in production: the run crashes as it enters the phase this names ("starting",
# "reading sources", "checking glance", "uploading", "publishing metadata"), so that the tests see a
# crash in each phase leave its result (tests/functional/test_crash.py).
TEST_HOOK_CRASH_IN_PHASE = "SIMPLESTREAMS_SYNC_TEST_HOOK_CRASH_IN_PHASE"


class HookedCrash(RuntimeError):
    """Raised by the TEST_HOOK_CRASH_IN_PHASE test hook."""


def _crash_if_the_test_hook_says(phase: object) -> None:
    if phase is not None and phase == os.environ.get(TEST_HOOK_CRASH_IN_PHASE):
        raise HookedCrash(f"{TEST_HOOK_CRASH_IN_PHASE}: crashed entering phase {phase}")


class ProgressFile:
    """Progress reporter that keeps `progress.json` current, at most once a second for byte updates."""

    def __init__(self, state_dir: str | Path, min_interval: float = 1.0):
        self.path = Path(state_dir) / PROGRESS_FILE
        self.min_interval = min_interval
        self._last_write = 0.0
        self._changed = time.monotonic()
        self.data: dict = {
            "pid": os.getpid(),
            "started": utc_now(),
            "phase": "starting",
            "item": None,
            "item_index": 0,
            "item_count": 0,
            "bytes_done": 0,
            "bytes_total": 0,
        }
        self._flush()
        _crash_if_the_test_hook_says(self.data["phase"])

    def update(self, force: bool = False, **changes) -> None:
        _crash_if_the_test_hook_says(changes.get("phase"))
        now = time.monotonic()
        if any(self.data.get(name) != value for name, value in changes.items()):
            self._changed = now
        self.data.update(changes)
        if force or now - self._last_write >= self.min_interval:
            self._flush()

    def _flush(self) -> None:
        self._last_write = time.monotonic()
        write_json_atomically(self.path, {**self.data, "updated": utc_now()})

    def close(self) -> None:
        self.path.unlink(missing_ok=True)

    def watched(self) -> tuple[float, dict]:
        """When the progress last changed (time.monotonic()) and what it says, for the watchdog."""
        return self._changed, dict(self.data)
