"""The Nagios check src/sync_charm/nrpe_check_sync.py, run as NRPE runs it (a subprocess) on a temporary state dir.

Times in the state files are relative to NOW (the tests take seconds, the thresholds hours), so each test
is about one side of a threshold and the expected messages show the same minutes as the files.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "src" / "sync_charm" / "nrpe_check_sync.py"
HOUR, DAY = 3600, 86400
DAILY = 2 * DAY  # --max-age-seconds the charm passes for frequency=daily
NOW = int(time.time())


@pytest.fixture(autouse=True)
def fresh_now():
    """Times are relative to the test's own start: the module may be imported minutes before it runs."""
    global NOW
    NOW = int(time.time())


def stamp(seconds_ago: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(NOW - seconds_ago))


def shown(seconds_ago: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(NOW - seconds_ago))


def run_check(
    state_dir: Path,
    max_age: int = DAILY,
    *flags: str,
    python: str = sys.executable,
    user: int | None = None,
    script: Path = SCRIPT,
) -> tuple[int, str]:
    """(exit code, the one line printed); `user`: run as that uid, as NRPE runs it as nagios."""
    ids = {} if user is None else {"user": user, "group": user, "extra_groups": []}
    process = subprocess.run(
        [python, str(script), "--state-dir", str(state_dir), "--max-age-seconds", str(max_age), *flags],
        capture_output=True,
        text=True,
        env={"PATH": os.environ.get("PATH", "")},
        **ids,
    )
    assert process.stderr == ""
    lines = process.stdout.splitlines()
    assert len(lines) == 1, process.stdout
    return process.returncode, lines[0]


def write_result(state_dir: Path, finished_ago: float, failed=(), errors=(), last_success_ago=None, **extra) -> None:
    """last-sync.json as the engine writes it (ok run: last_success = finished)."""
    ok = not failed and not errors
    if last_success_ago is None and ok:
        last_success_ago = finished_ago
    data = {
        "started": stamp(finished_ago + 60),
        "finished": stamp(finished_ago),
        "dry_run": False,
        "created": [],
        "would_create": [],
        "deleted": [],
        "failed": list(failed),
        "errors": list(errors),
        "published": True,
        "ok": ok,
        "last_success": stamp(last_success_ago) if last_success_ago is not None else "",
        **extra,
    }
    (state_dir / "last-sync.json").write_text(json.dumps(data))


def write_installed(state_dir: Path, seconds_ago: float) -> None:
    (state_dir / "charm-nrpe-check.json").write_text(
        json.dumps({"installed": stamp(seconds_ago), "expects_syncs": True})
    )


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    path = tmp_path / "state"
    path.mkdir()
    return path


# --- OK ---------------------------------------------------------------------------------------------


def test_recent_success_is_ok(state_dir):
    write_result(state_dir, finished_ago=3 * HOUR)

    assert run_check(state_dir) == (0, f"OK: last sync {shown(3 * HOUR)} succeeded, 3h ago (limit 48h)")


@pytest.mark.parametrize("max_age, limit", [(2 * HOUR, "2h"), (2 * DAY, "48h"), (14 * DAY, "14d")])
def test_just_inside_the_threshold_is_ok(state_dir, max_age, limit):
    write_result(state_dir, finished_ago=max_age - 120)

    code, line = run_check(state_dir, max_age)

    assert code == 0, line
    assert line.endswith(f"(limit {limit})")


def test_run_disabled_without_any_sync_is_ok(state_dir):
    assert run_check(state_dir, DAILY, "--run-disabled") == (0, "OK: scheduled sync disabled (run=false)")


def test_run_disabled_with_an_old_success_is_ok(state_dir):
    write_result(state_dir, finished_ago=30 * DAY)

    assert run_check(state_dir, DAILY, "--run-disabled") == (
        0,
        f"OK: scheduled sync disabled (run=false); last sync {shown(30 * DAY)} succeeded",
    )


def test_standby_is_ok_whatever_the_state(state_dir):
    write_result(state_dir, finished_ago=HOUR, failed=[{"name": "x", "error": "y"}])

    assert run_check(state_dir, DAILY, "--standby") == (0, "OK: standby: the leader unit syncs images")


# --- WARNING ----------------------------------------------------------------------------------------


