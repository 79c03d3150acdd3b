"""The unit's metrics endpoint for the COS agent: `simplestreams_sync.metrics_server`, run by systemd as
the sync's user, on 127.0.0.1 (the agent is a subordinate on the same machine).

Every unit runs it while cos-agent is related: the leader's serves the sync's figures, the others say
they are on standby, so that the "endpoint down" alert covers each unit and a new leader's figures
appear without a restart of the agent's scrape. Nothing here reads Juju.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

from simplestreams_sync.metrics_server import LISTEN_ADDRESS

from . import host, sync_process

SERVICE = "glance-simplestreams-sync-metrics"
SYSTEMCTL = ["systemctl"]
SERVER = [sys.executable, "-m", "simplestreams_sync.metrics_server"]  # the python the charm runs with


def server_argv(port: int, frequency: str | None, standby: bool) -> list[str]:
    argv = [*SERVER, "--state-dir", str(host.PATHS.state_dir), "--address", LISTEN_ADDRESS, "--port", str(port)]
    argv += ["--frequency", frequency] if frequency else []
    return argv + (["--standby"] if standby else [])


def unit_file(unit_name: str, charm_dir: Path, argv: list[str], port: int) -> str:
    return host.render_template(
        "metrics-server.service.j2",
        unit_name=unit_name,
        address=LISTEN_ADDRESS,
        port=port,
        sync_user=host.SYNC_USER,
        python_path=sync_process.python_path(charm_dir),
        command=shlex.join(argv),
    )


def run(unit_name: str, charm_dir: Path, port: int, frequency: str | None, standby: bool) -> None:
    """Have systemd run the server as configured: restarted when its unit file changed."""
    text = unit_file(unit_name, charm_dir, server_argv(port, frequency, standby), port)
    if host.write_file(host.PATHS.metrics_unit, text, mode=0o644):
        _systemctl("daemon-reload")
        _systemctl("enable", SERVICE)
        _systemctl("restart", SERVICE)
    else:
        _systemctl("start", SERVICE)


def stop() -> None:
    """Stop and remove the server, if the charm had set it up."""
    if host.PATHS.metrics_unit.exists():
        _systemctl("disable", "--now", SERVICE)
        host.remove_file(host.PATHS.metrics_unit)
        _systemctl("daemon-reload")


def _systemctl(*args: str) -> None:
    argv = [*SYSTEMCTL, *args]
    process = subprocess.run(argv, capture_output=True, text=True)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited with {process.returncode}: {process.stderr.strip()}")
