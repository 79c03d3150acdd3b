"""The cron entry, leadership, and the first sync soon after the identity relation completes."""

import re
import sys
from pathlib import Path

import pytest
from ops import testing

from simplestreams_sync.config import load_sync_config

CRON_TIME = {
    "hourly": r"\d+ \* \* \* \*",
    "daily": r"\d+ \d+ \* \* \*",
    "weekly": r"\d+ \d+ \* \* [0-6]",
}


def _entries(machine) -> list[str]:
    return [
        line
        for line in machine.paths.cron_file.read_text().splitlines()
        if line and not line.startswith("#") and "=" not in line.split()[0]
    ]


def _entry(machine) -> str:
    entry, _ = _entries(machine)
    return entry


def test_a_second_line_checks_every_minute_whether_a_retry_is_due(ctx, keystone, machine):
    ctx.run(ctx.on.config_changed(), testing.State(leader=True, config={"run": True}, relations=[keystone]))

    scheduled, retry = _entries(machine)

    assert retry.startswith("* * * * * root ")
    guard_options = f"--state-dir {machine.paths.state_dir}"
    assert retry.split(" root ", 1)[1] == scheduled.split(" root ", 1)[1].replace(
        guard_options, f"{guard_options} --retry"
    ).replace(f"--identity {machine.paths.identity}", f"--identity {machine.paths.identity} --retry")


@pytest.mark.parametrize(("run", "frequency"), [(True, "weekly"), (False, None)])
def test_mirrors_yaml_names_the_schedule_retries_back_off_to(ctx, keystone, machine, run, frequency):
    state = testing.State(leader=True, config={"run": run, "frequency": "weekly"}, relations=[keystone])

    ctx.run(ctx.on.config_changed(), state)

    assert load_sync_config(machine.paths.mirrors).frequency == frequency


@pytest.mark.parametrize("frequency", ["hourly", "daily", "weekly"])
def test_run_installs_a_cron_entry_for_the_frequency(ctx, keystone, machine, frequency):
    state = testing.State(leader=True, config={"run": True, "frequency": frequency}, relations=[keystone])

    ctx.run(ctx.on.config_changed(), state)

    entry = _entry(machine)
    assert re.match(CRON_TIME[frequency] + " root ", entry)
    assert machine.paths.cron_file.stat().st_mode & 0o777 == 0o644


def test_cron_runs_the_engine_with_the_charms_python_environment(ctx, keystone, machine, monkeypatch):
    from sync_charm import sync_process

    monkeypatch.setattr(sync_process, "ENGINE", [sys.executable, "-m", "simplestreams_sync"])
    ctx.run(ctx.on.config_changed(), testing.State(leader=True, config={"run": True}, relations=[keystone]))

    entry = _entry(machine)
    command = entry.split(" root ", 1)[1]
    assert re.search(r"PYTHONPATH=\S*/src\b", command)
    assert (
        f"{sys.executable} -m simplestreams_sync --mirrors {machine.paths.mirrors} "
        f"--identity {machine.paths.identity}" in command
    )
    assert command.endswith(f">> {machine.paths.log_file} 2>&1")
    assert "%" not in command


def test_the_log_cron_appends_to_is_rotated_while_cron_runs(ctx, keystone, machine):
    state = testing.State(leader=True, config={"run": True}, relations=[keystone])
    ctx.run(ctx.on.config_changed(), state)

    rotation = machine.paths.logrotate_file.read_text()
    assert rotation.startswith(f"{machine.paths.log_file} {{") and "copytruncate" in rotation

    ctx.run(ctx.on.config_changed(), testing.State(leader=True, config={"run": False}, relations=[keystone]))
    assert not machine.paths.logrotate_file.exists()


def test_model_proxy_settings_go_to_the_sync_not_to_the_cloud_apis(ctx, keystone, machine, monkeypatch):
    monkeypatch.setenv("JUJU_CHARM_HTTP_PROXY", "http://squid.internal:3128")
    monkeypatch.setenv("JUJU_CHARM_NO_PROXY", "10.0.0.0/8,localhost")

    ctx.run(ctx.on.config_changed(), testing.State(leader=True, config={"run": True}, relations=[keystone]))

    proxy = load_sync_config(machine.paths.mirrors).source_proxy
    assert proxy.http == "http://squid.internal:3128"
    assert proxy.https is None
    assert proxy.no_proxy == "10.0.0.0/8,localhost"
    assert "squid" not in _entry(machine)  # no environment proxies: keystone/glance/swift go direct