def test_no_sync_yet_within_the_threshold_of_the_install_warns(state_dir):
    write_installed(state_dir, seconds_ago=HOUR)

    assert run_check(state_dir) == (1, f"WARNING: no sync has run yet (CRITICAL from {shown(HOUR - DAILY)})")


def test_no_sync_yet_and_no_install_time_warns(state_dir):
    assert run_check(state_dir) == (1, "WARNING: no sync has run yet")


def test_a_dry_run_result_is_not_a_sync(state_dir):
    write_result(state_dir, finished_ago=HOUR, dry_run=True)
    write_installed(state_dir, seconds_ago=HOUR)

    code, line = run_check(state_dir)

    assert (code, line.split(" (")[0]) == (1, "WARNING: no sync has run yet")


# --- CRITICAL ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "max_age, age, expected",
    [
        (2 * HOUR, 2 * HOUR + 300, "is 2h old (limit 2h)"),  # hourly
        (2 * DAY, 2 * DAY + 300, "is 48h old (limit 48h)"),  # daily
        (14 * DAY, 14 * DAY + 300, "is 14d old (limit 14d)"),  # weekly
        (2 * DAY, 5 * DAY, "is 5d old (limit 48h)"),
    ],
)
def test_last_success_older_than_the_threshold_is_critical(state_dir, max_age, age, expected):
    write_result(state_dir, finished_ago=age)

    assert run_check(state_dir, max_age) == (2, f"CRITICAL: last successful sync {shown(age)} {expected}")


def test_failed_images_are_named(state_dir):
    write_result(
        state_dir,
        finished_ago=HOUR,
        last_success_ago=DAY + HOUR,
        failed=[
            {"name": "ubuntu-24.04 amd64 disk1.img", "error": "checksum mismatch"},
            {"name": "ubuntu-22.04 amd64 disk1.img", "error": "HTTP 503"},
        ],
    )

    assert run_check(state_dir) == (
        2,
        f"CRITICAL: last sync {shown(HOUR)} failed: 2 images failed (ubuntu-24.04 amd64 disk1.img, "
        f"ubuntu-22.04 amd64 disk1.img); first error: ubuntu-24.04 amd64 disk1.img: checksum mismatch; "
        f"last success: {shown(DAY + HOUR)}",
    )


def test_many_failed_images_are_counted(state_dir):
    write_result(state_dir, finished_ago=HOUR, failed=[{"name": f"img{i}", "error": "e"} for i in range(5)])

    code, line = run_check(state_dir)

    assert code == 2
    assert "5 images failed (img0, img1, img2 and 2 more)" in line
    assert line.endswith("last success: never")


def test_a_mirror_error_is_the_first_error(state_dir):
    write_result(
        state_dir,
        finished_ago=HOUR,
        last_success_ago=2 * HOUR,
        errors=["mirror http://cloud-images.ubuntu.com/releases/: HTTP 404", "publish: 500"],
    )

    assert run_check(state_dir) == (
        2,
        f"CRITICAL: last sync {shown(HOUR)} failed: first error: mirror "
        f"http://cloud-images.ubuntu.com/releases/: HTTP 404; last success: {shown(2 * HOUR)}",
    )


def test_a_failed_run_is_critical_even_with_run_disabled(state_dir):
    write_result(state_dir, finished_ago=HOUR, errors=["keystone: connection refused"])

    code, line = run_check(state_dir, DAILY, "--run-disabled")

    assert (code, line) == (
        2,
        f"CRITICAL: last sync {shown(HOUR)} failed: first error: keystone: connection refused; last success: never",
    )


def test_no_sync_long_after_the_install_is_critical(state_dir):
    write_installed(state_dir, seconds_ago=3 * DAY)

    assert run_check(state_dir) == (2, f"CRITICAL: no sync has run in the 3d since {shown(3 * DAY)} (limit 48h)")


def test_result_without_ok_or_last_success_of_an_older_engine(state_dir):
    write_result(state_dir, finished_ago=3 * DAY)
    data = json.loads((state_dir / "last-sync.json").read_text())
    del data["ok"], data["last_success"]
    (state_dir / "last-sync.json").write_text(json.dumps(data))

    assert run_check(state_dir)[0] == 2


