"""nrpe-external-master: the Nagios check of the last sync in nrpe.d, and `monitors` on the relation."""

from __future__ import annotations

import calendar
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from ops import testing

from sync_charm import nrpe as nagios_check

SCRIPT = Path(__file__).resolve().parents[2] / "src" / "sync_charm" / "nrpe_check_sync.py"
COMMAND = "check_glance_simplestreams_sync"


@pytest.fixture
def nrpe() -> testing.SubordinateRelation:
    return testing.SubordinateRelation("nrpe-external-master", remote_app_name="nrpe")


@pytest.fixture
def reload_attempts(machine, monkeypatch):
    """The reload command recorded instead of run; the result, called, says how often it ran."""
    record = machine.root.parent / "nrpe-reloads"
    monkeypatch.setattr(nagios_check, "RELOAD_NRPE", [sys.executable, "-c", f"open({str(record)!r}, 'a').write('x')"])
    return lambda: len(record.read_text()) if record.exists() else 0


@pytest.fixture
def reloads(machine, reload_attempts):
    """NRPE as the nrpe subordinate installs it (nrpe.cfg exists); the result, called, says how often it
    reloaded."""
    machine.paths.nrpe_server_config.parent.mkdir(parents=True, exist_ok=True)
    machine.paths.nrpe_server_config.write_text("include_dir=/etc/nagios/nrpe.d/\n")
    return reload_attempts


def check_file(machine) -> Path:
    return machine.paths.nrpe_dir / f"{COMMAND}.cfg"


def command_line(machine) -> list[str]:
    """The check's argv from the nrpe.d file's command[...] line."""
    lines = [line for line in check_file(machine).read_text().splitlines() if line.startswith("command[")]
    assert len(lines) == 1
    name, _, command = lines[0].partition("=")
    assert name == f"command[{COMMAND}]"
    return shlex.split(command)


@pytest.mark.parametrize("frequency, max_age", [("hourly", "7200"), ("daily", "172800"), ("weekly", "1209600")])
def test_check_is_installed_with_twice_the_frequency(ctx, nrpe, machine, frequency, max_age):
    ctx.run(
        ctx.on.relation_joined(nrpe),
        testing.State(leader=True, config={"run": True, "frequency": frequency}, relations=[nrpe]),
    )

    assert command_line(machine) == [
        "/usr/bin/python3",
        str(nagios_check.plugin_path()),
        "--state-dir",
        str(machine.paths.state_dir),
        "--max-age-seconds",
        max_age,
    ]


def test_check_file_is_world_readable(ctx, nrpe, machine):
    ctx.run(ctx.on.relation_joined(nrpe), testing.State(leader=True, relations=[nrpe]))

    assert check_file(machine).stat().st_mode & 0o777 == 0o644


def test_run_false_tells_the_check_there_is_no_schedule(ctx, nrpe, machine):
    ctx.run(ctx.on.relation_joined(nrpe), testing.State(leader=True, config={"run": False}, relations=[nrpe]))

    assert command_line(machine)[-1] == "--run-disabled"


def test_non_leader_check_is_standby(ctx, nrpe, machine):
    ctx.run(ctx.on.relation_joined(nrpe), testing.State(leader=False, config={"run": True}, relations=[nrpe]))

    assert command_line(machine)[-1] == "--standby"
    assert "--run-disabled" not in command_line(machine)


def test_monitors_on_the_relation(ctx, nrpe):
    out = ctx.run(ctx.on.relation_joined(nrpe), testing.State(leader=True, relations=[nrpe]))

    data = out.get_relation(nrpe.id).local_unit_data
    assert yaml.safe_load(data["monitors"]) == {
        "monitors": {"remote": {"nrpe": {"glance_simplestreams_sync": {"command": COMMAND}}}}
    }
    assert data["nagios_hostname"] == "juju-glance-simplestreams-sync-0"
    assert data["nagios_host_context"] == "juju"


def test_servicegroups_default_to_the_nagios_context(ctx, nrpe, machine):
    ctx.run(
        ctx.on.relation_joined(nrpe), testing.State(leader=True, config={"nagios_context": "prod"}, relations=[nrpe])
    )

    assert "# servicegroups: prod\n" in check_file(machine).read_text()


def test_servicegroups_option(ctx, nrpe, machine):
    ctx.run(
        ctx.on.relation_joined(nrpe),
        testing.State(
            leader=True, config={"nagios_context": "prod", "nagios_servicegroups": "prod,openstack"}, relations=[nrpe]
        ),
    )

    assert "# servicegroups: prod,openstack\n" in check_file(machine).read_text()


def test_frequency_change_rewrites_the_check(ctx, nrpe, machine):
    ctx.run(
        ctx.on.relation_joined(nrpe),
        testing.State(leader=True, config={"run": True, "frequency": "daily"}, relations=[nrpe]),
    )

    ctx.run(
        ctx.on.config_changed(),
        testing.State(leader=True, config={"run": True, "frequency": "weekly"}, relations=[nrpe]),
    )

    assert command_line(machine)[-1] == "1209600"


