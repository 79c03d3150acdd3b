"""What `juju status` says: progress during a sync, the last sync's result, and what to fix."""

import os
from datetime import datetime, timedelta, timezone

import pytest
from ops import testing


@pytest.fixture
def ready(keystone) -> testing.State:
    return testing.State(leader=True, config={"run": True}, relations=[keystone])


def test_progress_of_a_running_sync(ctx, ready, machine):
    machine.write_progress(
        item="ubuntu-24.04 amd64 disk1.img", item_index=3, item_count=8, bytes_done=410, bytes_total=1000
    )

    out = ctx.run(ctx.on.update_status(), ready)

    assert out.unit_status == testing.ActiveStatus("Syncing ubuntu-24.04 amd64 disk1.img (3 of 8, 41%)")


def test_progress_before_the_first_item(ctx, ready, machine):
    started = datetime.now(timezone.utc) - timedelta(hours=1)
    machine.write_progress(phase="reading sources", started=started.strftime("%Y-%m-%dT%H:%M:%SZ"))

    out = ctx.run(ctx.on.update_status(), ready)

    since = started.strftime("%Y-%m-%d %H:%M UTC")
    assert out.unit_status == testing.ActiveStatus(f"Sync running (reading sources, since {since})")


def test_a_sync_running_for_more_than_a_day_is_named_as_far_longer_than_expected(ctx, ready, machine):
    now = datetime.now(timezone.utc)
    updated = now - timedelta(minutes=1)
    machine.write_progress(
        started=(now - timedelta(hours=30)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        updated=updated.strftime("%Y-%m-%dT%H:%M:%SZ"),
        item="x",
        item_index=1,
        item_count=2,
    )

    out = ctx.run(ctx.on.update_status(), ready)

    assert out.unit_status == testing.ActiveStatus(
        f"Sync running for 30 h, far longer than expected (pid {os.getpid()}, last progress "
        f"{updated.strftime('%Y-%m-%d %H:%M UTC')}): see the sync log"
    )


def test_a_sync_without_progress_for_longer_than_the_watchdog_allows_is_named(ctx, ready, machine):
    now = datetime.now(timezone.utc)
    updated = now - timedelta(hours=2)
    machine.write_progress(
        started=(now - timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        updated=updated.strftime("%Y-%m-%dT%H:%M:%SZ"),
    )

    out = ctx.run(ctx.on.update_status(), ready)

    assert out.unit_status == testing.ActiveStatus(
        f"Sync running for 3 h, far longer than expected (pid {os.getpid()}, last progress "
        f"{updated.strftime('%Y-%m-%d %H:%M UTC')}): see the sync log"
    )


def test_a_crashed_sync_says_so_and_when_it_is_retried(ctx, ready, machine):
    finished = datetime.now(timezone.utc)
    machine.write_result(
        frequency="daily",
        started=(finished - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        finished=finished.strftime("%Y-%m-%dT%H:%M:%SZ"),
        crashed="KeyError: 'items'",
        errors=["the sync crashed: KeyError: 'items' (the traceback is in the sync log)"],
    )

    out = ctx.run(ctx.on.update_status(), ready)

    message = out.unit_status.message
    assert out.unit_status.name == "blocked"
    assert message.startswith(
        f"Last sync crashed {finished:%Y-%m-%d %H:%M} UTC: KeyError: 'items' (traceback in the sync log); next try in "
    )
    assert message.endswith(" (retry 1), or run sync-images")


def test_stale_progress_of_a_dead_sync_is_ignored(ctx, ready, machine):
    machine.write_progress(pid=2**22 + 12345, item="x", item_index=1, item_count=2)
    machine.write_result(created=[{"id": "1"}])

    out = ctx.run(ctx.on.update_status(), ready)

    assert out.unit_status == testing.ActiveStatus(
        "Unit is ready (last sync 2026-11-24 10:02 UTC: 1 created, 0 failed)"
    )


def test_last_sync_time_and_result(ctx, ready, machine):
    machine.write_result(finished="2026-11-24T10:02:41Z", created=[{"id": str(i)} for i in range(8)])

    out = ctx.run(ctx.on.update_status(), ready)

    assert out.unit_status == testing.ActiveStatus(
        "Unit is ready (last sync 2026-11-24 10:02 UTC: 8 created, 0 failed)"
    )


def test_a_failed_last_sync_blocks_with_when_why_and_what_next(ctx, ready, machine):
    machine.write_result(
        finished="2026-11-24T10:02:41Z",
        created=[{"id": "1"}],
        failed=[{"name": "a", "error": "b"}],
        errors=["mirror http://x/: HTTP 404"],
    )

    out = ctx.run(ctx.on.update_status(), ready)

    assert out.unit_status == testing.BlockedStatus(
        "Last sync failed 2026-11-24 10:02 UTC (1 created, 1 failed): mirror http://x/: HTTP 404; "
        "next try daily at 07:28, or run sync-images"
    )


def test_a_succeeded_sync_after_failures_is_active_again(ctx, ready, machine):
    machine.write_result(finished="2026-11-24T10:02:41Z")

    out = ctx.run(ctx.on.update_status(), ready)

    assert out.unit_status == testing.ActiveStatus(
        "Unit is ready (last sync 2026-11-24 10:02 UTC: 0 created, 0 failed)"
    )


def test_a_failed_last_sync_without_cron_says_to_run_the_action(ctx, keystone, machine):
    machine.write_result(finished="2026-11-24T10:02:41Z", failed=[{"name": "ubuntu-noble", "error": "HTTP 500"}])

    out = ctx.run(ctx.on.update_status(), testing.State(leader=True, relations=[keystone]))

    assert out.unit_status == testing.BlockedStatus(
        "Last sync failed 2026-11-24 10:02 UTC (0 created, 1 failed): ubuntu-noble: HTTP 500; run sync-images"
    )


def test_a_failure_reason_is_shortened_keeping_its_end(ctx, ready, machine):
    error = (
        "keystone https://127.0.0.1:5000/v3: cannot connect (Unable to establish connection to "
        "https://127.0.0.1:5000/v3/auth/tokens: HTTPSConnectionPool(host='127.0.0.1', port=5000): Max "
        "retries exceeded with url: /v3/auth/tokens (Caused by NewConnectionError('<urllib3.connection."
        "HTTPSConnection object at 0x7f3a>: Failed to establish a new connection: [Errno 111] Connection "
        "refused')))"
    )
    machine.write_result(finished="2026-11-24T10:02:41Z", errors=[error])

    out = ctx.run(ctx.on.update_status(), ready)

    assert out.unit_status == testing.BlockedStatus(
        "Last sync failed 2026-11-24 10:02 UTC (0 created, 0 failed): keystone https://127.0.0.1:5000/v3: cannot "
        "connect (Unable to … object at 0x7f3a>: Failed to establish a new connection: [Errno 111] Connection "
        "refused'))); next try daily at 07:28, or run sync-images"
    )


def test_last_sync_was_a_dry_run(ctx, ready, machine):
    machine.write_result(finished="2026-11-24T10:02:41Z", dry_run=True, would_create=[{}, {}])

    out = ctx.run(ctx.on.update_status(), ready)

    assert out.unit_status == testing.ActiveStatus(
        "Unit is ready (last sync 2026-11-24 10:02 UTC: dry run, 2 would be created)"
    )


def test_object_store_missing_blocks_while_use_swift(ctx, ready, machine):
    machine.write_result(
        published=False,
        object_store_missing=True,
        created=[{"id": "1"}],
        errors=[
            "no object-store (Swift) endpoint in the catalog for region RegionOne; images were synced but no "
            "metadata was published"
        ],
    )

    out = ctx.run(ctx.on.update_status(), ready)

    assert out.unit_status == testing.BlockedStatus(
        "No object-store endpoint in keystone: images sync but no metadata is published; add swift or "
        "ceph-radosgw, or set serve_metadata=true (or use_swift=false)"
    )


def test_object_store_missing_is_fine_without_use_swift(ctx, keystone, machine):
    machine.write_result(
        finished="2026-11-24T10:02:41Z",
        published=False,
        object_store_missing=True,
        created=[{"id": "1"}],
        errors=["no object-store (Swift) endpoint in the catalog for region RegionOne"],
    )

    out = ctx.run(ctx.on.update_status(), testing.State(leader=True, config={"use_swift": False}, relations=[keystone]))

    assert out.unit_status.name == "active"


def test_no_sync_yet_with_run_false_says_how_to_sync(ctx, keystone):
    out = ctx.run(ctx.on.update_status(), testing.State(leader=True, relations=[keystone]))

    assert out.unit_status == testing.ActiveStatus(
        "Unit is ready (no sync yet: set run=true or run the sync-images action)"
    )


def test_non_leader_says_it_does_not_sync(ctx, keystone, machine):
    machine.write_result(created=[{"id": "1"}])

    out = ctx.run(ctx.on.update_status(), testing.State(leader=False, relations=[keystone]))

    assert out.unit_status == testing.ActiveStatus("Standby: only the leader unit syncs images")


def test_invalid_config_wins_over_everything(ctx, keystone, machine):
    machine.write_progress(item="x", item_index=1, item_count=2)

    out = ctx.run(
        ctx.on.update_status(), testing.State(leader=True, config={"visibility": "all"}, relations=[keystone])
    )

    assert out.unit_status == testing.BlockedStatus(
        "Invalid config: visibility: Input should be 'public', 'private', 'community' or 'shared' (got 'all')"
    )


def test_a_deactivated_image_is_named_as_needing_an_operators_decision(ctx, ready, machine):
    machine.write_result(
        finished="2026-11-24T10:02:41Z",
        created=[{"id": "b2"}],
        needs_decision=[
            {
                "id": "a1",
                "name": "auto-sync/ubuntu-24.04-amd64-disk1.img",
                "reason": "deactivated: never published nor deleted by the sync; reactivate it "
                "(openstack image reactivate a1) or delete it",
            }
        ],
    )

    out = ctx.run(ctx.on.update_status(), ready)

    assert out.unit_status == testing.ActiveStatus(
        "Unit is ready (last sync 2026-11-24 10:02 UTC: 1 created, 0 failed); 1 image needs an operator's "
        "decision: auto-sync/ubuntu-24.04-amd64-disk1.img (a1) deactivated"
    )


def test_every_image_needing_a_decision_is_counted(ctx, ready, machine):
    machine.write_result(
        finished="2026-11-24T10:02:41Z",
        needs_decision=[
            {"id": "a1", "name": "auto-sync/a", "reason": "deactivated: never published nor deleted by the sync"},
            {
                "id": "c3",
                "name": "auto-sync/c",
                "reason": "protected, but its bytes do not match the source: unprotect it (openstack image set "
                "--unprotected c3) and the next sync deletes it",
            },
        ],
    )

    out = ctx.run(ctx.on.update_status(), ready)

    assert out.unit_status == testing.ActiveStatus(
        "Unit is ready (last sync 2026-11-24 10:02 UTC: 0 created, 0 failed); 2 images need an operator's "
        "decision: auto-sync/a (a1) deactivated; auto-sync/c (c3) protected, but its bytes do not match the "
        "source"
    )


def test_a_failed_sync_says_its_failure_before_any_decision(ctx, ready, machine):
    machine.write_result(
        finished="2026-11-24T10:02:41Z",
        errors=["mirror http://x/: HTTP 404"],
        needs_decision=[{"id": "a1", "name": "auto-sync/a", "reason": "deactivated: …"}],
    )

    out = ctx.run(ctx.on.update_status(), ready)

    assert out.unit_status == testing.BlockedStatus(
        "Last sync failed 2026-11-24 10:02 UTC (0 created, 0 failed): mirror http://x/: HTTP 404; "
        "next try daily at 07:28, or run sync-images"
    )