# --- last-sync.json unreadable by nagios -----------------------------------------------------------


@dataclass
class Unreadable:
    """A state dir whose last-sync.json the check cannot read, and how to run the check there."""

    state_dir: Path
    script: Path
    python: str
    user: int | None

    def check(self) -> tuple[int, str]:
        return run_check(self.state_dir, DAILY, python=self.python, user=self.user, script=self.script)


@pytest.fixture
def unreadable_result(state_dir):
    """As a normal user: the file is chmod 0. As root (who reads anything): the check runs as nobody, as
    NRPE runs it as nagios, from a copy of the script (as the charm installs it) in a directory nobody
    can reach, with the system python3 (the venv's may sit in /root)."""
    if os.geteuid() != 0:
        write_result(state_dir, finished_ago=HOUR)
        (state_dir / "last-sync.json").chmod(0)
        yield Unreadable(state_dir, SCRIPT, sys.executable, None)
        return
    if not os.access("/usr/bin/python3", os.X_OK):
        pytest.skip("as root this needs /usr/bin/python3 to run the check as nobody")
    shared = Path(tempfile.mkdtemp(prefix="nrpe-check-"))
    try:
        shared.chmod(0o755)
        script = shared / SCRIPT.name
        shutil.copy(SCRIPT, script)
        state = shared / "state"
        state.mkdir(mode=0o755)
        write_result(state, finished_ago=HOUR)
        (state / "last-sync.json").chmod(0o600)
        yield Unreadable(state, script, "/usr/bin/python3", 65534)
    finally:
        shutil.rmtree(shared)


def test_unreadable_result_is_unknown_and_says_why(unreadable_result):
    assert unreadable_result.check() == (
        3,
        f"UNKNOWN: cannot read {unreadable_result.state_dir / 'last-sync.json'}: permission denied (NRPE runs "
        "this check as nagios, who must be able to read it)",
    )


# --- UNKNOWN ----------------------------------------------------------------------------------------


def test_corrupt_result_is_unknown(state_dir):
    (state_dir / "last-sync.json").write_text("{not json")

    code, line = run_check(state_dir)

    assert code == 3
    assert line == (
        f"UNKNOWN: cannot read {state_dir / 'last-sync.json'}: Expecting property name enclosed in double "
        "quotes: line 1 column 2 (char 1)"
    )


def test_bad_arguments_are_unknown_not_critical(state_dir):
    process = subprocess.run(
        [sys.executable, str(SCRIPT), "--state-dir", str(state_dir)], capture_output=True, text=True
    )

    assert process.returncode == 3
    assert process.stdout == "UNKNOWN: bad arguments: the following arguments are required: --max-age-seconds\n"


def test_non_positive_max_age_is_unknown(state_dir):
    assert run_check(state_dir, 0) == (3, "UNKNOWN: bad arguments: --max-age-seconds must be positive")


def test_the_script_uses_the_standard_library_only():
    """NRPE runs it with the machine's python3: no charm venv, no engine."""
    code = (
        "import sys, runpy; sys.argv = ['x', '--help']\n"
        f"try:\n    runpy.run_path({str(SCRIPT)!r}, run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "third = sorted(name for name in sys.modules if name.split('.')[0] in "
        "('ops', 'yaml', 'pydantic', 'jinja2', 'simplestreams_sync', 'simplestreams', 'host', "
        "'sync_process', 'nrpe'))\n"
        "print(third)"
    )
    process = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True)

    assert process.stdout.splitlines()[-1] == "[]"


# --- retries and decisions ----------------------------------------------------------------------------


def test_a_failed_run_names_the_next_try(state_dir):
    write_result(
        state_dir,
        finished_ago=HOUR,
        errors=["glance: cannot connect"],
        failures_in_a_row=2,
        next_try=stamp(-(10 * 60 + 30)),
    )

    assert run_check(state_dir) == (
        2,
        f"CRITICAL: last sync {shown(HOUR)} failed: first error: glance: cannot connect; last success: never; "
        "next try in 10m (retry 2)",
    )


DECISIONS = [
    {"id": "5e1f", "name": "auto-sync/ubuntu-noble-24.04-amd64-server-20261120-disk1.img", "reason": "deactivated: …"},
    {"id": "77aa", "name": "auto-sync/ubuntu-jammy-22.04-amd64-server-20261101-disk1.img", "reason": "protected, …"},
]


