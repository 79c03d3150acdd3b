"""Two units of the packed charm, each on its own machine (tests/juju_agent), one model: leadership moves
from unit 0 to unit 1 while unit 0's cron sync has an upload in flight (held by the source). Unit 1 keeps
that upload and takes over; unit 0's cron lines sync nothing any more, its running sync stops at its next
safe point and rolls the upload back, and only the leader keeps the service password."""

from __future__ import annotations

import base64
import json
import time

import glanceclient
import pytest
import yaml

from tests.functional.conftest import keystone_answer, our_images, published_image_ids, published_products
from tests.functional.test_faults import MIB, hold, wait_until_uploading
from tests.functional.test_packed_charm import (
    CONFIG_DIR,
    CRON_FILE,
    LOG_FILE,
    STATE_DIR,
    base_python,
    wait_for_exit,
)
from tests.juju_agent.agent import JujuMachine
from tests.localcloud.cloud import LocalCloud
from tests.localcloud.source_server import SourceServer

pytestmark = pytest.mark.functional

CONTENT_ID_TEMPLATE = "packed.leadership.{region}"
UNITS = ("glance-simplestreams-sync/0", "glance-simplestreams-sync/1")
NOT_LEADER = "the unit is no longer the leader"


@pytest.fixture
def machines(tmp_path, packed_charm):
    started = [
        JujuMachine(tmp_path / f"machine-{index}", packed_charm, unit, python3=base_python())
        for index, unit in enumerate(UNITS)
    ]
    for machine in started:
        machine.start()
    try:
        yield started
    finally:
        for machine in started:
            machine.stop()
    assert [machine.processes() for machine in started] == [[], []]


def deploy(machine: JujuMachine, cloud: LocalCloud, config: dict, leader: bool) -> int:
    """install, (leader-elected,) config-changed and keystone's relation with its answer; the relation id."""
    run = machine.hook("install")
    assert run.returncode == 0, run.output[-3000:]
    machine.set_leader(leader)
    if leader:
        assert machine.hook("leader-elected").returncode == 0
    machine.set_config(**config)
    assert machine.hook("config-changed").returncode == 0
    keystone = machine.add_relation("identity-service", "keystone")
    assert machine.relation_hook(keystone, "joined", "keystone/0").returncode == 0
    machine.set_remote_unit_data(keystone, "keystone/0", keystone_answer(cloud))
    run = machine.relation_hook(keystone, "changed", "keystone/0")
    assert run.returncode == 0, run.output[-3000:]
    return keystone


def background_sync_pid(machine: JujuMachine) -> int:
    return json.loads(machine.read_text(f"{STATE_DIR}/charm-first-sync.json"))["pid"]


@pytest.fixture
def unheld_source(source, tmp_path):
    """The same source through a second server, which holds nothing: unit 1 reads from it."""
    with SourceServer(source.builder.root, tmp_path / "source-server-1") as server:
        yield server


def test_leadership_moves_during_an_upload(machines, cloud, source, unheld_source, test_key, tmp_path):
    old, new = machines
    glance = glanceclient.Client("2", session=cloud.admin_session())
    region = cloud.sync_identity["region"]
    content_id = CONTENT_ID_TEMPLATE.format(region=region)
    source.add_image(release="noble", version="24.04", serial="20261101", seed=2410)
    source.write()
    mirror = {"url": source.url, "path": "streams/v1/index.sjson", "max": 2, "item_filters": ["release~(noble)"]}
    config = {
        "custom_keyring": base64.b64encode(test_key.keyring.read_bytes()).decode(),
        "region": region,
        "content_id_template": CONTENT_ID_TEMPLATE,
        "visibility": "private",
        "run": True,
    }

    other_mirror = {**mirror, "url": unheld_source.url}

    # unit 0 leads and syncs; unit 1 stands by with no password and no schedule
    deploy(old, cloud, {**config, "mirror_list": yaml.safe_dump([mirror])}, leader=True)
    wait_for_exit(background_sync_pid(old))
    (first,) = our_images(glance, content_id)
    keystone = deploy(new, cloud, {**config, "mirror_list": yaml.safe_dump([other_mirror])}, leader=False)
    assert new.unit_status == ("active", "Standby: only the leader unit syncs images")
    assert not new.exists(f"{CONFIG_DIR}/identity.yaml") and not new.exists(CRON_FILE)

    # unit 0's scheduled sync uploads a newer image, held by the source after its first MiB
    newer = source.add_image(release="noble", version="24.04", serial="20261102", seed=2411, size=4 * MIB)
    source.write()
    release = tmp_path / "release-upload"
    hold(source, newer, release)
    scheduled, _ = old.cron_jobs(CRON_FILE)
    running = old.start_cron_job(scheduled)
    try:
        in_flight = wait_until_uploading(glance, content_id)

        # leadership moves: unit 1 is elected and syncs at once; unit 0 hears nothing yet
        old.set_leader(False)
        new.set_leader(True)
        run = new.hook("leader-elected")
        assert run.returncode == 0, run.output[-3000:]
        assert new.exists(f"{CONFIG_DIR}/identity.yaml") and new.exists(CRON_FILE)
        assert new.local_unit_data(keystone)["public_url"] == f"{cloud.swift_url}/simplestreams/data"
        wait_for_exit(background_sync_pid(new))
        taken_over = json.loads(new.read_text(f"{STATE_DIR}/last-sync.json"))
        kept = {image["id"]: image["reason"] for image in taken_over["kept"]}
        assert kept[in_flight["id"]].startswith("saving, updated ")
        assert "possibly an upload in flight (another unit's sync)" in kept[in_flight["id"]]
        assert [image["name"] for image in taken_over["created"]] == [in_flight["name"]]
        assert taken_over["bytes_transferred"] == newer.size  # the image it adopted moved no bytes
        assert taken_over["deleted"] == [] and taken_over["published"]

        # unit 0's cron lines, run now, sync nothing; its running sync stops once its guard asks Juju
        log_before = old.read_text(LOG_FILE)
        assert old.run_cron_job(scheduled).returncode == 0
        skipped = old.read_text(LOG_FILE).removeprefix(log_before)
        assert skipped.split(" ", 1)[1] == f"{UNITS[0]}: scheduled sync skipped: Juju says the unit is not the leader\n"
        deadline = time.monotonic() + 240  # a bound on the guard's next question (every 60 s), not a measure
        while not old.exists(f"{STATE_DIR}/stop-request") and time.monotonic() < deadline:
            time.sleep(1)
        assert old.read_text(f"{STATE_DIR}/stop-request") == NOT_LEADER + "\n"
    finally:
        release.touch()
        running.wait(timeout=600)
    stopped = json.loads(old.read_text(f"{STATE_DIR}/last-sync.json"))
    assert (stopped["stopped"], stopped["published"], stopped["deleted"]) == (NOT_LEADER, False, [])
    assert f"rolled back {in_flight['name']}: the run was asked to stop" in old.read_text(LOG_FILE)

    # unit 0's next hook: no password and no schedule left on it
    assert old.hook("update-status").returncode == 0
    assert old.unit_status == ("active", "Standby: only the leader unit syncs images")
    assert not old.exists(f"{CONFIG_DIR}/identity.yaml") and not old.exists(CRON_FILE)

    # Glance holds the first image and unit 1's copy of the newer one, which the metadata names
    images = our_images(glance, content_id)
    assert sorted(image["status"] for image in images) == ["active", "active"]
    assert in_flight["id"] not in {image["id"] for image in images} and first["id"] in {i["id"] for i in images}
    assert published_image_ids(published_products(cloud, content_id)) == {image["id"] for image in images}
