"""The sync-images action: runs the engine now and reports its output, failures and the lock."""

import pytest
from ops import testing

from tests.charm.relation_data import METADATA_URL

CREATED = [
    "created 6f1c…01: auto-sync/ubuntu-24.04-amd64-20261120-disk1.img",
    "created 9b2e…02: auto-sync/ubuntu-26.04-amd64-20261121-disk1.img",
]


@pytest.fixture
def state(keystone) -> testing.State:
    return testing.State(leader=True, relations=[keystone])


def test_success_reports_the_created_lines_and_counts(ctx, state, fake_engine):
    fake_engine(
        stdout=[*CREATED, "synced 2 mirrors: 2 created, 0 failed"],
        result={"created": [{"id": "1"}, {"id": "2"}], "published": True},
    )

    ctx.run(ctx.on.action("sync-images"), state)

    assert ctx.action_results == {
        "dry-run": False,
        "created-count": 2,
        "created": "\n".join(CREATED),
        "failed-count": 0,
        "summary": "synced 2 mirrors: 2 created, 0 failed",
    }
    assert ctx.action_logs == [*CREATED, "synced 2 mirrors: 2 created, 0 failed"]


def test_runs_the_engine_with_the_rendered_files(ctx, state, fake_engine, machine):
    engine = fake_engine(stdout=["nothing to do"])

    ctx.run(ctx.on.action("sync-images"), state)

    (call,) = engine.calls
    assert call["argv"] == ["--mirrors", str(machine.paths.mirrors), "--identity", str(machine.paths.identity)]
    assert call["pythonpath"].split(":")[0].endswith("/src")
    assert machine.paths.mirrors.exists() and machine.paths.identity.exists()


def test_full_check_passes_the_flag(ctx, state, fake_engine):
    engine = fake_engine(stdout=["sync finished: 0 created, 0 failed, 0 deleted, 0 errors"], result={})

    ctx.run(ctx.on.action("sync-images", params={"full-check": True}), state)

    assert engine.calls[0]["argv"][-1] == "--full-check"


def test_dry_run_passes_the_flag_and_reports_what_would_be_created(ctx, state, fake_engine):
    would = ["would create com.ubuntu.cloud:server:24.04:amd64 20261120 disk1.img: auto-sync/ubuntu-24.04"]
    engine = fake_engine(stdout=[*would, "dry run: 1 would be created"], result={"would_create": [{}]})

    ctx.run(ctx.on.action("sync-images", params={"dry-run": True}), state)

    assert engine.calls[0]["argv"][-1] == "--dry-run"
    assert ctx.action_results["dry-run"] is True
    assert ctx.action_results["would-create-count"] == 1
    assert ctx.action_results["would-create"] == would[0]
    assert "created-count" not in ctx.action_results


def test_failed_sync_fails_the_action_with_the_reason(ctx, state, fake_engine):
    fake_engine(
        stdout=[CREATED[0], "1 created, 1 failed"],
        exit_code=1,
        result={"created": [{"id": "1"}], "failed": [{"name": "auto-sync/ubuntu-26.04", "error": "checksum mismatch"}]},
    )

    with pytest.raises(testing.ActionFailed) as failure:
        ctx.run(ctx.on.action("sync-images"), state)

    assert failure.value.message == "Sync finished with failures: auto-sync/ubuntu-26.04: checksum mismatch"
    assert ctx.action_results["created"] == CREATED[0]
    assert ctx.action_results["failed-count"] == 1


def test_failed_sync_without_result_reports_stderr(ctx, state, fake_engine):
    fake_engine(exit_code=1, stderr="Traceback ...\nCloudError: keystone https://10.5.0.10:5000/v3: cannot connect\n")

    with pytest.raises(testing.ActionFailed) as failure:
        ctx.run(ctx.on.action("sync-images"), state)

    assert failure.value.message == (
        "Sync finished with failures: CloudError: keystone https://10.5.0.10:5000/v3: cannot connect"
    )


def test_another_sync_running_fails_saying_so(ctx, state, fake_engine):
    fake_engine(exit_code=3, stderr="another sync is already running (pid 4711)\n")

    with pytest.raises(testing.ActionFailed) as failure:
        ctx.run(ctx.on.action("sync-images"), state)

    assert failure.value.message == (
        "Another sync is already running (cron or another sync-images action); try again when it has finished "
        "(another sync is already running (pid 4711))"
    )


