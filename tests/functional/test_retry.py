"""Retrying soon after a failed run, driven as cron drives it: the charm's cron file, its lines run as
cron runs them (/bin/sh -c, cron's bare environment), against the real local cloud with Glance stopped
and started again. The clock is the test's: "N minutes later" moves every time in the state files N
minutes back (nothing sleeps)."""

from __future__ import annotations

import base64
import json
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from ops import testing

from charm import GlanceSimplestreamsSyncCharm
from simplestreams_sync import retry
from simplestreams_sync.state import RESULT_FILE, TIME_FORMAT
from tests.functional.conftest import keystone_relation, our_images

pytestmark = pytest.mark.functional

CONTENT_ID_TEMPLATE = "retry.test.{region}"
TIME_FIELDS = ("started", "finished", "last_success", "next_try")


class CronMachine:
    """The charm's machine (charm_machine) as cron sees it: its cron file's jobs, run as cron runs them."""

    def __init__(self, paths):
        self.paths = paths

    def jobs(self) -> tuple[str, str]:
        """(the scheduled sync's command, the retry line's), from the cron file the charm wrote."""
        lines = [
            line.split(" root ", 1)
            for line in self.paths.cron_file.read_text().splitlines()
            if line and not line.startswith("#") and "=" not in line.split()[0]
        ]
        (_, scheduled), (retry_time, retry_line) = lines
        assert retry_time == "* * * * *"
        return scheduled, retry_line

    def run(self, command: str) -> str:
        """Run a cron command as cron does; what it appended to the log."""
        before = self.log()
        env = {"HOME": str(Path.home()), "SHELL": "/bin/sh", "PATH": "/usr/bin:/bin"}
        subprocess.run(["/bin/sh", "-c", command.replace("\\%", "%")], env=env, cwd="/", check=False, timeout=600)
        return self.log().removeprefix(before)

    def log(self) -> str:
        return self.paths.log_file.read_text() if self.paths.log_file.exists() else ""

    def result(self) -> dict:
        return json.loads((self.paths.state_dir / RESULT_FILE).read_text())

    def minutes_pass(self, minutes: float) -> None:
        """The test's clock: every time in last-sync.json moves `minutes` into the past."""
        data = self.result()
        for name in TIME_FIELDS:
            if data.get(name):
                moved = retry.parse_time(data[name]) - timedelta(minutes=minutes)
                data[name] = moved.strftime(TIME_FORMAT)
        (self.paths.state_dir / RESULT_FILE).write_text(json.dumps(data))

    def minutes_to_next_try(self) -> float:
        return (retry.parse_time(self.result()["next_try"]) - datetime.now(timezone.utc)).total_seconds() / 60

    def wait_of_last_failure(self) -> timedelta:
        data = self.result()
        return retry.parse_time(data["next_try"]) - retry.parse_time(data["finished"])


@pytest.fixture
def charm_state(charm_machine, cloud, source, test_key) -> testing.State:
    source.add_image(release="noble", version="24.04", serial="20261201", seed=300)
    source.write()
    mirror = {"url": source.url, "path": "streams/v1/index.sjson", "max": 1, "item_filters": ["release~(noble)"]}
    config = {
        "mirror_list": yaml.safe_dump([mirror]),
        "custom_keyring": base64.b64encode(test_key.keyring.read_bytes()).decode(),
        "region": cloud.sync_identity["region"],
        "content_id_template": CONTENT_ID_TEMPLATE,
        "run": True,
        "frequency": "weekly",
    }
    return testing.State(leader=True, config=config, relations=[keystone_relation(cloud)])


def status(ctx, state) -> testing.StatusBase:
    return ctx.run(ctx.on.update_status(), state).unit_status


def ready(machine: CronMachine, created: int) -> testing.ActiveStatus:
    finished = retry.parse_time(machine.result()["finished"])
    return testing.ActiveStatus(f"Unit is ready (last sync {finished:%Y-%m-%d %H:%M} UTC: {created} created, 0 failed)")


def assert_no_token_on_disk(root: Path) -> None:
    records = list(root.rglob("unchanged.json"))
    assert records, "no quick-check record was written"
    for record in records:
        text = record.read_text()
        assert not {"token", "token_expires"} & json.loads(text).keys(), record
        assert "gAAAA" not in text, record  # how every Fernet token begins


def test_a_failed_first_sync_is_retried_with_backoff_until_glance_is_back(charm_machine, cloud, charm_state, glance):
    ctx = testing.Context(GlanceSimplestreamsSyncCharm)
    ctx.run(ctx.on.config_changed(), charm_state)
    machine = CronMachine(charm_machine)
    scheduled, retry_line = machine.jobs()
    content_id = CONTENT_ID_TEMPLATE.format(region=cloud.sync_identity["region"])

    with cloud.service_down("glance"):
        assert "error: " in machine.run(scheduled)  # the first sync, while Glance is not there yet
        for failures, wait in [(1, 5), (2, 10), (3, 20)]:
            assert (machine.result()["failures_in_a_row"], machine.wait_of_last_failure()) == (
                failures,
                timedelta(minutes=wait),
            )
            assert status(ctx, charm_state).message.endswith(
                f"; next try in {wait} min (retry {failures}), or run sync-images"
            )
            machine.minutes_pass(wait - 1)
            assert machine.run(retry_line) == ""  # a minute early: nothing, not a word
            machine.minutes_pass(1)
            assert f"retry {failures} of the sync that failed" in machine.run(retry_line)
        assert machine.result()["failures_in_a_row"] == 4

    machine.minutes_pass(machine.minutes_to_next_try())
    log = machine.run(retry_line)

    assert "retry 4 of the sync that failed" in log and "sync finished: 1 created, 0 failed" in log
    (image,) = our_images(glance, content_id)
    assert image["status"] == "active"
    assert (machine.result()["failures_in_a_row"], machine.result()["next_try"]) == (0, "")
    assert status(ctx, charm_state) == ready(machine, created=1)
    assert machine.run(retry_line) == ""  # nothing due after a success
    assert_no_token_on_disk(charm_machine.state_dir.parent.parent)

    # A week later the scheduled sync fails (Glance down again): retried within the hour.
    machine.minutes_pass(7 * 24 * 60)
    with cloud.service_down("glance"):
        assert "error: " in machine.run(scheduled)
    assert machine.wait_of_last_failure() == timedelta(minutes=5)
    machine.minutes_pass(5)
    log = machine.run(retry_line)

    assert "retry 1 of the sync that failed" in log and "sync finished: 0 created, 0 failed" in log
    assert machine.result()["ok"] and machine.result()["failures_in_a_row"] == 0
    assert status(ctx, charm_state) == ready(machine, created=0)
    assert_no_token_on_disk(charm_machine.state_dir.parent.parent)
