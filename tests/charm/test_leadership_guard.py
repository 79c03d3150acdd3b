"""The leadership guard the cron lines run the sync through (sync_charm/leadership.py): it asks Juju
whether the unit is the leader when it runs, and asks the running sync to stop once Juju says it is not."""

from __future__ import annotations

import json
import sys
import threading
import time

import pytest

from simplestreams_sync.state import STOP_REQUEST_FILE
from sync_charm import leadership

UNIT = "glance-simplestreams-sync/1"


@pytest.fixture
def guard(juju_exec, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", juju_exec.path)
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    return state_dir


def run_guard(state_dir, command, *options):
    return leadership.main(["--unit", UNIT, "--state-dir", str(state_dir), *options, "--", *command])


def test_the_leader_runs_the_sync_and_exits_with_its_code(guard, juju_exec, tmp_path):
    ran = tmp_path / "ran"

    code = run_guard(guard, [sys.executable, "-c", f"open({str(ran)!r}, 'w'); raise SystemExit(3)"])

    assert (code, ran.exists()) == (3, True)
    assert juju_exec.calls == [f"{UNIT} is-leader"]


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        ("False\n", "Juju says the unit is not the leader"),
        ("", "leadership not confirmed (juju-exec/juju-run is-leader gave no answer within 120 s)"),
    ],
    ids=["not-the-leader", "no-answer"],
)
def test_a_unit_juju_does_not_confirm_as_leader_skips_the_sync_and_says_why(
    guard, juju_exec, tmp_path, capsys, answer, why
):
    juju_exec.answer(answer)
    ran = tmp_path / "ran"

    code = run_guard(guard, [sys.executable, "-c", f"open({str(ran)!r}, 'w')"])

    assert (code, ran.exists()) == (0, False)
    [line] = capsys.readouterr().out.splitlines()
    assert line.split(" ", 1)[1] == f"{UNIT}: scheduled sync skipped: {why}"


def test_a_sync_a_leaders_hook_starts_runs_without_asking_first(guard, juju_exec, tmp_path):
    juju_exec.answer("")  # the hook holds the machine lock: Juju would answer only once it ends

    code = run_guard(guard, [sys.executable, "-c", "raise SystemExit(0)"], "--leading")

    assert (code, juju_exec.calls) == (0, [])


def test_no_juju_exec_on_the_machine_is_no_answer(guard, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))

    assert leadership.is_leader(UNIT) is None


def test_the_retry_line_asks_juju_nothing_while_no_retry_is_due(guard, juju_exec, tmp_path):
    (guard / "last-sync.json").write_text(json.dumps({"started": "2026-11-24T09:40:00Z", "next_try": ""}))

    code = run_guard(guard, ["false"], "--retry")

    assert (code, juju_exec.calls) == (0, [])


STOPPABLE_SYNC = """
import pathlib, signal, sys, time
state_dir, ready, out = (pathlib.Path(arg) for arg in sys.argv[1:])
def stop(signum, frame):
    out.write_text((state_dir / "{request}").read_text())
    sys.exit(1)
signal.signal(signal.SIGTERM, stop)
ready.touch()
while True:
    time.sleep(3600)
"""


def test_a_sync_running_when_the_unit_stops_being_the_leader_is_asked_to_stop(guard, juju_exec, tmp_path, monkeypatch):
    monkeypatch.setattr(leadership, "LEADER_POLL", 0.05)
    ready, out = tmp_path / "ready", tmp_path / "out"
    script = tmp_path / "sync.py"
    script.write_text(STOPPABLE_SYNC.replace("{request}", STOP_REQUEST_FILE))
    codes = []
    command = [sys.executable, str(script), str(guard), str(ready), str(out)]
    running = threading.Thread(target=lambda: codes.append(leadership.run_while_leader(command, UNIT, guard)))
    running.start()
    deadline = time.monotonic() + 30
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    juju_exec.answer("False\n")
    running.join(timeout=30)

    assert codes == [1]
    assert out.read_text() == "the unit is no longer the leader\n"
    assert not (guard / STOP_REQUEST_FILE).exists()
    assert set(juju_exec.calls) == {f"{UNIT} is-leader"}
