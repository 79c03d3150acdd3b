"""Every effect the charm has on the machine: config files, the cron entry, the CA trust store,
Debian packages, and running the sync engine.

All paths hang off `PATHS` and every command is a module constant, so tests point them at a temporary
directory and fake programs (see tests/unit/conftest.py); nothing here reads Juju.
"""

from __future__ import annotations

import calendar
import json
import logging
import os
import queue
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import jinja2

from simplestreams_sync import state
from simplestreams_sync.config import SyncConfig

logger = logging.getLogger(__name__)

PACKAGES = ["ca-certificates", "gpgv", "ubuntu-cloudimage-keyring", "cron"]
UPDATE_CA_CERTIFICATES = ["update-ca-certificates"]
# How the sync engine is started; the rest of the command line is added by `sync_argv`.
ENGINE = [sys.executable, "-m", "simplestreams_sync"]
TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
TRUST_STORE_PREFIX = "glance-simplestreams-sync-"
# The model's proxy settings, as Juju gives them to the charm (the sync reads them from mirrors.yaml).
PROXY_VARIABLES = {"http": "JUJU_CHARM_HTTP_PROXY", "https": "JUJU_CHARM_HTTPS_PROXY",
                   "no_proxy": "JUJU_CHARM_NO_PROXY"}
# The Nagios check (src/nrpe_check_sync.py) as NRPE runs it: as nagios, with the machine's python3.
NRPE_SHORTNAME = "glance_simplestreams_sync"
NRPE_COMMAND = f"check_{NRPE_SHORTNAME}"
NRPE_PYTHON = "/usr/bin/python3"
# The nagios user may not read the charm dir: the check is copied where plugins live.
NRPE_SCRIPT_SOURCE = Path(__file__).resolve().parent / "nrpe_check_sync.py"
RELOAD_NRPE = ["systemctl", "try-reload-or-restart", "nagios-nrpe-server"]
FREQUENCY_SECONDS = {"hourly": 3600, "daily": 86400, "weekly": 7 * 86400}


@dataclass(frozen=True)
class Paths:
    config_dir: Path
    cron_file: Path
    logrotate_file: Path
    state_dir: Path
    log_file: Path
    ca_dir: Path
    nrpe_dir: Path
    nrpe_plugin_dir: Path

    @classmethod
    def under(cls, root: str | Path) -> Paths:
        root = Path(root)
        return cls(
            config_dir=root / "etc/glance-simplestreams-sync",
            cron_file=root / "etc/cron.d/glance-simplestreams-sync",
            logrotate_file=root / "etc/logrotate.d/glance-simplestreams-sync",
            state_dir=root / "var/lib/glance-simplestreams-sync",
            log_file=root / "var/log/glance-simplestreams-sync.log",
            ca_dir=root / "usr/local/share/ca-certificates",
            nrpe_dir=root / "etc/nagios/nrpe.d",
            nrpe_plugin_dir=root / "usr/local/lib/nagios/plugins",
        )

    @property
    def mirrors(self) -> Path:
        return self.config_dir / "mirrors.yaml"

    @property
    def identity(self) -> Path:
        return self.config_dir / "identity.yaml"

    @property
    def keyring(self) -> Path:
        return self.config_dir / "custom-keyring.gpg"

    @property
    def ca_bundle(self) -> Path:
        return self.config_dir / "ca-bundle.pem"

    @property
    def first_sync_marker(self) -> Path:
        return self.state_dir / "charm-first-sync.json"

    @property
    def nrpe_check_file(self) -> Path:
        return self.nrpe_dir / f"{NRPE_COMMAND}.cfg"

    @property
    def nrpe_plugin(self) -> Path:
        return self.nrpe_plugin_dir / f"{NRPE_COMMAND}.py"

    @property
    def nrpe_check_marker(self) -> Path:
        """When the check began expecting scheduled syncs (read by src/nrpe_check_sync.py)."""
        return self.state_dir / "charm-nrpe-check.json"

    @property
    def nrpe_server_config(self) -> Path:
        """Exists when the nrpe subordinate installed nagios-nrpe-server."""
        return self.nrpe_dir.parent / "nrpe.cfg"


PATHS = Paths.under("/")


# --- packages -------------------------------------------------------------------------------------

def install_packages() -> None:
    from charmlibs import apt  # only on the machine: importing it is harmless, running it is not

    apt.add_package(PACKAGES)


# --- files ----------------------------------------------------------------------------------------

def write_file(path: Path, content: str | bytes, mode: int = 0o600) -> bool:
    """Write atomically with `mode` (created so, never world-readable in between); True if it changed."""
    data = content.encode() if isinstance(content, str) else content
    try:
        if path.read_bytes() == data and (path.stat().st_mode & 0o777) == mode:
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as stream:
        os.fchmod(stream.fileno(), mode)
        stream.write(data)
    os.replace(tmp, path)
    return True


