"""Removal: `stop` and `remove` leave nothing of the charm's on the machine but the sync log, and what
the charm asked keystone to register is withdrawn."""

from __future__ import annotations

import sys

import pytest
from ops import testing

from sync_charm import metadata_server
from tests.charm.relation_data import METADATA_URL, PRODUCT_STREAMS_URLS

SCRIPT = "/usr/local/bin/modify-image"


@pytest.fixture
def everything(keystone, vault, machine, fake_engine, monkeypatch: pytest.MonkeyPatch) -> testing.State:
    """A leader that serves the metadata, schedules syncs, has the Nagios check and an image-modifier:
    every file the charm writes is on the machine."""
    fake_engine(metadata_url="http://10.0.0.5/simplestreams/data")
    monkeypatch.setattr(metadata_server, "SYSTEMCTL", [sys.executable, "-c", "pass"])
    monkeypatch.setattr(metadata_server, "install", lambda: False)
    nrpe = testing.SubordinateRelation("nrpe-external-master", remote_app_name="nrpe")
    modifier = testing.SubordinateRelation(
        "image-modifier", remote_app_name="modifier", remote_unit_data={"script-path": SCRIPT}
    )
    state = testing.State(
        leader=True, config={"run": True, "serve_metadata": True}, relations=[keystone, vault, nrpe, modifier]
    )
    return state


def charm_files(machine) -> list[str]:
    return sorted(str(path.relative_to(machine.root)) for path in machine.root.rglob("*") if not path.is_dir())


@pytest.mark.parametrize("event", ["stop", "remove"])
def test_stop_and_remove_leave_only_the_sync_log(ctx, machine, everything, event):
    ctx.run(ctx.on.config_changed(), everything)
    machine.write_result()
    before = charm_files(machine)
    assert machine.paths.sudoers_file.exists() and machine.paths.nginx_site.exists() and machine.paths.identity.exists()

    ctx.run(getattr(ctx.on, event)(), everything)

    assert len(before) > 10
    assert charm_files(machine) == [str(machine.paths.log_file.relative_to(machine.root))]


def test_stop_withdraws_the_endpoint_and_forgets_the_urls(ctx, machine, everything, keystone):
    out = ctx.run(ctx.on.config_changed(), everything)
    registered = out.get_relation(keystone.id)
    assert registered.local_unit_data["public_url"] and registered.local_app_data

    out = ctx.run(ctx.on.stop(), testing.State(leader=True, relations=[registered]))

    relation = out.get_relation(keystone.id)
    assert {
        key: relation.local_unit_data.get(key, "") for key in ("service", "public_url", "admin_url")
    } == dict.fromkeys(("service", "public_url", "admin_url"), "")
    assert relation.local_app_data == {}


def test_identity_relation_broken_withdraws_what_was_asked_of_keystone(ctx, machine, fake_engine, keystone):
    fake_engine(metadata_url=METADATA_URL)
    out = ctx.run(ctx.on.config_changed(), testing.State(leader=True, relations=[keystone]))
    registered = out.get_relation(keystone.id)
    assert registered.local_unit_data["public_url"] == PRODUCT_STREAMS_URLS["public"]

    out = ctx.run(ctx.on.relation_broken(registered), testing.State(leader=True, relations=[registered]))

    relation = out.get_relation(keystone.id)
    assert relation.local_unit_data.get("public_url", "") == relation.local_unit_data.get("service", "") == ""
    assert relation.local_app_data == {}
    assert not machine.paths.identity.exists()
    assert out.unit_status == testing.BlockedStatus(
        "Missing relation: juju integrate glance-simplestreams-sync:identity-service keystone:identity-service"
    )
