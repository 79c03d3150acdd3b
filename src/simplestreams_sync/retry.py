"""Retrying: a call that failed in passing (`retried`), and a failed run soon after it (the rest).

After a run that failed, the next try comes 5 minutes after it, then 10, 20, 40, ... after each further
failure, never later than one period of the schedule (`frequency` in mirrors.yaml: hourly, daily or
weekly); a run that succeeds ends the retries. The run records this in last-sync.json (`next_try`,
`failures_in_a_row`); a second cron line starts `--retry` every minute, which syncs only when that time
has come (or when no sync has left a result yet) and otherwise exits at once, without a word. Standard
library only: it runs every minute.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TypeVar

from .timestamps import format_time, parse_time

LOG = logging.getLogger(__name__)
T = TypeVar("T")

FIRST_DELAY = timedelta(minutes=5)
PERIODS = {"hourly": timedelta(hours=1), "daily": timedelta(days=1), "weekly": timedelta(weeks=1)}


def delay(failures_in_a_row: int, frequency: str) -> timedelta:
    """How long after the last of `failures_in_a_row` failed runs the next try comes."""
    period = PERIODS[frequency]
    doublings = min(failures_in_a_row - 1, 20)  # 5 min x 2^20 is past any period
    return min(FIRST_DELAY * 2**doublings, period)


def next_try(finished: str, failures_in_a_row: int, frequency: str | None) -> str:
    """When to try again after a run that finished at `finished`: "" after a success or without a schedule."""
    if not failures_in_a_row or frequency is None:
        return ""
    return format_time(parse_time(finished) + delay(failures_in_a_row, frequency))


def is_due(next_try_at: str | None, now: datetime) -> bool:
    """Whether a retry is due: `next_try_at` (from last-sync.json; None: no run has left a result) has come."""
    if next_try_at is None:
        return True
    return bool(next_try_at) and parse_time(next_try_at) <= now


def retried(
    call: Callable[[], T],
    *,
    what: str,
    attempts: int,
    first_delay: float,
    transient: tuple[type[BaseException], ...],
) -> T:
    """`call()`, tried again after a `transient` error, up to `attempts` times in all, waiting
    `first_delay` seconds before the first retry and twice as long before each further one. The last
    attempt's error comes out as it is."""
    delay = first_delay
    for _ in range(attempts - 1):
        try:
            return call()
        except transient as error:
            LOG.warning("%s failed (%s); retrying in %.1fs", what, type(error).__name__, delay)
            time.sleep(delay)
            delay *= 2
    return call()