def test_images_that_need_a_decision_warn_with_their_names(state_dir):
    write_result(state_dir, finished_ago=HOUR, needs_decision=DECISIONS)

    assert run_check(state_dir) == (
        1,
        "WARNING: 2 images need an operator's decision: "
        "auto-sync/ubuntu-noble-24.04-amd64-server-20261120-disk1.img (5e1f), "
        "auto-sync/ubuntu-jammy-22.04-amd64-server-20261101-disk1.img (77aa); "
        f"last sync {shown(HOUR)} succeeded, 60m ago (limit 48h)",
    )


def test_a_failed_run_is_worse_than_images_that_need_a_decision(state_dir):
    write_result(state_dir, finished_ago=HOUR, errors=["glance: cannot connect"], needs_decision=DECISIONS[:1])

    code, line = run_check(state_dir)

    assert code == 2
    assert line.startswith(f"CRITICAL: last sync {shown(HOUR)} failed: first error: glance: cannot connect")
    assert "decision" not in line


def test_a_standby_unit_says_nothing_of_decisions(state_dir):
    write_result(state_dir, finished_ago=HOUR, needs_decision=DECISIONS)

    assert run_check(state_dir, DAILY, "--standby") == (0, "OK: standby: the leader unit syncs images")


# --- crashes and syncs running far longer than expected -----------------------------------------------


def test_a_crashed_run_is_critical_and_says_it_crashed(state_dir):
    write_result(
        state_dir,
        finished_ago=HOUR,
        errors=["the sync crashed: KeyError: 'items' (the traceback is in the sync log)"],
        crashed="KeyError: 'items'",
        failures_in_a_row=1,
        next_try=stamp(-(4 * 60 + 30)),
    )

    assert run_check(state_dir) == (
        2,
        f"CRITICAL: last sync {shown(HOUR)} crashed: KeyError: 'items' (traceback in the sync log); "
        "last success: never; next try in 4m (retry 1)",
    )


def write_progress(state_dir: Path, started_ago: float, updated_ago: float, pid: int) -> None:
    progress = {"pid": pid, "started": stamp(started_ago), "updated": stamp(updated_ago), "phase": "uploading"}
    (state_dir / "progress.json").write_text(json.dumps(progress))


def test_a_sync_running_for_more_than_a_day_warns_naming_it(state_dir):
    write_result(state_dir, finished_ago=2 * HOUR)
    write_progress(state_dir, started_ago=30 * HOUR, updated_ago=60, pid=os.getpid())

    assert run_check(state_dir) == (
        1,
        f"WARNING: sync running for 30h, far longer than expected (pid {os.getpid()}, last progress "
        f"{shown(60)}); last sync {shown(2 * HOUR)} succeeded, 2h ago (limit 48h)",
    )


def test_a_sync_without_progress_past_the_watchdog_s_limit_warns(state_dir):
    write_result(state_dir, finished_ago=3 * HOUR)
    write_progress(state_dir, started_ago=2 * HOUR, updated_ago=2 * HOUR, pid=os.getpid())

    assert run_check(state_dir) == (
        1,
        f"WARNING: sync running for 2h, far longer than expected (pid {os.getpid()}, last progress "
        f"{shown(2 * HOUR)}); last sync {shown(3 * HOUR)} succeeded, 3h ago (limit 48h)",
    )


def test_a_sync_running_as_long_as_expected_changes_nothing(state_dir):
    write_result(state_dir, finished_ago=3 * HOUR)
    write_progress(state_dir, started_ago=HOUR, updated_ago=60, pid=os.getpid())

    assert run_check(state_dir) == (0, f"OK: last sync {shown(3 * HOUR)} succeeded, 3h ago (limit 48h)")


def test_the_progress_of_a_sync_whose_process_is_gone_is_ignored(state_dir):
    write_result(state_dir, finished_ago=3 * HOUR)
    write_progress(state_dir, started_ago=30 * HOUR, updated_ago=30 * HOUR, pid=2**22 + 12345)

    assert run_check(state_dir) == (0, f"OK: last sync {shown(3 * HOUR)} succeeded, 3h ago (limit 48h)")