def test_changing_frequency_replaces_the_entry(ctx, keystone, machine):
    ctx.run(
        ctx.on.config_changed(),
        testing.State(leader=True, config={"run": True, "frequency": "daily"}, relations=[keystone]),
    )

    ctx.run(
        ctx.on.config_changed(),
        testing.State(leader=True, config={"run": True, "frequency": "hourly"}, relations=[keystone]),
    )

    assert re.match(CRON_TIME["hourly"] + " root ", _entry(machine))
    assert list(machine.paths.cron_file.parent.iterdir()) == [machine.paths.cron_file]


def test_run_false_removes_the_entry(ctx, keystone, machine):
    ctx.run(ctx.on.config_changed(), testing.State(leader=True, config={"run": True}, relations=[keystone]))

    ctx.run(ctx.on.config_changed(), testing.State(leader=True, config={"run": False}, relations=[keystone]))

    assert not machine.paths.cron_file.exists()


def test_remove_deletes_the_entry_and_the_credentials(ctx, keystone, vault, machine):
    state = testing.State(leader=True, config={"run": True}, relations=[keystone, vault])
    ctx.run(ctx.on.config_changed(), state)

    ctx.run(ctx.on.remove(), state)

    assert not machine.paths.cron_file.exists()
    assert not machine.paths.identity.exists()
    assert list(machine.paths.ca_dir.glob("*.crt")) == []


def test_remove_rebuilds_the_trust_store_from_scratch(ctx, keystone, vault, machine):
    state = testing.State(leader=True, relations=[keystone, vault])
    ctx.run(ctx.on.config_changed(), state)

    ctx.run(ctx.on.remove(), state)

    assert machine.ca_update_calls()[-1] == "--fresh"


def test_remove_leaves_only_the_sync_log(ctx, keystone, machine):
    state = testing.State(leader=True, config={"run": True}, relations=[keystone])
    ctx.run(ctx.on.config_changed(), state)
    machine.write_result()
    machine.paths.log_file.parent.mkdir(parents=True, exist_ok=True)
    machine.paths.log_file.write_text("created 1: auto-sync/x\n")

    ctx.run(ctx.on.remove(), state)

    left = [path for path in machine.root.rglob("*") if path.is_file()]
    assert left == [machine.paths.log_file]


def test_non_leader_has_no_entry_and_says_so(ctx, keystone, machine):
    state = testing.State(leader=False, config={"run": True}, relations=[keystone])

    out = ctx.run(ctx.on.config_changed(), state)

    assert not machine.paths.cron_file.exists()
    assert machine.background_syncs == []
    assert machine.paths.mirrors.exists()  # ready to take over
    assert not machine.paths.identity.exists()  # keystone's service password: the leader's only
    assert out.unit_status == testing.ActiveStatus("Standby: only the leader unit syncs images")


def test_losing_leadership_removes_the_entry(ctx, keystone, machine):
    ctx.run(ctx.on.config_changed(), testing.State(leader=True, config={"run": True}, relations=[keystone]))

    ctx.run(ctx.on.update_status(), testing.State(leader=False, config={"run": True}, relations=[keystone]))

    assert not machine.paths.cron_file.exists()


def test_first_sync_starts_in_the_background_when_identity_completes(ctx, keystone, machine):
    out = ctx.run(
        ctx.on.relation_changed(keystone, remote_unit=0),
        testing.State(leader=True, config={"run": True}, relations=[keystone]),
    )

    assert len(machine.background_syncs) == 1
    assert "--dry-run" not in machine.background_syncs[0]
    assert out.unit_status == testing.ActiveStatus(f"Unit is ready (first sync pending, log: {machine.paths.log_file})")


def test_first_sync_starts_only_once(ctx, keystone, machine):
    state = testing.State(leader=True, config={"run": True}, relations=[keystone])
    ctx.run(ctx.on.relation_changed(keystone, remote_unit=0), state)

    ctx.run(ctx.on.config_changed(), state)
    ctx.run(ctx.on.update_status(), state)

    assert len(machine.background_syncs) == 1


def test_no_first_sync_after_a_sync_already_ran(ctx, keystone, machine):
    machine.write_result(created=[{"id": "a", "name": "auto-sync/x"}])

    ctx.run(
        ctx.on.relation_changed(keystone, remote_unit=0),
        testing.State(leader=True, config={"run": True}, relations=[keystone]),
    )

    assert machine.background_syncs == []