def remove_file(path: Path) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES_DIR), trim_blocks=True,
                             lstrip_blocks=True, keep_trailing_newline=True, autoescape=False,
                             undefined=jinja2.StrictUndefined)
    env.filters["yaml"] = lambda value: json.dumps(value)  # JSON scalars/flows are valid YAML
    return env


def render_mirrors(sync: SyncConfig, unit_name: str) -> bool:
    text = _environment().get_template("mirrors.yaml.j2").render(sync=sync, unit_name=unit_name)
    return write_file(PATHS.mirrors, text)


def render_identity(identity: dict | None, unit_name: str) -> bool:
    """Write identity.yaml, or remove it when there are no (usable) credentials."""
    if identity is None:
        return remove_file(PATHS.identity)
    text = _environment().get_template("identity.yaml.j2").render(identity=identity, unit_name=unit_name)
    return write_file(PATHS.identity, text)


def write_keyring(keyring: bytes | None) -> str | None:
    """The custom keyring's path, or None (engine default) after removing a previous one."""
    if keyring is None:
        remove_file(PATHS.keyring)
        return None
    write_file(PATHS.keyring, keyring)
    return str(PATHS.keyring)


def write_ca_bundle(certificates: list[str]) -> str | None:
    """The CA bundle the sync verifies keystone/glance/swift with, or None (system trust store)."""
    if not certificates:
        remove_file(PATHS.ca_bundle)
        return None
    write_file(PATHS.ca_bundle, "".join(certificates))
    return str(PATHS.ca_bundle)


def install_trusted_cas(certificates: list[str], fresh: bool = False) -> bool:
    """Make the machine trust exactly these extra CAs (one file each); update the store if it changed.
    `fresh` rebuilds the store's links from scratch, so none is left pointing at a removed file."""
    wanted = {f"{TRUST_STORE_PREFIX}{index}.crt": cert for index, cert in enumerate(certificates)}
    changed = False
    for name, cert in wanted.items():
        changed |= write_file(PATHS.ca_dir / name, cert, mode=0o644)
    if PATHS.ca_dir.is_dir():
        for stale in PATHS.ca_dir.glob(f"{TRUST_STORE_PREFIX}*.crt"):
            if stale.name not in wanted:
                changed |= remove_file(stale)
    if changed:
        subprocess.run([*UPDATE_CA_CERTIFICATES, *["--fresh"] * fresh], check=True, capture_output=True, text=True)
    return changed


def remove_all() -> None:
    """Undo what the charm wrote (the unit is being removed): everything but the sync log."""
    write_cron(None)
    remove_nrpe_check()
    install_trusted_cas([], fresh=True)
    shutil.rmtree(PATHS.config_dir, ignore_errors=True)
    shutil.rmtree(PATHS.state_dir, ignore_errors=True)


# --- running the sync -----------------------------------------------------------------------------

def sync_argv(dry_run: bool = False, full_check: bool = False) -> list[str]:
    argv = [*ENGINE, "--mirrors", str(PATHS.mirrors), "--identity", str(PATHS.identity)]
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


def model_proxy() -> dict[str, str]:
    """The Juju model's proxy settings (`simplestreams_sync.config.ProxySettings` fields)."""
    return {key: os.environ[variable] for key, variable in PROXY_VARIABLES.items() if os.environ.get(variable)}


def _env_for_process(charm_dir: Path) -> dict[str, str]:
    return {**os.environ, **sync_env(charm_dir)}


@dataclass
class SyncOutcome:
    returncode: int
    stdout_lines: list[str]
    stderr: str


def run_sync(charm_dir: Path, dry_run: bool = False, full_check: bool = False, on_line: Callable[[str], None] | None = None,
             on_tick: Callable[[], None] | None = None, tick: float = 10.0) -> SyncOutcome:
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
    try:
        PATHS.log_file.parent.mkdir(parents=True, exist_ok=True)
        with PATHS.log_file.open("a") as log:
            log.write(f"# sync-images action {state.utc_now()}\n")
            log.write(errors)
            log.writelines(line + "\n" for line in lines)
    except OSError as error:
        logger.warning("cannot append to %s: %s", PATHS.log_file, error)


def start_background_sync(charm_dir: Path) -> int:
    """Start a sync detached from the hook (own session, output to the log file); return its pid."""
    argv = sync_argv()
    PATHS.log_file.parent.mkdir(parents=True, exist_ok=True)
    with PATHS.log_file.open("a") as log:
        process = subprocess.Popen(argv, env=_env_for_process(charm_dir), stdin=subprocess.DEVNULL,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                   close_fds=True)
    logger.info("started the first sync in the background (pid %d): %s", process.pid, shlex.join(argv))
    return process.pid


