"""Leadership: only the leader unit syncs, and Juju sends no event when a unit stops being the leader.

The cron lines run the sync through this module's command line, as root:

    python3 -m sync_charm.leadership --unit UNIT --state-dir DIR [--retry] -- SYNC COMMAND...

It asks Juju whether the unit is the leader (`juju-exec UNIT is-leader`; `juju-run` on Juju 2.9) before it
starts the sync, and skips it unless Juju answers yes within LEADER_CHECK_TIMEOUT (the machine lock can
keep the question waiting while a hook runs). While the sync runs it asks again every LEADER_POLL seconds;
once Juju answers no, it writes why into the stop request and sends the sync SIGTERM: the sync stops at its
next safe point (simplestreams_sync.engine). For the charm's hooks: a unit that is not the leader keeps no
service password and no cron line, and one that becomes the leader again syncs at once.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from simplestreams_sync import retry, state

if TYPE_CHECKING:
    from .host import Paths

JUJU_EXEC = ("juju-exec", "juju-run")  # Juju 3's name first, then Juju 2.9's
LEADER_CHECK_TIMEOUT = 120  # seconds to wait for Juju's answer (it waits for the machine lock)
LEADER_POLL = 60  # seconds between the checks while the sync runs (within a source read timeout)
NOT_LEADER = "the unit is no longer the leader"
CHARM_SRC = Path(__file__).resolve().parents[1]
STANDBY_MARKER = "charm-standby.json"  # written by a hook that ran while the unit was not the leader


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="sync_charm.leadership", description=__doc__.split("\n\n")[0])
    parser.add_argument("--unit", required=True, help="this unit's name, as juju-exec takes it")
    parser.add_argument("--state-dir", required=True, help="the sync's state dir (last-sync.json, stop request)")
    parser.add_argument("--retry", action="store_true", help="ask Juju only when the sync's retry is due")
    parser.add_argument(
        "--leading", action="store_true", help="a hook of the leader starts it: ask Juju only while the sync runs"
    )
    parser.add_argument("command", nargs="+", help="the sync's command line, after --")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.retry and not _retry_due(args.state_dir):
        return 0  # every minute: no question to Juju unless the sync would run
    answer = True if args.leading else is_leader(args.unit)
    if answer is not True:
        _say(f"{args.unit}: scheduled sync skipped: {_not_confirmed(answer)}")
        return 0
    return run_while_leader(args.command, args.unit, Path(args.state_dir))


def run_while_leader(command: list[str], unit: str, state_dir: Path) -> int:
    """Run the sync; once Juju says the unit is no longer the leader, ask it to stop (and say so)."""
    stop_request = state_dir / state.STOP_REQUEST_FILE
    with subprocess.Popen(command, stdin=subprocess.DEVNULL) as sync:
        while True:
            try:
                return sync.wait(timeout=LEADER_POLL)
            except subprocess.TimeoutExpired:
                pass
            answer = is_leader(unit)
            if answer is False:
                stop_request.write_text(NOT_LEADER + "\n")
                _say(f"{unit}: {NOT_LEADER}: asking the sync (pid {sync.pid}) to stop at its next safe point")
                sync.send_signal(signal.SIGTERM)
                try:
                    return sync.wait()
                finally:
                    stop_request.unlink(missing_ok=True)
            if answer is None:
                _say(f"{unit}: {_not_confirmed(None)}; the sync goes on")


def is_leader(unit: str) -> bool | None:
    """Juju's answer, or None when it gave none in time (or no juju-exec/juju-run is installed)."""
    program = next((path for path in map(shutil.which, JUJU_EXEC) if path), None)
    if program is None:
        return None
    try:
        answer = subprocess.run(
            [program, unit, "is-leader"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=LEADER_CHECK_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        return None
    words = answer.stdout.split()
    if answer.returncode != 0 or words not in (["True"], ["False"]):
        return None
    return words == ["True"]


def _not_confirmed(answer: bool | None) -> str:
    if answer is False:
        return "Juju says the unit is not the leader"
    names = "/".join(JUJU_EXEC)
    return f"leadership not confirmed ({names} is-leader gave no answer within {LEADER_CHECK_TIMEOUT} s)"


def _retry_due(state_dir: str) -> bool:
    result = state.read_result(state_dir)
    return retry.is_due(result.next_try if result else None, datetime.now(timezone.utc))


def _say(line: str) -> None:
    print(f"{state.utc_now()} {line}", flush=True)


# --- the charm's side -----------------------------------------------------------------------------


def stand_by(paths: Paths) -> None:
    """A hook runs while the unit is not the leader: no service password and no cron line stay on the
    machine, and the unit remembers that it stood by (so that it syncs at once if it becomes the leader)."""
    from . import host  # not at import: the guard that cron runs every minute needs none of it

    host.remove_file(paths.identity)
    host.remove_file(paths.cron_file)
    host.remove_file(paths.logrotate_file)
    marker = paths.state_dir / STANDBY_MARKER
    if not marker.exists():
        paths.state_dir.mkdir(parents=True, exist_ok=True)
        host.write_file(marker, json.dumps({"since": state.utc_now()}) + "\n", mode=0o644)


def took_over(state_dir: Path) -> bool:
    """Whether the unit was not the leader at an earlier hook (and has not synced since it became it)."""
    return (state_dir / STANDBY_MARKER).exists()


def synced_after_takeover(state_dir: Path) -> None:
    (state_dir / STANDBY_MARKER).unlink(missing_ok=True)


def guard_argv(unit: str, state_dir: Path, retry_line: bool = False, leading: bool = False) -> list[str]:
    """The guard's command line (the charm venv's python, importing the charm's src), up to the `--`
    that the sync's own follows."""
    flags = [*(["--retry"] if retry_line else []), *(["--leading"] if leading else [])]
    options = ["--unit", unit, "--state-dir", str(state_dir), *flags]
    return ["env", f"PYTHONPATH={CHARM_SRC}", sys.executable, "-m", "sync_charm.leadership", *options, "--"]


if __name__ == "__main__":
    sys.exit(main())
