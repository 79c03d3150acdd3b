"""Switching from the classic charm: its cron files go on install and upgrade-charm, but only when they
are exactly as the classic charm writes them (tests/data/classic-charm/etc); its quick-check tokens too."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
from ops import testing

CLASSIC_ETC = Path(__file__).resolve().parents[1] / "data" / "classic-charm" / "etc"
FASTPOLL = "cron.d/glance_simplestreams_sync_fastpoll"


def leave_classic_cron_files(machine, frequency: str = "daily") -> tuple[Path, Path]:
    """The classic charm's cron files on the machine, as it writes them with run=true and `frequency`."""
    etc = machine.root / "etc"
    (etc / "cron.d").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(CLASSIC_ETC / FASTPOLL, etc / FASTPOLL)
    scheduled = etc / f"cron.{frequency}" / "glance_simplestreams_sync"
    scheduled.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(CLASSIC_ETC / "cron.daily" / "glance_simplestreams_sync", scheduled, follow_symlinks=False)
    return scheduled, etc / FASTPOLL


@pytest.mark.parametrize("event", ["install", "upgrade_charm"])
@pytest.mark.parametrize("frequency", ["hourly", "daily", "weekly"])
def test_the_classic_charms_cron_files_are_removed_and_logged(ctx, keystone, machine, caplog, event, frequency):
    scheduled, fastpoll = leave_classic_cron_files(machine, frequency)
    caplog.set_level(logging.INFO)

    ctx.run(getattr(ctx.on, event)(), testing.State(leader=True, relations=[keystone]))

    assert not scheduled.is_symlink() and not fastpoll.exists()
    removed = [record.getMessage() for record in caplog.records if "classic charm's cron file" in record.getMessage()]
    assert removed == [
        f"removed the classic charm's cron file {scheduled}",
        f"removed the classic charm's cron file {fastpoll}",
    ]


def test_cron_files_that_are_not_the_classic_charms_are_left_alone(ctx, keystone, machine, caplog):
    scheduled, fastpoll = leave_classic_cron_files(machine)
    scheduled.unlink()
    scheduled.symlink_to("/usr/local/bin/my-own-sync")
    fastpoll.write_text(fastpoll.read_text().replace("* * * * *", "*/5 * * * *"))
    edited = fastpoll.read_bytes()

    ctx.run(ctx.on.upgrade_charm(), testing.State(leader=True, relations=[keystone]))

    assert str(scheduled.readlink()) == "/usr/local/bin/my-own-sync"
    assert fastpoll.read_bytes() == edited
    assert [r.getMessage() for r in caplog.records if r.getMessage().startswith("left ")] == [
        f"left {path} alone: it is not as the classic charm writes it (remove it if it still runs the classic "
        "charm's sync)"
        for path in (scheduled, fastpoll)
    ]


def test_our_own_cron_file_stays(ctx, keystone, machine):
    state = testing.State(leader=True, config={"run": True}, relations=[keystone])
    ctx.run(ctx.on.config_changed(), state)

    ctx.run(ctx.on.upgrade_charm(), state)

    assert sorted(path.name for path in machine.paths.cron_file.parent.iterdir()) == ["glance-simplestreams-sync"]


def test_upgrade_charm_drops_the_token_of_an_earlier_versions_record(ctx, keystone, machine):
    record = machine.paths.state_dir / "unchanged.json"
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({"version": 1, "code": "c", "token": "gAAAAold", "token_expires": "x"}))

    ctx.run(ctx.on.upgrade_charm(), testing.State(leader=True, relations=[keystone]))

    assert json.loads(record.read_text()) == {"version": 1, "code": "c"}