def first_sync_requested() -> bool:
    return PATHS.first_sync_marker.exists()


def mark_first_sync_requested(pid: int) -> None:
    write_file(PATHS.first_sync_marker, json.dumps({"pid": pid, "started": state.utc_now()}))


def read_progress() -> dict | None:
    return state.read_progress(PATHS.state_dir)


def read_result() -> dict | None:
    return state.read_result(PATHS.state_dir)


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
    command += f" >> {shlex.quote(str(PATHS.log_file))} 2>&1"
    command = command.replace("%", "\\%")  # cron turns a bare % into a newline
    return (
        f"# Managed by the glance-simplestreams-sync charm ({seed}): run {frequency}; do not edit.\n"
        "SHELL=/bin/sh\n"
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
        f"{cron_schedule(frequency, seed)} root {command}\n"
    )


def write_cron(entry: str | None) -> bool:
    """Install the cron entry (cron.d files must not be group/world-writable) and the rotation of the
    log it appends to, or remove both."""
    if entry is None:
        remove_file(PATHS.logrotate_file)
        return remove_file(PATHS.cron_file)
    write_file(PATHS.logrotate_file, logrotate_config(), mode=0o644)
    return write_file(PATHS.cron_file, entry, mode=0o644)


def logrotate_config() -> str:
    return (f"{PATHS.log_file} {{\n    weekly\n    rotate 8\n    compress\n    delaycompress\n"
            "    missingok\n    notifempty\n    copytruncate\n}\n")


# --- the Nagios check (nrpe-external-master) -------------------------------------------------------

def nrpe_check_argv(frequency: str, run: bool, standby: bool) -> list[str]:
    """The check's command line: CRITICAL once the last success is older than twice the frequency."""
    argv = [NRPE_PYTHON, str(PATHS.nrpe_plugin), "--state-dir", str(PATHS.state_dir),
            "--max-age-seconds", str(2 * FREQUENCY_SECONDS[frequency])]
    if not run:
        argv.append("--run-disabled")
    if standby:
        argv.append("--standby")
    return argv


def nrpe_check_config(argv: list[str], servicegroups: str, unit_name: str) -> str:
    """The nrpe.d file, with the header the classic OpenStack charms (charmhelpers' NRPE) write,
    servicegroups included. Unlike them no Nagios service definition is exported to
    /var/lib/nagios/export: the nrpe subordinate builds it from `monitors` on the relation."""
    return (
        f"# check {NRPE_SHORTNAME}\n"
        f"# Managed by the glance-simplestreams-sync charm ({unit_name}); do not edit.\n"
        "# The following header was added automatically by juju\n"
        "# Modifying it will affect nagios monitoring and alerting\n"
        f"# servicegroups: {servicegroups}\n"
        f"command[{NRPE_COMMAND}]={shlex.join(argv)}\n"
    )


def nrpe_monitors() -> dict:
    """What the nrpe subordinate passes on to Nagios (the `monitors` relation setting, as YAML)."""
    return {"monitors": {"remote": {"nrpe": {NRPE_SHORTNAME: {"command": NRPE_COMMAND}}}}}


def install_nrpe_check(config: str, expects_syncs: bool) -> bool:
    """Write the nrpe.d file (0644) and reload NRPE if it changed; True if it did.

    The marker records when the check began expecting scheduled syncs (first install, or run=true /
    leadership since): the check only warns about "no sync yet" for 2 x frequency from then.
    """
    marker = state.read_json(PATHS.nrpe_check_marker) or {}
    if not marker.get("installed") or marker.get("expects_syncs") != expects_syncs:
        write_file(PATHS.nrpe_check_marker,
                   json.dumps({"installed": state.utc_now(), "expects_syncs": expects_syncs}), mode=0o644)
    write_file(PATHS.nrpe_plugin, NRPE_SCRIPT_SOURCE.read_bytes(), mode=0o755)
    changed = write_file(PATHS.nrpe_check_file, config, mode=0o644)
    if changed:
        _reload_nrpe()
    return changed


def remove_nrpe_check() -> bool:
    remove_file(PATHS.nrpe_check_marker)
    remove_file(PATHS.nrpe_plugin)
    changed = remove_file(PATHS.nrpe_check_file)
    if changed:
        _reload_nrpe()
    return changed


def _reload_nrpe() -> None:
    """NRPE reads nrpe.d at start and on reload; the nrpe subordinate restarts it on its own hooks, but
    a new command line (e.g. another frequency) changes nothing on the relation. Only if installed."""
    if not PATHS.nrpe_server_config.exists():
        return
    try:
        subprocess.run([*RELOAD_NRPE], check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as error:
        logger.warning("cannot reload nagios-nrpe-server: %s", getattr(error, "stderr", None) or error)


def hostname() -> str:
    return socket.gethostname()
