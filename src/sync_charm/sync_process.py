"""Running the sync engine: in the foreground (the action), in the background (the first sync), and
from cron (the entry and the rotation of the log it appends to); and reading what it reports.

The engine always runs as the sync's system user (`host.sync_account`) with a clean environment; the
charm (root) opens the log it writes to, so that the log stays root's with the sync's group."""

from __future__ import annotations

import calendar
import compileall
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

import simplestreams_sync
from simplestreams_sync import state

from . import host, leadership
from .sync_report import last_line

logger = logging.getLogger(__name__)

# How the sync engine is started (the charm venv's python); the rest of the command line is `sync_argv`'s.
ENGINE = [sys.executable, "-m", "simplestreams_sync"]
ENGINE_PACKAGE = Path(simplestreams_sync.__file__).parent
SETPRIV = "setpriv"  # util-linux's: runs a command as another user, without a login session
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PUBLISH_WAIT = 5.0  # seconds a hook waits for the (empty) metadata's publish; then it goes on in the background


def compile_engine() -> bool:
    """Write the engine's bytecode beside its sources, as root: the sync's user cannot write in the charm
    dir, so without it every scheduled run would compile the engine before its quick check."""
    compiled = compileall.compile_dir(ENGINE_PACKAGE, maxlevels=0, quiet=1)
    if not compiled:
        logger.warning("could not compile the sync engine in %s: each sync compiles it as it starts", ENGINE_PACKAGE)
    return bool(compiled)


def sync_argv(
    dry_run: bool = False, full_check: bool = False, publish_only: bool = False, retry: bool = False
) -> list[str]:
    argv = [*ENGINE, "--mirrors", str(host.PATHS.mirrors), "--identity", str(host.PATHS.identity)]
    flags = {"--dry-run": dry_run, "--full-check": full_check, "--publish-only": publish_only, "--retry": retry}
    return argv + [flag for flag, wanted in flags.items() if wanted]


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


def as_sync_user(argv: list[str], charm_dir: Path) -> list[str]:
    """`argv` run as the sync's user (setpriv, unless the charm already is that user) with only its
    PATH, HOME, USER, LOGNAME, LANG and `sync_env`: nothing of the hook's environment."""
    account = host.sync_account()
    env = {
        "PATH": SYSTEM_PATH,
        "HOME": account.home,
        "USER": account.name,
        "LOGNAME": account.name,
        "LANG": "C.UTF-8",
        **sync_env(charm_dir),
    }
    drop = []
    if os.geteuid() != account.uid:
        drop = [SETPRIV, f"--reuid={account.name}", f"--regid={account.group}", "--init-groups"]
    return [*drop, "env", "-i", *(f"{name}={value}" for name, value in env.items()), *argv]


@dataclass
class SyncOutcome:
    returncode: int
    stdout_lines: list[str]
    stderr: str


def run_sync(
    charm_dir: Path,
    dry_run: bool = False,
    full_check: bool = False,
    on_line: Callable[[str], None] | None = None,
    on_tick: Callable[[], None] | None = None,
    tick: float = 10.0,
) -> SyncOutcome:
    """Run the sync in the foreground (the action). Each stdout line goes to `on_line` as it comes, and
    `on_tick` is called every `tick` seconds while the sync runs (both in the calling thread)."""
    argv = as_sync_user(sync_argv(dry_run, full_check), charm_dir)
    logger.info("running %s", shlex.join(argv))
    lines: list[str] = []
    received: queue.Queue[str | None] = queue.Queue()
    with tempfile.TemporaryFile(mode="w+") as stderr:
        with subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr, text=True, cwd="/"
        ) as process:
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
    _append_log("sync-images action", lines, errors)
    return SyncOutcome(process.returncode, lines, errors)


def publish_empty_metadata(charm_dir: Path) -> tuple[str, dict[str, str]] | None:
    """Have the engine make the metadata location serve a valid index (empty until a sync publishes):
    the URL it wrote through and the product-streams URL of each interface, or None while it publishes
    in the background or when it could not (the reason is logged, here and in the sync log).

    The engine runs in the background (so no hook waits on the network); a hook waits PUBLISH_WAIT for
    it, then leaves it running and a later hook reads what it printed. One runs at a time."""
    if _background_publish_running():
        logger.info("the empty metadata is still being published in the background (the next hook reads how)")
        return None
    if _publish_file("pid").exists():
        published = _publish_outcome(None)
        if published is not None:
            return published
    process = _start_background_publish(charm_dir)
    try:
        code: int | None = process.wait(PUBLISH_WAIT)
    except subprocess.TimeoutExpired:
        logger.info("publishing the empty metadata goes on in the background (pid %d)", process.pid)
        return None
    return _publish_outcome(code)


def _start_background_publish(charm_dir: Path) -> subprocess.Popen:
    argv = as_sync_user(sync_argv(publish_only=True), charm_dir)
    logger.info("running %s", shlex.join(argv))
    state.make_dirs(host.PATHS.state_dir)
    with _publish_file("out").open("w") as out, _publish_file("err").open("w") as err:
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd="/", start_new_session=True, close_fds=True
        )
    _publish_file("pid").write_text(str(process.pid))
    return process


def _background_publish_running() -> bool:
    """Whether the publish a hook started still runs (its pid is a --publish-only process)."""
    try:
        pid = int(_publish_file("pid").read_text())
        return b"--publish-only" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return False


