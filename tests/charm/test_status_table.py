"""The status function's rules, one row each: a snapshot in, the status `juju status` shows out (the most
severe of those that apply, as ops picks it). No machine, no Juju: `status.unit_statuses` is pure."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from pathlib import Path

import ops
import pytest

from simplestreams_sync.state import Progress, SyncResult
from sync_charm import host, status
from sync_charm.config import CharmConfig
from sync_charm.identity_service import Credentials
from sync_charm.snapshot import Snapshot

NOW = datetime(2026, 11, 24, 12, 0, 0, tzinfo=timezone.utc)
V3 = Credentials(
    "3", "image-stream", "pw", "services", "Default", "https://k:5000/v3", "https://k:5000/v3", "https://k:35357/v3"
)
V2 = dataclasses.replace(V3, api_version="2.0")
READY = Snapshot(
    unit_name="glance-simplestreams-sync/0",
    app_name="glance-simplestreams-sync",
    charm_dir=Path("/charm"),
    leader=True,
    config=CharmConfig(run=True),
    config_problem=None,
    identity_related=True,
    credentials=V3,
)


def result(**fields) -> SyncResult:
    return SyncResult(
        **{"started": "2026-11-24T09:40:00Z", "finished": "2026-11-24T10:02:41Z", "published": True, **fields}
    )


def at(delta: timedelta) -> str:
    return (NOW + delta).strftime("%Y-%m-%dT%H:%M:%SZ")


FAILED = "Last sync failed 2026-11-24 10:02 UTC (0 created, 0 failed): glance: cannot connect; "
ROWS = [
    ("ready, never synced, run", {}, ops.ActiveStatus("Unit is ready (first sync pending, log: {log})")),
    (
        "ready, never synced, run=false",
        {"config": CharmConfig()},
        ops.ActiveStatus("Unit is ready (no sync yet: set run=true or run the sync-images action)"),
    ),
    (
        "last sync succeeded",
        {"result": result(created=[{"id": "1"}])},
        ops.ActiveStatus("Unit is ready (last sync 2026-11-24 10:02 UTC: 1 created, 0 failed)"),
    ),
    (
        "a sync runs",
        {"result": result(), "progress": Progress(pid=1, item="img", item_index=1, item_count=4)},
        ops.ActiveStatus("Syncing img (1 of 4)"),
    ),
    (
        "failed, retry in 10 min",
        {"result": result(errors=["glance: cannot connect"], failures_in_a_row=2, next_try=at(timedelta(seconds=570)))},
        ops.BlockedStatus(FAILED + "next try in 10 min (retry 2), or run sync-images"),
    ),
    (
        "failed, retry overdue",
        {"result": result(errors=["glance: cannot connect"], failures_in_a_row=3, next_try=at(timedelta(seconds=-90)))},
        ops.BlockedStatus(FAILED + "next try within a minute (retry 3), or run sync-images"),
    ),
    (
        "failed, retry in days",
        {"result": result(errors=["glance: cannot connect"], failures_in_a_row=12, next_try=at(timedelta(days=7)))},
        ops.BlockedStatus(FAILED + "next try in 7 d (retry 12), or run sync-images"),
    ),
    (
        "failed, no retry named",
        {"result": result(errors=["glance: cannot connect"])},
        ops.BlockedStatus(FAILED + "next try daily at 07:28, or run sync-images"),
    ),
    (
        "failed, run=false",
        {"config": CharmConfig(), "result": result(errors=["glance: cannot connect"])},
        ops.BlockedStatus(FAILED + "run sync-images"),
    ),
    (
        "no object store",
        {"result": result(published=False, object_store_missing=True)},
        ops.BlockedStatus(status.NO_OBJECT_STORE),
    ),
    (
        "non-leader",
        {"leader": False, "result": result(errors=["x"])},
        ops.ActiveStatus("Standby: only the leader unit syncs images"),
    ),
    (
        "no keystone",
        {"identity_related": False, "credentials": None},
        ops.BlockedStatus(
            "Missing relation: juju integrate glance-simplestreams-sync:identity-service keystone:identity-service"
        ),
    ),
    (
        "keystone has not answered",
        {"credentials": None},
        ops.WaitingStatus("Waiting for keystone to send service credentials on identity-service"),
    ),
    (
        "keystone v2",
        {"credentials": V2},
        ops.BlockedStatus("Keystone offers API v2.0, the sync needs v3: juju config keystone preferred-api-version=3"),
    ),
    (
        "vault sent no CA",
        {"vault_related": True},
        ops.WaitingStatus("Waiting for vault to send its CA on certificates"),
    ),
    (
        "a CA sender sent nothing",
        {"waiting_ca_senders": ("ca",)},
        ops.WaitingStatus("Waiting for ca to send its CA on receive-ca-cert"),
    ),
    (
        "two image-modifiers",
        {"modifier_apps": ("one", "two")},
        ops.BlockedStatus("Only one image-modifier subordinate is supported, remove all but one of: one, two"),
    ),
    (
        "a script path sudo cannot name",
        {"modifier_apps": ("m",), "modifier_script": "/bin/a b"},
        ops.BlockedStatus("image-modifier script-path '/bin/a b' is not an absolute path of plain characters"),
    ),
    (
        "invalid config wins",
        {"config": None, "config_problem": "frequency: bad", "progress": Progress(pid=1)},
        ops.BlockedStatus("Invalid config: frequency: bad"),
    ),
]


def shown(statuses: list[ops.StatusBase]) -> ops.StatusBase:
    """The status ops shows of those added: the most severe, the first of equals."""
    order = ["error", "blocked", "maintenance", "waiting", "active", "unknown"]
    return min(statuses, key=lambda unit_status: order.index(unit_status.name))


@pytest.mark.parametrize(("case", "changes", "expected"), ROWS, ids=[row[0] for row in ROWS])
def test_status(case, changes, expected):
    snapshot = dataclasses.replace(READY, **changes)
    expected = type(expected)(expected.message.replace("{log}", str(host.PATHS.log_file)))

    assert shown(status.unit_statuses(snapshot, NOW)) == expected


def test_nginx_failing_to_start_blocks_with_its_reason():
    statuses = status.unit_statuses(READY, NOW, served_problem="systemctl start nginx exited with 1: bind() failed")

    assert shown(statuses) == ops.BlockedStatus(
        "Cannot serve the metadata: systemctl start nginx exited with 1: bind() failed"
    )
