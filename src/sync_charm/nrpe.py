"""The Nagios check of the last sync through nrpe-external-master: the plugin (src/sync_charm/nrpe_check_sync.py)
copied where NRPE's plugins live, its nrpe.d command, and what the nrpe subordinate is told."""

from __future__ import annotations

import json
import logging
import shlex
import subprocess
from pathlib import Path

import yaml

from simplestreams_sync import state

from . import host

logger = logging.getLogger(__name__)

SHORTNAME = "glance_simplestreams_sync"
COMMAND = f"check_{SHORTNAME}"
PYTHON = "/usr/bin/python3"  # NRPE runs the check as nagios, with the machine's python3
# The nagios user may not read the charm dir: the check is copied where plugins live.
PLUGIN_SOURCE = Path(__file__).resolve().parent / "nrpe_check_sync.py"
RELOAD_NRPE = ["systemctl", "try-reload-or-restart", "nagios-nrpe-server"]
FREQUENCY_SECONDS = {"hourly": 3600, "daily": 86400, "weekly": 7 * 86400}


def plugin_path() -> Path:
    return host.PATHS.nrpe_plugin_dir / f"{COMMAND}.py"


def check_file() -> Path:
    return host.PATHS.nrpe_dir / f"{COMMAND}.cfg"


def check_argv(frequency: str, run: bool, standby: bool) -> list[str]:
    """The check's command line: CRITICAL once the last success is older than twice the frequency."""
    argv = [
        PYTHON,
        str(plugin_path()),
        "--state-dir",
        str(host.PATHS.state_dir),
        "--max-age-seconds",
        str(2 * FREQUENCY_SECONDS[frequency]),
    ]
    if not run:
        argv.append("--run-disabled")
    if standby:
        argv.append("--standby")
    return argv


def check_config(argv: list[str], servicegroups: str, unit_name: str) -> str:
    """The nrpe.d file, with the header the classic OpenStack charms (charmhelpers' NRPE) write,
    servicegroups included. Unlike them no Nagios service definition is exported to
    /var/lib/nagios/export: the nrpe subordinate builds it from `monitors` on the relation."""
    return host.render_template(
        "nrpe-check.cfg.j2",
        shortname=SHORTNAME,
        command=COMMAND,
        unit_name=unit_name,
        servicegroups=servicegroups,
        command_line=shlex.join(argv),
    )


def relation_settings(nagios_context: str, unit_name: str) -> dict[str, str]:
    """What the nrpe subordinate is told on the relation: the host name and the `monitors` (as YAML)."""
    monitors = {"monitors": {"remote": {"nrpe": {SHORTNAME: {"command": COMMAND}}}}}
    return {
        "nagios_hostname": f"{nagios_context}-{unit_name.replace('/', '-')}",
        "nagios_host_context": nagios_context,
        "monitors": yaml.safe_dump(monitors),
    }


def install_check(config: str, expects_syncs: bool) -> bool:
    """Write the plugin and the nrpe.d file (0644) and reload NRPE if the latter changed; True if it did.

    The marker records when the check began expecting scheduled syncs (first install, or run=true /
    leadership since): the check only warns about "no sync yet" for 2 x frequency from then.
    """
    marker_path = host.PATHS.nrpe_check_marker
    marker = state.read_json(marker_path) or {}
    if not marker.get("installed") or marker.get("expects_syncs") != expects_syncs:
        host.write_file(
            marker_path, json.dumps({"installed": state.utc_now(), "expects_syncs": expects_syncs}), mode=0o644
        )
    host.write_file(plugin_path(), PLUGIN_SOURCE.read_bytes(), mode=0o755)
    changed = host.write_file(check_file(), config, mode=0o644)
    if changed:
        _reload()
    return changed


def remove_check() -> bool:
    host.remove_file(host.PATHS.nrpe_check_marker)
    host.remove_file(plugin_path())
    changed = host.remove_file(check_file())
    if changed:
        _reload()
    return changed


def _reload() -> None:
    """NRPE reads nrpe.d at start and on reload; the nrpe subordinate restarts it on its own hooks, but
    a new command line (e.g. another frequency) changes nothing on the relation. Only if installed."""
    if not host.PATHS.nrpe_server_config.exists():
        return
    try:
        subprocess.run([*RELOAD_NRPE], check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as error:
        logger.warning("cannot reload nagios-nrpe-server: %s", getattr(error, "stderr", None) or error)