def _publish_outcome(code: int | None) -> tuple[str, dict[str, str]] | None:
    """What the finished background publish printed (logged to the sync log); its files removed."""
    out, err = _publish_file("out"), _publish_file("err")
    lines = out.read_text().splitlines() if out.exists() else []
    errors = err.read_text() if err.exists() else ""
    for path in (out, err, _publish_file("pid")):
        path.unlink(missing_ok=True)
    _append_log("publish-only", lines, errors)
    published = state.read_publish_only_lines(lines)
    if published is None:
        reason = f"exit code {code}: {last_line(errors)}" if code else last_line(errors)
        if code == 0:
            reason = "its output names no product-streams URLs"
        logger.warning("could not publish the empty metadata yet (the next hook tries again): %s", reason)
    return published


def _publish_file(kind: str) -> Path:
    """The background publish's `pid`, `out` or `err` file, in the state dir."""
    return host.PATHS.state_dir / f"charm-publish-only.{kind}"


def _read_lines(stream, received: queue.Queue) -> None:
    for line in stream:
        received.put(line.rstrip("\n"))
    received.put(None)


def _append_log(what: str, lines: list[str], errors: str) -> None:
    log_file = host.PATHS.log_file
    try:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with log_file.open("a") as log:
            log.write(f"# {what} {state.utc_now()}\n")
            log.write(errors)
            log.writelines(line + "\n" for line in lines)
    except OSError as error:
        logger.warning("cannot append to %s: %s", log_file, error)


def start_background_sync(charm_dir: Path) -> int:
    """Start a sync detached from the hook (own session, output to the log file), behind the leadership
    guard (which stops it if the unit stops leading while it runs); return its pid."""
    argv = as_sync_user(sync_argv(), charm_dir)
    unit = os.environ.get("JUJU_UNIT_NAME")  # the leader's hook that starts it
    if unit:
        argv = [*leadership.guard_argv(unit, host.PATHS.state_dir, leading=True), *argv]
    host.PATHS.log_file.parent.mkdir(parents=True, exist_ok=True)
    with host.PATHS.log_file.open("a") as log:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd="/",
            start_new_session=True,
            close_fds=True,
        )
    logger.info("started the first sync in the background (pid %d): %s", process.pid, shlex.join(argv))
    return process.pid


def first_sync_requested() -> bool:
    return host.PATHS.first_sync_marker.exists()


def mark_first_sync_requested(pid: int) -> None:
    host.write_file(
        host.PATHS.first_sync_marker, json.dumps({"pid": pid, "started": state.utc_now()}), owner=host.sync_account()
    )


def read_progress() -> state.Progress | None:
    return state.read_progress(host.PATHS.state_dir)


def read_result() -> state.SyncResult | None:
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
    """Root's cron lines, the scheduled sync and the every-minute retry check (simplestreams_sync/retry.py):
    its shell opens the log for the sync, which runs as the sync's user."""
    return host.render_template(
        "cron.j2",
        unit_name=seed,
        frequency=frequency,
        sync_user=host.SYNC_USER,
        schedule=cron_schedule(frequency, seed),
        command=_cron_command(sync_argv(), charm_dir, seed),
        retry_command=_cron_command(sync_argv(retry=True), charm_dir, seed, retry_line=True),
    )


def _cron_command(argv: list[str], charm_dir: Path, unit_name: str, retry_line: bool = False) -> str:
    """The sync as its user, behind the leadership guard (root's, with the charm's import path)."""
    guard = leadership.guard_argv(unit_name, host.PATHS.state_dir, retry_line)
    command = shlex.join([*guard, *as_sync_user(argv, charm_dir)])
    command += f" >> {shlex.quote(str(host.PATHS.log_file))} 2>&1"
    return command.replace("%", "\\%")  # cron turns a bare % into a newline


def write_cron(entry: str | None) -> bool:
    """Install the cron entry (cron.d files must not be group/world-writable) and the rotation of the
    log it appends to, or remove both."""
    paths = host.PATHS
    if entry is None:
        host.remove_file(paths.logrotate_file)
        return host.remove_file(paths.cron_file)
    host.write_file(paths.logrotate_file, host.render_template("logrotate.j2", log_file=paths.log_file), mode=0o644)
    return host.write_file(paths.cron_file, entry, mode=0o644)


# --- the classic charm's cron files -----------------------------------------------------------------

# What the classic charm writes: in /etc/cron.<frequency>/, a link to its wrapper script; in /etc/cron.d/,
# a copy of its every-minute poll (tests/data/classic-charm).
CLASSIC_WRAPPER = "/usr/share/glance-simplestreams-sync/glance-simplestreams-sync.sh"
CLASSIC_FASTPOLL = f"* * * * * root {CLASSIC_WRAPPER}\n".encode()


def remove_classic_cron_files() -> list[Path]:
    """Remove the cron files a classic charm left on the machine (they would go on running its sync next
    to ours), each only when it is exactly as the classic charm writes it; return those removed."""
    removed = []
    for path in host.PATHS.classic_cron_files:
        if not path.is_symlink() and not path.exists():
            continue
        if _written_by_classic_charm(path):
            path.unlink()
            logger.info("removed the classic charm's cron file %s", path)
            removed.append(path)
        else:
            logger.warning(
                "left %s alone: it is not as the classic charm writes it (remove it if it still runs the "
                "classic charm's sync)",
                path,
            )
    return removed


def _written_by_classic_charm(path: Path) -> bool:
    if path.parent.name == "cron.d":
        return not path.is_symlink() and path.read_bytes() == CLASSIC_FASTPOLL
    return path.is_symlink() and os.readlink(path) == CLASSIC_WRAPPER