def test_no_background_sync_when_run_is_false(ctx, keystone, machine):
    ctx.run(
        ctx.on.relation_changed(keystone, remote_unit=0),
        testing.State(leader=True, config={"run": False}, relations=[keystone]),
    )

    assert machine.background_syncs == []


def test_no_cron_entry_before_keystone_answers(ctx, machine):
    relation = testing.Relation("identity-service", remote_app_name="keystone")

    ctx.run(
        ctx.on.relation_joined(relation, remote_unit=0),
        testing.State(leader=True, config={"run": True}, relations=[relation]),
    )

    assert not machine.paths.cron_file.exists()
    assert machine.background_syncs == []


@pytest.mark.parametrize("event", ["install", "upgrade_charm"])
def test_install_and_upgrade_install_the_packages(ctx, machine, event):
    ctx.run(getattr(ctx.on, event)(), testing.State())

    assert machine.installed == [["ca-certificates", "gpgv", "ubuntu-cloudimage-keyring", "cron", "sudo"]]


@pytest.mark.parametrize("event", ["install", "upgrade_charm"])
def test_install_and_upgrade_leave_the_engines_bytecode_for_the_sync_user(ctx, machine, event):
    """The sync's user cannot write in the charm dir: without bytecode there, each run compiles the engine."""
    import importlib.util
    import shutil

    import simplestreams_sync
    from sync_charm import sync_process

    engine = sync_process.ENGINE_PACKAGE
    shutil.copytree(
        Path(simplestreams_sync.__file__).parent,
        engine,
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    sources = sorted(engine.glob("*.py"))

    ctx.run(getattr(ctx.on, event)(), testing.State())

    compiled = [Path(importlib.util.cache_from_source(str(source))) for source in sources]
    assert [path.exists() for path in compiled] == [True] * len(sources)
    # the source's mtime in each header: what the import system checks before it uses the bytecode
    stamps = [int.from_bytes(path.read_bytes()[8:12], "little") for path in compiled]
    assert stamps == [int(source.stat().st_mtime) for source in sources]


def test_background_sync_runs_detached_with_output_to_the_log(ctx, keystone, machine, fake_engine, monkeypatch):
    import time

    from sync_charm import sync_process

    monkeypatch.setattr(sync_process, "start_background_sync", machine.real_start_background_sync)
    engine = fake_engine(stdout=["created 1234: auto-sync/ubuntu-24.04"], result={"created": [{"id": "1234"}]})

    ctx.run(
        ctx.on.relation_changed(keystone, remote_unit=0),
        testing.State(leader=True, config={"run": True}, relations=[keystone]),
    )

    deadline = time.monotonic() + 20
    while not (machine.paths.log_file.exists() and "created 1234" in machine.paths.log_file.read_text()):
        assert time.monotonic() < deadline, "the background sync did not run"
        time.sleep(0.05)
    (call,) = engine.calls
    assert call["argv"] == ["--mirrors", str(machine.paths.mirrors), "--identity", str(machine.paths.identity)]
    assert machine.paths.first_sync_marker.exists()


def test_a_dry_run_does_not_count_as_the_first_sync(ctx, keystone, machine):
    machine.write_result(dry_run=True, would_create=[{}])

    ctx.run(
        ctx.on.relation_changed(keystone, remote_unit=0),
        testing.State(leader=True, config={"run": True}, relations=[keystone]),
    )

    assert len(machine.background_syncs) == 1


def test_upgrade_charm_installs_the_packages_as_install_does(ctx, machine):
    """A unit refreshed from the classic charm never runs this charm's install."""
    ctx.run(ctx.on.upgrade_charm(), testing.State())

    assert machine.installed == [["ca-certificates", "gpgv", "ubuntu-cloudimage-keyring", "cron", "sudo"]]


def test_upgrade_charm_twice_leaves_the_same_files_and_modes_as_once(ctx, keystone, machine):
    """Idempotent: a second upgrade-charm (a refresh to the same charm) adds, removes and re-modes nothing
    (contents name the charm dir, which ops.testing makes anew for each run)."""
    state = testing.State(leader=True, config={"run": True}, relations=[keystone])
    ctx.run(ctx.on.upgrade_charm(), state)
    once = {path: path.stat().st_mode for path in machine.root.rglob("*")}

    ctx.run(ctx.on.upgrade_charm(), state)

    assert {path: path.stat().st_mode for path in machine.root.rglob("*")} == once
    assert machine.paths.state_dir in once and machine.paths.cron_file in once and machine.paths.mirrors in once
    assert machine.installed == [["ca-certificates", "gpgv", "ubuntu-cloudimage-keyring", "cron", "sudo"]] * 2
