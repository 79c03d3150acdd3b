"""Never a dead endpoint: once the charm has credentials (and use_swift), the engine publishes valid,
empty metadata in the same hook and keystone's product-streams endpoint points at it; after that, each
event applies the URL the last sync recorded."""

import os
import pwd
import time
from pathlib import Path

from ops import testing

from sync_charm import host, sync_process
from tests.charm.relation_data import KEYSTONE_V3, METADATA_URL, PRODUCT_STREAMS_URLS

AS_ROOT = os.geteuid() == 0
PLACEHOLDER = "http://192.0.2.0"
OTHER_URL = "https://swift.example:443/v1/AUTH_other/simplestreams/data"
OTHER_URLS = {
    "public": "https://swift-public.example:443/v1/AUTH_other/simplestreams/data",
    "internal": OTHER_URL,
    "admin": "https://swift-admin.example:443/v1/AUTH_other/simplestreams/data",
}


def _public_url(out: testing.State, relation: testing.Relation) -> str:
    return out.get_relation(relation.id).local_unit_data["public_url"]


def test_credentials_publish_empty_metadata_and_point_keystone_at_it_in_the_same_hook(
    ctx, keystone, machine, fake_engine
):
    engine = fake_engine(metadata_url=METADATA_URL)

    out = ctx.run(ctx.on.relation_changed(keystone, remote_unit=0), testing.State(leader=True, relations=[keystone]))

    (run,) = engine.publish_calls
    assert run["argv"] == [
        "--mirrors",
        str(machine.paths.mirrors),
        "--identity",
        str(machine.paths.identity),
        "--publish-only",
    ]
    assert run["uid"] == pwd.getpwnam(host.SYNC_USER).pw_uid and (run["uid"] != 0 or not AS_ROOT)
    assert run["identity_readable"]
    assert engine.calls == []  # nothing synced
    relation = out.get_relation(keystone.id)
    request = relation.local_unit_data
    assert {key: request[f"{key}_url"] for key in PRODUCT_STREAMS_URLS} == PRODUCT_STREAMS_URLS
    assert relation.local_app_data == {
        "metadata_url": METADATA_URL,
        **{f"{key}_url": url for key, url in PRODUCT_STREAMS_URLS.items()},
    }
    assert "# publish-only " in machine.paths.log_file.read_text()


def test_once_a_url_is_known_nothing_is_published_again(ctx, keystone, machine, fake_engine):
    engine = fake_engine(metadata_url=METADATA_URL)
    state = testing.State(leader=True, relations=[keystone])
    out = ctx.run(ctx.on.relation_changed(keystone, remote_unit=0), state)

    relation = out.get_relation(keystone.id)
    ctx.run(ctx.on.update_status(), testing.State(leader=True, relations=[relation]))

    assert len(engine.publish_calls) == 1


def test_a_failed_publish_keeps_the_placeholder_logs_why_and_the_next_hook_tries_again(
    ctx, keystone, machine, fake_engine
):
    engine = fake_engine(metadata_url=None)
    state = testing.State(leader=True, relations=[keystone])

    out = ctx.run(ctx.on.relation_changed(keystone, remote_unit=0), state)

    assert _public_url(out, keystone) == PLACEHOLDER
    assert "metadata_url" not in out.get_relation(keystone.id).local_app_data
    assert "error: swift is down" in machine.paths.log_file.read_text()
    ctx.run(ctx.on.update_status(), state)
    assert len(engine.publish_calls) == 2


def test_the_urls_a_later_sync_records_are_applied_by_the_next_event(ctx, keystone, machine, fake_engine):
    """E.g. cron's sync found other object-store URLs in the catalog: update-status applies them."""
    fake_engine(metadata_url=METADATA_URL)
    out = ctx.run(ctx.on.relation_changed(keystone, remote_unit=0), testing.State(leader=True, relations=[keystone]))
    machine.write_result(metadata_url=OTHER_URL, product_streams_urls=OTHER_URLS)

    out = ctx.run(ctx.on.update_status(), testing.State(leader=True, relations=[out.get_relation(keystone.id)]))

    request = out.get_relation(keystone.id).local_unit_data
    assert {key: request[f"{key}_url"] for key in OTHER_URLS} == OTHER_URLS


def test_no_publish_without_use_swift(ctx, keystone, fake_engine):
    engine = fake_engine(metadata_url=METADATA_URL)

    out = ctx.run(
        ctx.on.relation_changed(keystone, remote_unit=0),
        testing.State(leader=True, config={"use_swift": False}, relations=[keystone]),
    )

    assert engine.publish_calls == []
    assert _public_url(out, keystone) == PLACEHOLDER


def test_no_publish_before_credentials(ctx, fake_engine):
    engine = fake_engine(metadata_url=METADATA_URL)
    partial = {key: value for key, value in KEYSTONE_V3.items() if key != "service_password"}
    relation = testing.Relation("identity-service", remote_app_name="keystone", remote_units_data={0: partial})

    ctx.run(ctx.on.relation_changed(relation, remote_unit=0), testing.State(leader=True, relations=[relation]))

    assert engine.publish_calls == []


def test_no_publish_on_a_non_leader(ctx, keystone, fake_engine):
    engine = fake_engine(metadata_url=METADATA_URL)

    ctx.run(ctx.on.relation_changed(keystone, remote_unit=0), testing.State(leader=False, relations=[keystone]))

    assert engine.publish_calls == []


def _wait_until_gone(pid: int) -> None:
    """The released publish's end (its pid no longer a --publish-only process), bounded by the test."""
    for _ in range(600):
        try:
            if b"--publish-only" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                return
        except OSError:
            return
        time.sleep(0.05)
    raise AssertionError(f"the released publish (pid {pid}) did not end")


def test_a_publish_that_takes_long_goes_on_in_the_background_and_a_later_hook_applies_it(
    ctx, keystone, machine, fake_engine, monkeypatch, tmp_path
):
    monkeypatch.setattr(sync_process, "PUBLISH_WAIT", 0.2)
    release = machine.paths.state_dir.parent / "release-publish"
    engine = fake_engine(metadata_url=METADATA_URL, publish_hold=release)
    pid_file = machine.paths.state_dir / "charm-publish-only.pid"

    out = ctx.run(ctx.on.relation_changed(keystone, remote_unit=0), testing.State(leader=True, relations=[keystone]))
    relation = out.get_relation(keystone.id)
    assert _public_url(out, keystone) == PLACEHOLDER  # the hook did not wait for the publish
    pid = int(pid_file.read_text())
    out = ctx.run(ctx.on.update_status(), testing.State(leader=True, relations=[relation]))
    assert len(engine.publish_calls) == 1  # one at a time: still running, not started again
    release.touch()
    _wait_until_gone(pid)

    out = ctx.run(ctx.on.update_status(), testing.State(leader=True, relations=[out.get_relation(keystone.id)]))

    request = out.get_relation(keystone.id).local_unit_data
    assert {key: request[f"{key}_url"] for key in PRODUCT_STREAMS_URLS} == PRODUCT_STREAMS_URLS
    assert len(engine.publish_calls) == 1
    assert not pid_file.exists()
    assert "# publish-only " in machine.paths.log_file.read_text()
