"""Retrying soon after a failed run (retry.py): the backoff recorded in last-sync.json, and `--retry`,
which syncs only when that time has come."""

from __future__ import annotations

import subprocess
from datetime import datetime, timezone

import pytest
import yaml

from simplestreams_sync import retry
from simplestreams_sync.state import TIME_FORMAT, SyncResult, read_result, write_result
from simplestreams_sync.sync_lock import SyncLock
from tests.localcloud.engine_cli import engine_argv, engine_env

FAILED = {"errors": ["glance: cannot connect"]}


def record_runs(state_dir, outcomes: list[dict], frequency: str | None = "weekly") -> SyncResult:
    """Write one result per outcome ({} succeeded), each finished at 10:00 on a day of its own."""
    for day, outcome in enumerate(outcomes, start=1):
        stamp = f"2026-12-{day:02d}T10:00:00Z"
        write_result(state_dir, SyncResult(started=stamp, finished=stamp, **outcome), frequency)
    result = read_result(state_dir)
    assert result is not None
    return result


@pytest.mark.parametrize(
    ("failures", "next_try"),
    [(1, "10:05"), (2, "10:10"), (3, "10:20"), (4, "10:40"), (5, "11:20")],
)
def test_each_failure_in_a_row_doubles_the_wait_from_5_minutes(tmp_path, failures, next_try):
    result = record_runs(tmp_path, [FAILED] * failures)

    assert result.failures_in_a_row == failures
    assert result.next_try == f"2026-12-{failures:02d}T{next_try}:00Z"


@pytest.mark.parametrize(
    ("frequency", "next_try"), [("hourly", "2026-12-10T11:00:00Z"), ("daily", "2026-12-11T10:00:00Z")]
)
def test_the_wait_is_never_longer_than_the_schedules_period(tmp_path, frequency, next_try):
    result = record_runs(tmp_path, [FAILED] * 10, frequency)  # 5 min x 2^9: 42 h 40 min

    assert result.next_try == next_try


def test_a_success_ends_the_retries(tmp_path):
    result = record_runs(tmp_path, [FAILED, FAILED, {}])

    assert (result.failures_in_a_row, result.next_try) == (0, "")


def test_after_a_success_a_failure_starts_again_at_5_minutes(tmp_path):
    result = record_runs(tmp_path, [FAILED, FAILED, {}, FAILED])

    assert (result.failures_in_a_row, result.next_try) == (1, "2026-12-04T10:05:00Z")


def test_without_a_schedule_no_retry_is_due(tmp_path):
    result = record_runs(tmp_path, [FAILED], frequency=None)

    assert (result.failures_in_a_row, result.next_try) == (1, "")
    assert not retry.is_due(result.next_try, datetime(2030, 1, 1, tzinfo=timezone.utc))


def test_a_retry_is_due_from_its_time_on_and_when_no_run_left_a_result():
    at = datetime(2026, 12, 1, 10, 5, tzinfo=timezone.utc)

    assert [retry.is_due("2026-12-01T10:05:00Z", at.replace(minute=minute)) for minute in (4, 5, 6)] == [
        False,
        True,
        True,
    ]
    assert retry.is_due(None, at)
    assert not retry.is_due("", at)


# --- `--retry` on the command line (nothing here reaches a cloud: when a retry is due, the sync reads an
# identity.yaml whose Keystone refuses to connect) ------------------------------------------------------


@pytest.fixture
def config_files(tmp_path):
    state_dir = tmp_path / "state"
    mirrors = tmp_path / "mirrors.yaml"
    mirrors.write_text(
        yaml.safe_dump(
            {"state_dir": str(state_dir), "frequency": "weekly", "mirror_list": [{"url": (tmp_path / "none").as_uri()}]}
        )
    )
    identity = tmp_path / "identity.yaml"
    identity.write_text(
        yaml.safe_dump({"auth_url": "http://127.0.0.1:9/v3", "username": "u", "password": "p", "project_name": "p"})
    )
    return state_dir, mirrors, identity


def run_retry(mirrors, identity) -> subprocess.CompletedProcess:
    return subprocess.run(
        engine_argv(mirrors, identity, "--retry"), capture_output=True, text=True, env=engine_env(), timeout=120
    )


def test_retry_before_its_time_does_nothing_and_says_nothing(config_files):
    state_dir, mirrors, identity = config_files
    write_result(
        state_dir, SyncResult(started="2099-01-01T00:00:00Z", finished="2099-01-01T00:00:00Z", **FAILED), "weekly"
    )
    before = (state_dir / "last-sync.json").read_bytes()

    result = run_retry(mirrors, identity)

    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert (state_dir / "last-sync.json").read_bytes() == before


def test_retry_once_due_syncs_and_records_the_next_failure(config_files):
    state_dir, mirrors, identity = config_files
    write_result(
        state_dir, SyncResult(started="2026-01-01T00:00:00Z", finished="2026-01-01T00:00:00Z", **FAILED), "weekly"
    )

    result = run_retry(mirrors, identity)

    assert result.returncode == 1
    assert result.stdout.splitlines()[0].endswith(" retry 1 of the sync that failed 2026-01-01T00:00:00Z (--retry)")
    after = read_result(state_dir)
    assert after is not None and after.failures_in_a_row == 2
    assert after.next_try == (retry.parse_time(after.finished) + retry.delay(2, "weekly")).strftime(TIME_FORMAT)


def test_retry_while_another_sync_holds_the_lock_does_nothing_and_says_nothing(config_files):
    state_dir, mirrors, identity = config_files
    write_result(
        state_dir, SyncResult(started="2026-01-01T00:00:00Z", finished="2026-01-01T00:00:00Z", **FAILED), "weekly"
    )

    with SyncLock(state_dir):
        result = run_retry(mirrors, identity)

    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert read_result(state_dir).failures_in_a_row == 1


def test_retry_with_a_mirrors_yaml_it_cannot_read_says_nothing(config_files):
    _, mirrors, identity = config_files
    mirrors.write_text("- not a mapping\n")

    result = run_retry(mirrors, identity)

    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
