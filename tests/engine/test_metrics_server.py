"""The metrics server: what a scrape answers from the state files the sync's own writers leave, served
by the real process over HTTP on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from simplestreams_sync.metrics_server import exposition
from simplestreams_sync.retry import parse_time
from simplestreams_sync.state import ProgressFile, SyncResult, write_result

SRC = Path(__file__).resolve().parents[2] / "src"
FAILED_RUN = SyncResult(
    started="2026-11-25T10:00:00Z",
    finished="2026-11-25T10:02:30Z",
    created=[{"id": "i1", "name": "noble"}],
    failed=[{"name": "jammy", "error": "HTTP 404"}],
    kept=[{"id": "k1", "name": "focal", "reason": "in use"}],
    needs_decision=[{"id": "d1", "name": "old", "reason": "deactivated"}, {"id": "d2", "name": "x", "reason": "p"}],
    images_active=4,
    bytes_transferred=123456789,
    duration_seconds=150.5,
)


def samples(text: str) -> dict[str, str]:
    """Each sample line's series -> value."""
    return dict(line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))


def test_a_failed_run_after_a_success_as_the_sync_wrote_it(tmp_path):
    write_result(tmp_path, SyncResult(started="2026-11-24T10:00:00Z", finished="2026-11-24T10:01:00Z"), "daily")
    write_result(tmp_path, FAILED_RUN, "daily")

    assert samples(exposition(tmp_path, "daily", standby=False).text()) == {
        "glance_simplestreams_sync_standby": "0",
        "glance_simplestreams_sync_expected_period_seconds": "86400",
        "glance_simplestreams_sync_sync_running": "0",
        "glance_simplestreams_sync_last_run_timestamp_seconds": "1795600950",
        "glance_simplestreams_sync_last_run_success": "0",
        "glance_simplestreams_sync_last_run_duration_seconds": "150.5",
        "glance_simplestreams_sync_last_run_quick_check": "0",
        "glance_simplestreams_sync_last_run_bytes_transferred": "123456789",
        "glance_simplestreams_sync_last_run_images_created": "1",
        "glance_simplestreams_sync_last_run_images_deleted": "0",
        "glance_simplestreams_sync_last_run_images_failed": "1",
        "glance_simplestreams_sync_last_run_errors": "0",
        "glance_simplestreams_sync_failures_in_a_row": "1",
        "glance_simplestreams_sync_next_try_timestamp_seconds": "1795601250",  # 5 minutes after
        "glance_simplestreams_sync_last_success_timestamp_seconds": "1795514460",
        'glance_simplestreams_sync_images{state="active"}': "4",
        'glance_simplestreams_sync_images{state="kept"}': "1",
        'glance_simplestreams_sync_images{state="needs_decision"}': "2",
    }


def test_before_any_run_only_the_schedule_and_no_running_sync(tmp_path):
    assert samples(exposition(tmp_path, "hourly", standby=False).text()) == {
        "glance_simplestreams_sync_standby": "0",
        "glance_simplestreams_sync_expected_period_seconds": "3600",
        "glance_simplestreams_sync_sync_running": "0",
    }


def test_without_a_schedule_no_expected_period(tmp_path):
    write_result(tmp_path, SyncResult(started="2026-11-24T10:00:00Z", finished="2026-11-24T10:01:00Z"))

    series = samples(exposition(tmp_path, None, standby=False).text())
    assert "glance_simplestreams_sync_expected_period_seconds" not in series
    assert series["glance_simplestreams_sync_last_run_success"] == "1"


def test_a_run_that_ended_at_the_quick_check(tmp_path):
    write_result(
        tmp_path, SyncResult(started="2026-11-24T10:00:00Z", finished="2026-11-24T10:00:01Z", quick_check=True)
    )

    assert (
        samples(exposition(tmp_path, "daily", standby=False).text())["glance_simplestreams_sync_last_run_quick_check"]
        == "1"
    )


def test_a_running_sync_and_when_it_started(tmp_path):
    progress = ProgressFile(tmp_path)  # this process is the running sync
    try:
        series = samples(exposition(tmp_path, "daily", standby=False).text())
    finally:
        progress.close()

    assert series["glance_simplestreams_sync_sync_running"] == "1"
    started = parse_time(progress.data["started"]).timestamp()
    assert series["glance_simplestreams_sync_running_since_timestamp_seconds"] == str(int(started))


def test_a_standby_unit_serves_no_sync_figures_even_with_an_old_result(tmp_path):
    write_result(tmp_path, FAILED_RUN, "daily")

    assert samples(exposition(tmp_path, "daily", standby=True).text()) == {"glance_simplestreams_sync_standby": "1"}


def test_each_family_has_help_and_type(tmp_path):
    write_result(tmp_path, FAILED_RUN, "daily")
    metrics = exposition(tmp_path, "daily", standby=False)

    for name in metrics.names:
        assert f"# TYPE {name} gauge" in metrics.lines
        assert any(line.startswith(f"# HELP {name} ") for line in metrics.lines)


@contextmanager
def metrics_server(state_dir: Path, *extra: str):
    """The real server on a free port of 127.0.0.1 (it names the port it got), stopped by PID."""
    argv = [sys.executable, "-m", "simplestreams_sync.metrics_server", "--state-dir", str(state_dir), "--port", "0"]
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    process = subprocess.Popen([*argv, *extra], stdout=subprocess.PIPE, text=True, env=env)
    try:
        line = process.stdout.readline()
        assert line.startswith("serving metrics at http://127.0.0.1:"), line
        yield line.split()[-1]
    finally:
        process.kill()
        process.wait()
        process.stdout.close()


def test_the_server_answers_each_scrape_from_the_files_as_they_are_then(tmp_path):
    with metrics_server(tmp_path, "--frequency", "daily") as url:
        first = urllib.request.urlopen(url).read().decode()
        write_result(tmp_path, FAILED_RUN, "daily")
        with urllib.request.urlopen(url) as response:
            second = response.read().decode()
            content_type = response.headers["Content-Type"]

    assert "glance_simplestreams_sync_last_run_success" not in samples(first)
    assert samples(second) == samples(exposition(tmp_path, "daily", standby=False).text())
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"


def test_the_server_serves_only_metrics(tmp_path):
    with metrics_server(tmp_path) as url, pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(url.replace("/metrics", "/last-sync.json"))

    assert error.value.code == 404


def test_a_port_in_use_is_a_clear_error(tmp_path):
    with metrics_server(tmp_path) as url:
        port = url.split(":")[2].split("/")[0]
        env = {**os.environ, "PYTHONPATH": str(SRC)}
        argv = [sys.executable, "-m", "simplestreams_sync.metrics_server", "--state-dir", str(tmp_path), "--port", port]
        second = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)

    assert second.returncode == 1
    assert second.stderr.startswith(f"error: cannot listen on 127.0.0.1:{port}: ")
