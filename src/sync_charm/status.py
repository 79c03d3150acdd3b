"""The unit's status: a pure function of the event's snapshot (and the time, for the next retry)."""

from __future__ import annotations

from datetime import datetime

import ops

from simplestreams_sync.text import shorten

from . import host, image_modifier, sync_process
from .snapshot import CERTIFICATES, IDENTITY, RECEIVE_CA, Snapshot
from .sync_report import (
    decisions_summary,
    failed_sync_summary,
    last_sync_summary,
    next_try_summary,
    progress_message,
    sync_failed,
)

NO_OBJECT_STORE = (
    "No object-store endpoint in keystone: images sync but no metadata is published; add swift or "
    "ceph-radosgw, or set serve_metadata=true (or use_swift=false)"
)


def unit_statuses(snapshot: Snapshot, now: datetime, served_problem: str | None = None) -> list[ops.StatusBase]:
    """Every status that applies; ops shows the most severe. `served_problem`: why the unit's web server
    does not serve the metadata (nginx failing to start), found by this event's reconcile."""
    statuses: list[ops.StatusBase] = []
    if snapshot.config_problem:
        statuses.append(ops.BlockedStatus(shorten(f"Invalid config: {snapshot.config_problem}", 200)))
    modifier_problem = image_modifier.relation_problem(snapshot.modifier_apps, snapshot.modifier_script)
    if modifier_problem:
        statuses.append(ops.BlockedStatus(modifier_problem))
    if served_problem:
        statuses.append(ops.BlockedStatus(shorten(f"Cannot serve the metadata: {served_problem}", 200)))
    identity = identity_problem(snapshot)
    if identity is not None:
        statuses.append(identity)
    if snapshot.vault_related and not snapshot.vault_cas:
        statuses.append(ops.WaitingStatus(f"Waiting for vault to send its CA on {CERTIFICATES}"))
    for sender in snapshot.waiting_ca_senders:
        statuses.append(ops.WaitingStatus(f"Waiting for {sender} to send its CA on {RECEIVE_CA}"))
    if not snapshot.leader:
        statuses.append(ops.ActiveStatus("Standby: only the leader unit syncs images"))
    elif snapshot.config is not None:
        statuses.append(sync_status(snapshot, now))
    statuses.append(ops.ActiveStatus())
    return statuses


def identity_problem(snapshot: Snapshot) -> ops.StatusBase | None:
    """Why the sync cannot reach the cloud yet, or None."""
    if not snapshot.identity_related:
        return ops.BlockedStatus(f"Missing relation: juju integrate {snapshot.app_name}:{IDENTITY} keystone:{IDENTITY}")
    credentials = snapshot.credentials
    if credentials is None:
        return ops.WaitingStatus(f"Waiting for keystone to send service credentials on {IDENTITY}")
    if not credentials.v3:
        return ops.BlockedStatus(
            f"Keystone offers API v{credentials.api_version}, the sync needs v3: "
            "juju config keystone preferred-api-version=3"
        )
    return None


def sync_status(snapshot: Snapshot, now: datetime) -> ops.StatusBase:
    """The leader's word on the sync: running, never run, failed (and when it tries again), or ready."""
    config, result = snapshot.config, snapshot.result
    assert config is not None
    if snapshot.progress is not None:
        return ops.ActiveStatus(progress_message(snapshot.progress))
    if result is None:
        if config.run:
            return ops.ActiveStatus(f"Unit is ready (first sync pending, log: {host.PATHS.log_file})")
        return ops.ActiveStatus("Unit is ready (no sync yet: set run=true or run the sync-images action)")
    if config.use_swift and not config.serve_metadata and result.object_store_missing:
        return ops.BlockedStatus(NO_OBJECT_STORE)
    if sync_failed(result, publishing=config.publishes_metadata):
        retry = "run sync-images"
        if config.run:
            next_try = next_try_summary(result, now)
            next_try = next_try or f"next try {sync_process.cron_description(config.frequency, snapshot.unit_name)}"
            retry = f"{next_try}, or {retry}"
        return ops.BlockedStatus(f"{failed_sync_summary(result)}; {retry}")
    decisions = decisions_summary(result)
    if decisions:
        return ops.ActiveStatus(f"Unit is ready ({last_sync_summary(result)}); {decisions}")
    return ops.ActiveStatus(f"Unit is ready ({last_sync_summary(result)})")
