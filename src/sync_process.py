"""Running the sync engine: in the foreground (the action), in the background (the first sync), and
from cron (the entry and the rotation of the log it appends to); and reading what it reports."""

from __future__ import annotations

import calendar
import json
import logging
import os
import queue
import shlex
import subprocess
import sys
import tempfile
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import host
from simplestreams_sync import state

logger = logging.getLogger(__name__)

# How the sync engine is started (the charm venv's python); the rest of the command line is `sync_argv`'s.
ENGINE = [sys.executable, "-m", "simplestreams_sync"]


def sync_argv(dry_run: bool = False, full_check: bool = False) -> list[str]:
    argv = [*ENGINE, "--mirrors", str(host.PATHS.mirrors), "--identity", str(host.PATHS.identity)]
    return argv + ["--dry-run"] * dry_run + ["--full-check"] * full_check


def python_path(charm_dir: Path) -> str:
    """The charm's own import path: its src (ENGINE's python is the venv's), plus whatever else of the
    charm dir it runs with."""
    entries = [str(charm_dir / "src")]
    charm_dir_text = str(charm_dir.resolve())
    entries += [entry for entry in sys.path if entry.startswith(charm_dir_text + os.sep)]
    return os.pathsep.join(dict.fromkeys(entries))


def sync_env(charm_dir: Path) -> dict[str, str]:
    """What the sync's environment adds to the charm's: its Python path (proxies go in mirrors.yaml)."""
    return {"PYTHONPATH": python_path(charm_dir)}


def _env_for_process(charm_dir: Path) -> dict[str, str]:
    return {**os.environ, **sync_env(charm_dir)}


@dataclass
class SyncOutcome:
    returncode: int
    stdout_lines: list[str]
    stderr: str


def run_sync(charm_dir: Path, dry_run: bool = False, full_check: bool = False,
             on_line: Callable[[str], None] | None = None, on_tick: Callable[[], None] | None = None,
             tick: float = 10.0) -> SyncOutcome:
    """Run the sync in the foreground (the action). Each stdout line goes to `on_line` as it comes, and
    `on_tick` is called every `tick` seconds while the sync runs (both in the calling thread)."""
    argv = sync_argv(dry_run, full_check)
    logger.info("running %s", shlex.join(argv))
    lines: list[str] = []
    received: queue.Queue[str | None] = queue.Queue()
    with tempfile.TemporaryFile(mode="w+") as stderr:
        with subprocess.Popen(argv, env=_env_for_process(charm_dir), stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=stderr, text=True) as process:
            reader = threading.Thread(target=_read_lines, args=(process.stdout, received), daemon=True)
            reader.start()
            while True:
                try:
                    line = received.get(timeout=tick)
                except queue.Empty:
                    if on_tick is not None:
                        on_tick()
                    continue
                if line is None:
                    break
                lines.append(line)
                if on_line is not None:
                    on_line(line)
            reader.join()
        stderr.seek(0)
        errors = stderr.read()
    _append_log(lines, errors)
    return SyncOutcome(process.returncode, lines, errors)


def _read_lines(stream, received: queue.Queue) -> None:
    for line in stream:
        received.put(line.rstrip("\n"))
    received.put(None)


def _append_log(lines: list[str], errors: str) -> None:
    log_file = host.PATHS.log_file
    try:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with log_file.open("a") as log:
            log.write(f"# sync-images action {state.utc_now()}\n")
            log.write(errors)
            log.writelines(line + "\n" for line in lines)
    except OSError as error:
        logger.warning("cannot append to %s: %s", log_file, error)


def start_background_sync(charm_dir: Path) -> int:
    """Start a sync detached from the hook (own session, output to the log file); return its pid."""
    argv = sync_argv()
    host.PATHS.log_file.parent.mkdir(parents=True, exist_ok=True)
    with host.PATHS.log_file.open("a") as log:
        process = subprocess.Popen(argv, env=_env_for_process(charm_dir), stdin=subprocess.DEVNULL,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                   close_fds=True)
    logger.info("started the first sync in the background (pid %d): %s", process.pid, shlex.join(argv))
    return process.pid


def first_sync_requested() -> bool:
    return host.PATHS.first_sync_marker.exists()


def mark_first_sync_requested(pid: int) -> None:
    host.write_file(host.PATHS.first_sync_marker, json.dumps({"pid": pid, "started": state.utc_now()}))


def read_progress() -> dict | None:
    return state.read_progress(host.PATHS.state_dir)


def read_result() -> dict | None:
    return state.read_result(host.PATHS.state_dir)


# --- cron -----------------------------------------------------------------------------------------

def cron_schedule(frequency: str, seed: str) -> str:
    """Cron time fields for the frequency, at a fixed time derived from `seed` (spreads the load)."""
    spread = zlib.crc32(seed.encode())
    minute, hour, weekday = spread % 60, (spread // 60) % 24, (spread // 1440) % 7
    return {
        "hourly": f"{minute} * * * *",
        "daily": f"{minute} {hour} * * *",
        "weekly": f"{minute} {hour} * * {weekday}",
    }[frequency]


def cron_description(frequency: str, seed: str) -> str:
    """When cron runs the sync, in words: 'hourly at :07', 'daily at 04:07', 'on Tuesdays at 04:07'."""
    minute, hour, _, _, weekday = cron_schedule(frequency, seed).split()
    if frequency == "hourly":
        return f"hourly at :{int(minute):02d}"
    at = f"at {int(hour):02d}:{int(minute):02d}"
    if frequency == "daily":
        return f"daily {at}"
    return f"on {calendar.day_name[(int(weekday) - 1) % 7]}s {at}"


def cron_entry(frequency: str, seed: str, charm_dir: Path) -> str:
    variables = [f"{name}={value}" for name, value in sync_env(charm_dir).items()]
    command = shlex.join(["env", *variables, *sync_argv()])
    command += f" >> {shlex.quote(str(host.PATHS.log_file))} 2>&1"
    command = command.replace("%", "\\%")  # cron turns a bare % into a newline
    return host.render_template("cron.j2", unit_name=seed, frequency=frequency,
                                schedule=cron_schedule(frequency, seed), command=command)


def write_cron(entry: str | None) -> bool:
    """Install the cron entry (cron.d files must not be group/world-writable) and the rotation of the
    log it appends to, or remove both."""
    paths = host.PATHS
    if entry is None:
        host.remove_file(paths.logrotate_file)
        return host.remove_file(paths.cron_file)
    host.write_file(paths.logrotate_file, host.render_template("logrotate.j2", log_file=paths.log_file), mode=0o644)
    return host.write_file(paths.cron_file, entry, mode=0o644)
