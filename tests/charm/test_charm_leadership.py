"""Leader changes: only the leader keeps keystone's service password and the schedule, the cron lines ask
Juju when they run, and a unit that becomes the leader again syncs at once."""

from __future__ import annotations

import shlex
import sys

from ops import testing

from sync_charm import leadership

UNIT = "glance-simplestreams-sync/0"


def leader(keystone, **config) -> testing.State:
    return testing.State(leader=True, config={"run": True, **config}, relations=[keystone])


def standby(keystone, **config) -> testing.State:
    return testing.State(leader=False, config={"run": True, **config}, relations=[keystone])


def test_a_unit_that_loses_leadership_removes_the_service_password_at_its_next_hook(ctx, keystone, machine):
    ctx.run(ctx.on.config_changed(), leader(keystone))
    assert machine.paths.identity.exists()

    ctx.run(ctx.on.update_status(), standby(keystone))

    assert not machine.paths.identity.exists()
    assert not machine.paths.cron_file.exists()


def test_a_non_leader_with_invalid_config_keeps_no_password_either(ctx, keystone, machine):
    ctx.run(ctx.on.config_changed(), leader(keystone))

    ctx.run(ctx.on.config_changed(), standby(keystone, frequency="fortnightly"))

    assert not machine.paths.identity.exists()
    assert not machine.paths.cron_file.exists()


def test_both_cron_lines_ask_juju_whether_the_unit_leads_before_the_sync_runs(ctx, keystone, machine):
    ctx.run(ctx.on.config_changed(), leader(keystone))

    lines = [line for line in machine.paths.cron_file.read_text().splitlines() if " root " in line]
    guard = ["env", f"PYTHONPATH={leadership.CHARM_SRC}", sys.executable, "-m", "sync_charm.leadership"]
    guard += ["--unit", UNIT, "--state-dir", str(machine.paths.state_dir)]
    scheduled, retry = (shlex.split(line.split(" root ", 1)[1]) for line in lines)
    assert scheduled[: len(guard) + 1] == [*guard, "--"]
    assert retry[: len(guard) + 2] == [*guard, "--retry", "--"]


def test_a_unit_that_becomes_the_leader_again_syncs_at_once_despite_its_old_result(ctx, keystone, machine):
    machine.write_result(created=[{"id": "a", "name": "auto-sync/x"}])
    ctx.run(ctx.on.update_status(), standby(keystone))

    ctx.run(ctx.on.leader_elected(), leader(keystone))
    ctx.run(ctx.on.update_status(), leader(keystone))

    assert len(machine.background_syncs) == 1
    assert "--dry-run" not in machine.background_syncs[0]


def test_a_leader_that_never_stood_by_does_not_sync_again_for_its_old_result(ctx, keystone, machine):
    machine.write_result(created=[{"id": "a", "name": "auto-sync/x"}])

    ctx.run(ctx.on.leader_elected(), leader(keystone))

    assert machine.background_syncs == []


def test_a_new_leader_waits_for_its_own_running_sync_before_syncing(ctx, keystone, machine):
    ctx.run(ctx.on.update_status(), standby(keystone))
    machine.write_progress()

    ctx.run(ctx.on.leader_elected(), leader(keystone))

    assert machine.background_syncs == []
    assert leadership.took_over(machine.paths.state_dir)


def test_the_background_sync_a_leaders_hook_starts_is_guarded_too(ctx, keystone, machine, monkeypatch):
    from sync_charm import sync_process

    started = []

    class Recorded:
        def __init__(self, argv, **options):
            started.append(argv)
            self.pid = 4343

    monkeypatch.setattr(sync_process.subprocess, "Popen", Recorded)
    monkeypatch.setenv("JUJU_UNIT_NAME", UNIT)

    assert machine.real_start_background_sync(machine.root) == 4343

    [argv] = started
    guard = leadership.guard_argv(UNIT, machine.paths.state_dir, leading=True)
    assert argv[: len(guard)] == guard and guard[-2:] == ["--leading", "--"]
    assert argv[len(guard) :] == sync_process.as_sync_user(sync_process.sync_argv(), machine.root)
