#!/usr/bin/env python3
"""Nagios check of glance-simplestreams-sync: how old the last successful sync is and whether the last
run failed.

The charm installs it as the NRPE command `check_glance_simplestreams_sync` when the
nrpe-external-master relation exists (see nrpe.check_argv). It runs as the nagios user with
the machine's python3, so it uses the standard library only. It prints one line and exits with the
Nagios code:

- OK (0): standby unit (`--standby`: only the leader syncs); `--run-disabled` (no schedule) and the last
  run did not fail; or the last successful sync is at most `--max-age-seconds` old.
- WARNING (1): no sync has run yet, within `--max-age-seconds` of the check being installed (the time
  the charm recorded in `charm-nrpe-check.json` in the state dir); images need an operator's decision
  (`needs_decision`: named), unless something worse applies.
- CRITICAL (2): the last run failed (names the failed images, the first error and when cron's retry
  line tries again); the last successful
  sync is older than `--max-age-seconds`; no sync has run for longer than that since the install.
- UNKNOWN (3): the state cannot be read, or bad arguments.

A sync still running far longer than expected (progress.json: over 24 h, or no progress for longer than
the sync's watchdog allows) is named first, and makes an OK a WARNING. A run that crashed is CRITICAL
and says so (`crashed` in last-sync.json).

It reads `last-sync.json` in `--state-dir`, which the sync engine writes readable by all (it holds no
secret).
"""

from __future__ import annotations

import argparse
import calendar
import json
import os
import sys
import time
from typing import NoReturn

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
LABELS = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}

RESULT_FILE = "last-sync.json"  # simplestreams_sync.state.RESULT_FILE
PROGRESS_FILE = "progress.json"  # simplestreams_sync.state.PROGRESS_FILE
NO_PROGRESS = 3600  # simplestreams_sync.timeouts.NO_PROGRESS: the watchdog's limit
LONG_RUN = 24 * 3600  # sync_report.LONG_RUN
STALE_GRACE = 600  # sync_report.STALE_GRACE
INSTALLED_FILE = "charm-nrpe-check.json"  # host.Paths.nrpe_check_marker: {"installed": timestamp}
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
MAX_DETAIL = 200


class StateError(Exception):
    """The state dir holds something the check cannot read."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse would exit 2, which Nagios reads as CRITICAL
        raise StateError(f"bad arguments: {message}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = Parser(prog="nrpe_check_sync.py", description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", required=True, help="the sync's state dir")
    parser.add_argument(
        "--max-age-seconds",
        required=True,
        type=int,
        help="CRITICAL when the last successful sync is older (2 x the sync frequency)",
    )
    parser.add_argument(
        "--run-disabled", action="store_true", help="no scheduled sync (run=false): OK unless the last run failed"
    )
    parser.add_argument("--standby", action="store_true", help="not the leader, which syncs: always OK")
    args = parser.parse_args(argv)
    if args.max_age_seconds <= 0:
        parser.error("--max-age-seconds must be positive")
    return args


# --- reading the state ------------------------------------------------------------------------------


def parse_time(text: object) -> float | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return float(calendar.timegm(time.strptime(text, TIME_FORMAT)))
    except ValueError:
        return None


def read_json(path: str) -> dict | None:
    """The file's object, None if it does not exist; StateError if unreadable (PermissionError passes)."""
    try:
        with open(path) as stream:
            data = json.load(stream)
    except FileNotFoundError:
        return None
    except PermissionError:
        raise
    except (OSError, ValueError) as error:
        raise StateError(f"cannot read {path}: {error}") from None
    if not isinstance(data, dict):
        raise StateError(f"cannot read {path}: not a JSON object")
    return data


def result_from_json(data: dict) -> dict:
    """The last run, normalised: finished/last_success (epoch or None), ok, failed names, errors."""
    failed = [item for item in data.get("failed") or [] if isinstance(item, dict)]
    errors = [str(error) for error in data.get("errors") or []]
    ok = data.get("ok")
    if ok is None:
        ok = not failed and not errors
    finished = parse_time(data.get("finished")) or parse_time(data.get("started"))
    if "last_success" in data:
        last_success = parse_time(data.get("last_success"))
    else:  # written before the engine recorded last_success
        last_success = finished if ok else None
    first_error = errors[0] if errors else ""
    if not first_error and failed:
        first_error = f"{failed[0].get('name')}: {failed[0].get('error')}"
    decisions = [item for item in data.get("needs_decision") or [] if isinstance(item, dict)]
    return {
        "finished": finished,
        "last_success": last_success,
        "next_try": parse_time(data.get("next_try")),
        "failures_in_a_row": data.get("failures_in_a_row") or 0,
        "needs_decision": [f"{item.get('name')} ({item.get('id')})" for item in decisions],
        "ok": bool(ok),
        "failed": [str(item.get("name")) for item in failed],
        "failed_count": len(failed),
        "error_count": len(errors),
        "first_error": first_error,
        "crashed": str(data.get("crashed") or ""),
    }


def read_last_run(state_dir: str) -> dict | None:
    """The last (non dry) run, or None if there never was one."""
    path = os.path.join(state_dir, RESULT_FILE)
    try:
        data = read_json(path)
    except PermissionError:
        raise StateError(
            f"cannot read {path}: permission denied (NRPE runs this check as nagios, who must be able to read it)"
        ) from None
    if data is None or data.get("dry_run"):
        return None
    return result_from_json(data)


def read_running(state_dir: str) -> dict | None:
    """The running sync's progress.json, or None when no sync runs (no file, or its process is gone)."""
    try:
        data = read_json(os.path.join(state_dir, PROGRESS_FILE))
    except (PermissionError, StateError):
        return None
    if data is None:
        return None
    pid = data.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:  # another user's process (the sync's): it runs
        pass
    return data


