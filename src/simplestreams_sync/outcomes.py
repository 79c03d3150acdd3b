"""What a run leaves when it does not end as planned: a crash (an unexpected exception) or the watchdog's
stop become a failed result in last-sync.json, with the retry scheduled; a config file that became invalid
is said once per change of the config files, not by every minute's retry line. Standard library only
(with state, retry and metrics): a crash may come before the heavy imports."""

from __future__ import annotations

import contextlib
import hashlib
import traceback
from pathlib import Path

from . import retry
from .metrics import write_metrics
from .state import SyncResult, read_json, utc_now, write_json_atomically, write_result

CONFIG_ERROR_FILE = "config-error.json"  # {"inputs": digest of the config files, "error": what was said}
MAX_CRASH_TEXT = 500


def crash_text(error: BaseException) -> str:
    """'KeyError: 'x'': the exception's type and message, on one line."""
    text = " ".join(f"{type(error).__name__}: {error}".split())
    return text if len(text) <= MAX_CRASH_TEXT else text[: MAX_CRASH_TEXT - 3] + "..."


def crash_traceback(error: BaseException) -> str:
    return "".join(traceback.format_exception(type(error), error, error.__traceback__))


def record_crash(state_dir: str, started: str, error: BaseException, frequency: str | None) -> SyncResult:
    """Record a run that ended on an unexpected exception (its traceback goes to stderr: the sync log)."""
    crashed = crash_text(error)
    result = SyncResult(
        started=started,
        finished=utc_now(),
        crashed=crashed,
        errors=[f"the sync crashed: {crashed} (the traceback is in the sync log)"],
    )
    return _record(state_dir, result, frequency)


def record_failure(state_dir: str, started: str, error: str, frequency: str | None) -> SyncResult:
    """Record a run ended by one error before it could record its own result (the watchdog's)."""
    return _record(state_dir, SyncResult(started=started, finished=utc_now(), errors=[error]), frequency)


def _record(state_dir: str, result: SyncResult, frequency: str | None) -> SyncResult:
    write_result(state_dir, result, frequency)
    write_metrics(state_dir, result)
    return result


def frequency_in(mirrors: dict | None) -> str | None:
    """The schedule's frequency as mirrors.yaml names it (None: none, or not one the retry knows)."""
    frequency = (mirrors or {}).get("frequency")
    return frequency if frequency in retry.PERIODS else None


def config_inputs_digest(paths: list[str]) -> str:
    """One digest of the config files' bytes (a missing or unreadable file counts as its absence)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.encode() + b"\0")
        try:
            digest.update(Path(path).read_bytes())
        except OSError as error:
            digest.update(f"unreadable: {error.errno}".encode())
        digest.update(b"\0")
    return digest.hexdigest()


def config_error_is_new(state_dir: str, paths: list[str], error: str) -> bool:
    """Whether `error` about these config files has not been said since they last changed; records it."""
    path = Path(state_dir) / CONFIG_ERROR_FILE
    said = {"inputs": config_inputs_digest(paths), "error": error}
    if read_json(path) == said:
        return False
    with contextlib.suppress(OSError):  # cannot remember it: say it every time rather than never
        write_json_atomically(path, said)
    return True


def forget_config_error(state_dir: str) -> None:
    (Path(state_dir) / CONFIG_ERROR_FILE).unlink(missing_ok=True)
