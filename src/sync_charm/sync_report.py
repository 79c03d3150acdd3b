"""What `juju status` and the sync-images action say: pure functions of the engine's state files."""

from __future__ import annotations

import math
from datetime import datetime

from simplestreams_sync import EXIT_CONFIG, EXIT_FAILED, EXIT_LOCKED, EXIT_OK
from simplestreams_sync.state import Progress, SyncResult, parse_time
from simplestreams_sync.text import shorten

MAX_STATUS_DETAIL = 100


def last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return shorten(lines[-1], 300) if lines else "no error output"


def _format_time(timestamp: str | None) -> str:
    try:
        return parse_time(timestamp or "").strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return timestamp or "unknown time"


def progress_message(progress: Progress) -> str:
    """E.g. 'Syncing ubuntu-24.04 amd64 disk1.img (3 of 8, 41%)' from progress.json."""
    if not progress.item or not progress.item_count:
        return f"Sync running ({progress.phase or 'starting'}, since {_format_time(progress.started)})"
    detail = f"{progress.item_index} of {progress.item_count}"
    if progress.bytes_total:
        detail += f", {min(100, 100 * progress.bytes_done // progress.bytes_total)}%"
    return f"Syncing {shorten(str(progress.item), MAX_STATUS_DETAIL)} ({detail})"


def sync_failed(result: SyncResult, publishing: bool = True) -> bool:
    """Whether the last run failed. Without publishing (use_swift=false since), a run whose errors
    came from a missing object store did not fail at what is still asked of it."""
    if result.dry_run:
        return False
    errors = result.errors and (publishing or not result.object_store_missing)
    return bool(result.failed or errors)


def last_sync_summary(result: SyncResult) -> str:
    """E.g. 'last sync 2026-11-24 10:02 UTC: 8 created, 0 failed' from last-sync.json."""
    when = _format_time(result.finished or result.started)
    if result.dry_run:
        return f"last sync {when}: dry run, {len(result.would_create)} would be created"
    return f"last sync {when}: {len(result.created)} created, {len(result.failed)} failed"


def next_try_summary(result: SyncResult, now: datetime) -> str | None:
    """E.g. 'next try in 10 min (retry 2)' from last-sync.json's `next_try`; None when none is due."""
    try:
        due = parse_time(result.next_try)
    except ValueError:  # "" (no retry) or not a time
        return None
    seconds = (due - now).total_seconds()
    when = "within a minute" if seconds <= 60 else f"in {_duration(seconds)}"
    return f"next try {when} (retry {result.failures_in_a_row})"


def _duration(seconds: float) -> str:
    """600 -> '10 min', 10800 -> '3 h', 604800 -> '7 d'."""
    minutes = math.ceil(seconds / 60)
    if minutes < 120:
        return f"{minutes} min"
    if minutes < 48 * 60:
        return f"{round(minutes / 60)} h"
    return f"{round(minutes / 1440)} d"


def decisions_summary(result: SyncResult) -> str | None:
    """E.g. "1 image needs an operator's decision: auto-sync/ubuntu-… (5e1f…) deactivated" from
    last-sync.json's `needs_decision`; None when there is none."""
    entries = result.needs_decision
    if not entries:
        return None
    what = "1 image needs" if len(entries) == 1 else f"{len(entries)} images need"
    described = "; ".join(
        f"{entry.get('name')} ({entry.get('id')}) {str(entry.get('reason')).split(':')[0]}" for entry in entries
    )
    return shorten(f"{what} an operator's decision: {described}", 2 * MAX_STATUS_DETAIL)


def failed_sync_summary(result: SyncResult) -> str:
    """E.g. 'Last sync failed 2026-11-24 10:02 UTC (1 created, 1 failed): ubuntu-…: HTTP 500' from
    last-sync.json: when, the counts, and the first reason, shortened without losing its end."""
    when = _format_time(result.finished or result.started)
    counts = f"{len(result.created)} created, {len(result.failed)} failed"
    return f"Last sync failed {when} ({counts}): {shorten([*result.errors, *_failures(result)][0], 160)}"


def _failures(result: SyncResult) -> list[str]:
    """Each failed image with why."""
    return [f"{failure.get('name')}: {failure.get('error')}" for failure in result.failed]


def action_results(lines: list[str], result: SyncResult | None, dry_run: bool) -> dict:
    """The action's results: the engine's `created …` (or `would create …`) lines and the counts."""
    created = [line for line in lines if line.startswith("created ")]
    would_create = [line for line in lines if line.startswith("would create ")]
    others = [line for line in lines if line.strip() and line not in created and line not in would_create]
    results: dict = {"dry-run": dry_run}
    if dry_run:
        results["would-create-count"] = len(would_create)
        if would_create:
            results["would-create"] = "\n".join(would_create)
    else:
        results["created-count"] = len(created)
        if created:
            results["created"] = "\n".join(created)
    if result is not None:
        results["failed-count"] = len(result.failed)
        if result.errors:
            results["errors"] = "\n".join(result.errors)
    if others:
        results["summary"] = others[-1]
    return results


def failure_reason(result: SyncResult | None, stderr: str) -> str:
    reasons = [*_failures(result), *result.errors] if result is not None else []
    return shorten("; ".join(reasons), 500) if reasons else last_line(stderr)


def action_failure(code: int, result: SyncResult | None, stderr: str) -> str | None:
    """Why the sync-images action failed, from the engine's exit code; None when it did not."""
    if code == EXIT_OK:
        return None
    if code == EXIT_FAILED:
        return f"Sync finished with failures: {failure_reason(result, stderr)}"
    if code == EXIT_CONFIG:
        return f"The sync rejected its config files: {last_line(stderr)}"
    if code == EXIT_LOCKED:
        return (
            "Another sync is already running (cron or another sync-images action); "
            f"try again when it has finished ({last_line(stderr)})"
        )
    return f"The sync exited with code {code}: {last_line(stderr)}"