def test_unchanged_check_is_not_rewritten_nor_nrpe_reloaded(ctx, nrpe, machine, reloads):
    state = testing.State(leader=True, config={"run": True}, relations=[nrpe])
    ctx.run(ctx.on.relation_joined(nrpe), state)
    first = check_file(machine).stat()

    ctx.run(ctx.on.update_status(), state)

    assert (check_file(machine).stat().st_ino, check_file(machine).stat().st_mtime_ns) == (
        first.st_ino,
        first.st_mtime_ns,
    )
    assert reloads() == 1


def test_changed_check_reloads_nrpe(ctx, nrpe, machine, reloads):
    ctx.run(ctx.on.relation_joined(nrpe), testing.State(leader=True, config={"run": True}, relations=[nrpe]))

    ctx.run(ctx.on.config_changed(), testing.State(leader=True, config={"run": False}, relations=[nrpe]))

    assert reloads() == 2


def test_no_reload_before_nrpe_is_installed(ctx, nrpe, machine, reload_attempts):
    ctx.run(ctx.on.relation_joined(nrpe), testing.State(leader=True, relations=[nrpe]))

    assert command_line(machine)[0:2] == ["/usr/bin/python3", str(nagios_check.plugin_path())]
    assert reload_attempts() == 0


def test_relation_broken_removes_the_check(ctx, nrpe, machine, reloads):
    ctx.run(ctx.on.relation_joined(nrpe), testing.State(leader=True, config={"run": True}, relations=[nrpe]))

    ctx.run(ctx.on.relation_broken(nrpe), testing.State(leader=True, config={"run": True}, relations=[nrpe]))

    assert not check_file(machine).exists()
    assert not machine.paths.nrpe_check_marker.exists()
    assert reloads() == 2


def test_unit_removal_removes_the_check(ctx, nrpe, machine):
    ctx.run(ctx.on.relation_joined(nrpe), testing.State(leader=True, relations=[nrpe]))

    ctx.run(ctx.on.remove(), testing.State(leader=True, relations=[nrpe]))

    assert not check_file(machine).exists()


def test_nothing_is_written_without_the_relation(ctx, keystone, machine):
    ctx.run(ctx.on.config_changed(), testing.State(leader=True, config={"run": True}, relations=[keystone]))

    assert not machine.paths.nrpe_dir.exists()
    assert not machine.paths.nrpe_check_marker.exists()


def test_invalid_config_leaves_the_check_as_it_is(ctx, nrpe, machine):
    ctx.run(ctx.on.relation_joined(nrpe), testing.State(leader=True, config={"run": True}, relations=[nrpe]))
    before = check_file(machine).read_text()

    ctx.run(
        ctx.on.config_changed(),
        testing.State(leader=True, config={"run": True, "frequency": "monthly"}, relations=[nrpe]),
    )

    assert check_file(machine).read_text() == before


def test_install_time_is_recorded_once(ctx, nrpe, machine):
    state = testing.State(leader=True, config={"run": True}, relations=[nrpe])
    ctx.run(ctx.on.relation_joined(nrpe), state)
    marker = json.loads(machine.paths.nrpe_check_marker.read_text())
    machine.paths.nrpe_check_marker.write_text(json.dumps({**marker, "installed": "2026-01-01T00:00:00Z"}))

    ctx.run(ctx.on.update_status(), state)

    assert json.loads(machine.paths.nrpe_check_marker.read_text())["installed"] == "2026-01-01T00:00:00Z"
    assert machine.paths.nrpe_check_marker.stat().st_mode & 0o777 == 0o644  # nagios reads it


def test_enabling_run_restarts_the_no_sync_grace_period(ctx, nrpe, machine):
    ctx.run(ctx.on.relation_joined(nrpe), testing.State(leader=True, config={"run": False}, relations=[nrpe]))
    machine.paths.nrpe_check_marker.write_text(
        json.dumps({"installed": "2026-01-01T00:00:00Z", "expects_syncs": False})
    )

    ctx.run(ctx.on.config_changed(), testing.State(leader=True, config={"run": True}, relations=[nrpe]))

    assert json.loads(machine.paths.nrpe_check_marker.read_text())["installed"] != "2026-01-01T00:00:00Z"


def test_installed_check_warns_until_the_first_sync(ctx, nrpe, machine):
    """The installed command line, run with the repository's script: the charm's marker is what it reads."""
    ctx.run(ctx.on.relation_joined(nrpe), testing.State(leader=True, config={"run": True}, relations=[nrpe]))

    argv = [sys.executable, str(SCRIPT), *command_line(machine)[2:]]
    process = subprocess.run(argv, capture_output=True, text=True)

    installed = json.loads(machine.paths.nrpe_check_marker.read_text())["installed"]
    critical_from = calendar.timegm(time.strptime(installed, "%Y-%m-%dT%H:%M:%SZ")) + 2 * 86400  # daily
    shown = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(critical_from))
    assert process.returncode == 1
    assert process.stdout == f"WARNING: no sync has run yet (CRITICAL from {shown})\n"
