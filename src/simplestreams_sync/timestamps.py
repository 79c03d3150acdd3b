"""The one format of every time the sync writes (state files, metrics, the quick check's record): UTC,
to the second, e.g. 2026-01-31T23:59:59Z. Standard library only: cron's retry line reads it every minute."""

from __future__ import annotations

from datetime import datetime, timezone

TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def utc_now() -> str:
    return format_time(datetime.now(timezone.utc))


def format_time(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime(TIME_FORMAT)


def parse_time(text: str) -> datetime:
    """The aware datetime of a time in TIME_FORMAT; ValueError when it is not one."""
    return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=timezone.utc)