def test_a_crashed_sync_fails_saying_it_crashed_and_where_the_traceback_is(ctx, state, fake_engine):
    crash = "the sync crashed: TypeError: 'NoneType' object is not subscriptable (the traceback is in the sync log)"
    fake_engine(
        exit_code=4,
        stderr="Traceback (most recent call last):\n  ...\nerror: the sync crashed: TypeError: ...\n",
        result={"crashed": "TypeError: 'NoneType' object is not subscriptable", "errors": [crash]},
    )

    with pytest.raises(testing.ActionFailed) as failure:
        ctx.run(ctx.on.action("sync-images"), state)

    assert failure.value.message == (
        "The sync crashed: TypeError: 'NoneType' object is not subscriptable (the traceback is in the sync log)"
    )


def test_config_rejected_by_the_engine_fails(ctx, state, fake_engine):
    fake_engine(exit_code=2, stderr="mirrors.yaml: mirror_list.0.url: Field required\n")

    with pytest.raises(testing.ActionFailed) as failure:
        ctx.run(ctx.on.action("sync-images"), state)

    assert failure.value.message == (
        "The sync rejected its config files: mirrors.yaml: mirror_list.0.url: Field required"
    )


def test_non_leader_fails(ctx, keystone, fake_engine):
    engine = fake_engine()

    with pytest.raises(testing.ActionFailed) as failure:
        ctx.run(ctx.on.action("sync-images"), testing.State(leader=False, relations=[keystone]))

    assert failure.value.message == (
        "Only the leader unit syncs images: run the action on glance-simplestreams-sync/leader"
    )
    assert engine.calls == []


def test_invalid_config_fails_without_running(ctx, keystone, fake_engine):
    engine = fake_engine()

    with pytest.raises(testing.ActionFailed) as failure:
        ctx.run(
            ctx.on.action("sync-images"),
            testing.State(leader=True, config={"frequency": "monthly"}, relations=[keystone]),
        )

    assert failure.value.message == (
        "Invalid config, fix it first: frequency: Input should be 'hourly', 'daily' or 'weekly' (got 'monthly')"
    )
    assert engine.calls == []


def test_without_keystone_fails_saying_what_is_missing(ctx, fake_engine):
    engine = fake_engine()

    with pytest.raises(testing.ActionFailed) as failure:
        ctx.run(ctx.on.action("sync-images"), testing.State(leader=True))

    assert failure.value.message == (
        "Cannot sync yet: Missing relation: juju integrate "
        "glance-simplestreams-sync:identity-service keystone:identity-service"
    )
    assert engine.calls == []


def test_after_publishing_the_endpoint_points_at_the_metadata(ctx, state, keystone, fake_engine):
    fake_engine(
        stdout=CREATED, result={"created": [{"id": "1"}, {"id": "2"}], "published": True, "metadata_url": METADATA_URL}
    )

    out = ctx.run(ctx.on.action("sync-images"), state)

    assert out.get_relation(keystone.id).local_unit_data["public_url"] == METADATA_URL


def test_output_is_appended_to_the_log(ctx, state, fake_engine, machine):
    fake_engine(stdout=CREATED, stderr="INFO transfer done\n")

    ctx.run(ctx.on.action("sync-images"), state)

    log = machine.paths.log_file.read_text()
    assert CREATED[1] in log and "INFO transfer done" in log


def test_status_shows_progress_while_the_action_syncs(ctx, state, fake_engine, machine, monkeypatch, shared_dir):
    import charm

    monkeypatch.setattr(charm, "PROGRESS_INTERVAL", 0.05)
    machine.write_progress(item="ubuntu-26.04 amd64 disk1.img", item_index=2, item_count=4)
    release = shared_dir / "release"
    fake_engine(
        stdout=CREATED, hold=release, result={"created": [{"id": "1"}, {"id": "2"}], "finished": "2026-11-26T11:00:00Z"}
    )
    show_progress = charm.GlanceSimplestreamsSyncCharm._show_progress

    def show_progress_then_release(self):  # the engine finishes once the charm has shown its progress
        show_progress(self)
        release.touch()

    monkeypatch.setattr(charm.GlanceSimplestreamsSyncCharm, "_show_progress", show_progress_then_release)

    out = ctx.run(ctx.on.action("sync-images"), state)

    assert testing.ActiveStatus("Syncing ubuntu-26.04 amd64 disk1.img (2 of 4)") in ctx.unit_status_history
    assert out.unit_status == testing.ActiveStatus(
        "Unit is ready (last sync 2026-11-26 11:00 UTC: 2 created, 0 failed)"
    )


def test_the_action_does_not_start_a_background_sync(ctx, keystone, fake_engine, machine):
    fake_engine(stdout=CREATED, result={"created": [{"id": "1"}, {"id": "2"}]})

    ctx.run(ctx.on.action("sync-images"), testing.State(leader=True, config={"run": True}, relations=[keystone]))

    assert machine.background_syncs == []