def overdue_message(progress: dict, now: float) -> str | None:
    """'sync running for 26h, far longer than expected (pid …, last progress …)' when it has run for
    longer than LONG_RUN, or gone without progress for longer than the watchdog allows; else None."""
    started, updated = parse_time(progress.get("started")), parse_time(progress.get("updated"))
    running = now - started if started is not None else 0.0
    stalled = updated is not None and now - updated > NO_PROGRESS + STALE_GRACE
    if running <= LONG_RUN and not stalled:
        return None
    return (
        f"sync running for {format_duration(running)}, far longer than expected "
        f"(pid {progress.get('pid')}, last progress {format_time(updated)})"
    )


def read_installed(state_dir: str) -> float | None:
    """When the charm installed the check (None: unknown)."""
    try:
        data = read_json(os.path.join(state_dir, INSTALLED_FILE))
    except (PermissionError, StateError):
        return None
    return parse_time((data or {}).get("installed"))


# --- the verdict ------------------------------------------------------------------------------------


def format_time(epoch: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(epoch)) if epoch else "never"


def format_duration(seconds: float) -> str:
    """7200 -> '2h', 172800 -> '48h', 1209600 -> '14d' (rounded down to one unit)."""
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 120 * 60:
        return f"{seconds // 60}m"
    if seconds < 72 * 3600:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def truncate(text: str, limit: int = MAX_DETAIL) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def failure_message(result: dict, now: float) -> str:
    if result["crashed"]:
        detail = [f"{truncate(result['crashed'])} (traceback in the sync log)"]
        detail.append(f"last success: {format_time(result['last_success'])}")
        if result["next_try"] is not None:
            detail.append(next_try_message(result, now))
        return f"last sync {format_time(result['finished'])} crashed: " + "; ".join(detail)
    detail = []
    if result["failed_count"]:
        names = ", ".join(result["failed"][:3])
        more = result["failed_count"] - len(result["failed"][:3])
        if names and more:
            names += f" and {more} more"
        count = f"{result['failed_count']} image{'s' if result['failed_count'] != 1 else ''} failed"
        detail.append(f"{count} ({names})" if names else count)
    if result["first_error"]:
        detail.append(f"first error: {truncate(result['first_error'])}")
    elif result["error_count"]:
        detail.append(f"{result['error_count']} error{'s' if result['error_count'] != 1 else ''}")
    detail.append(f"last success: {format_time(result['last_success'])}")
    if result["next_try"] is not None:
        detail.append(next_try_message(result, now))
    return f"last sync {format_time(result['finished'])} failed: " + "; ".join(detail)


def next_try_message(result: dict, now: float) -> str:
    """E.g. 'next try in 10m (retry 2)': when cron's retry line syncs again."""
    left = result["next_try"] - now
    when = "within a minute" if left <= 60 else f"in {format_duration(left)}"
    return f"next try {when} (retry {result['failures_in_a_row']})"


def decisions_message(names: list[str]) -> str:
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    what = "1 image needs" if len(names) == 1 else f"{len(names)} images need"
    return f"{what} an operator's decision: {truncate(shown)}"


def check(args: argparse.Namespace, now: float) -> tuple[int, str]:
    """The state, and images that need an operator's decision as WARNING unless something worse applies."""
    if args.standby:
        return OK, "standby: the leader unit syncs images"
    result = read_last_run(args.state_dir)
    code, message = check_syncs(args, result, now)
    if result is not None and result["needs_decision"] and code in (OK, WARNING):
        code, message = WARNING, f"{decisions_message(result['needs_decision'])}; {message}"
    running = read_running(args.state_dir)
    overdue = overdue_message(running, now) if running is not None else None
    if overdue is not None:
        code, message = max(code, WARNING), f"{overdue}; {message}"
    return code, message


def check_syncs(args: argparse.Namespace, result: dict | None, now: float) -> tuple[int, str]:
    if result is not None and not result["ok"]:
        return CRITICAL, failure_message(result, now)
    if args.run_disabled:
        message = "scheduled sync disabled (run=false)"
        if result is not None:
            message += f"; last sync {format_time(result['finished'])} succeeded"
        return OK, message
    limit = format_duration(args.max_age_seconds)
    last_success = result["last_success"] if result is not None else None
    if last_success is not None:
        age = now - last_success
        if age > args.max_age_seconds:
            return CRITICAL, (
                f"last successful sync {format_time(last_success)} is {format_duration(age)} old (limit {limit})"
            )
        return OK, f"last sync {format_time(last_success)} succeeded, {format_duration(age)} ago (limit {limit})"
    installed = read_installed(args.state_dir)
    if installed is None:
        return WARNING, "no sync has run yet"
    waiting = now - installed
    if waiting > args.max_age_seconds:
        return CRITICAL, (
            f"no sync has run in the {format_duration(waiting)} since {format_time(installed)} (limit {limit})"
        )
    return WARNING, f"no sync has run yet (CRITICAL from {format_time(installed + args.max_age_seconds)})"


def main(argv: list[str] | None = None) -> int:
    try:
        code, message = check(parse_args(argv), time.time())
    except StateError as error:
        code, message = UNKNOWN, str(error)
    except Exception as error:  # a check must answer UNKNOWN, never a traceback and exit 1
        code, message = UNKNOWN, f"{type(error).__name__}: {error}"
    print(f"{LABELS[code]}: {' '.join(message.split())}")
    return code


if __name__ == "__main__":
    sys.exit(main())
