"""Two units' syncs against one Glance: an upload in flight on one unit is never deleted by the other's
run (the sync lock is per machine), the run asked to stop rolls its upload back and publishes nothing, and
an unfinished image nobody updates any more is deleted, with the reason named."""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from datetime import datetime, timedelta, timezone

import glanceclient
import pytest

from simplestreams_sync import in_flight as in_flight_module
from simplestreams_sync.config import load_identity, load_sync_config
from simplestreams_sync.engine import SyncRun
from tests.functional.conftest import SRC, SyncRunner, assert_cloud_is_clean, created_ids, our_images
from tests.functional.test_faults import MIB, hold, wait_until_uploading

pytestmark = pytest.mark.functional

STOP_REASON = "the unit is no longer the leader"
QUIET = "15 min"  # in_flight.quiet_limit without import conversion


def other_unit(sync: SyncRunner, tmp_path) -> SyncRunner:
    """The same sync (content id, source, cloud) on another machine: its own state dir, so its own lock."""
    runner = SyncRunner(tmp_path / "other-unit", sync.cloud, sync.keyring, sync.content_id_template)
    runner.workdir.mkdir()
    return runner


def test_an_upload_in_flight_on_another_unit_is_kept_and_the_stopped_run_rolls_it_back(
    source, sync, glance, cloud, tmp_path
):
    item = source.add_image(seed=2401, size=4 * MIB)
    source.write()
    release = tmp_path / "release-upload"
    hold(source, item, release)
    deposed = sync.start([sync.mirror(source.url)])
    new_leader = other_unit(sync, tmp_path)
    try:
        in_flight = wait_until_uploading(glance, sync.content_id)
        source.server.clear_faults()  # the held download stays held; the new leader's is not
        taken_over = new_leader.run([new_leader.mirror(source.url)])
        (sync.state_dir / "stop-request").write_text(STOP_REASON + "\n")
        deposed.send_signal(signal.SIGTERM)
        release.touch()
        stdout, stderr = deposed.communicate(timeout=120)
    finally:
        release.touch()
        deposed.kill()

    assert taken_over.returncode == 0, taken_over.stderr
    kept = rf"kept {in_flight['id']}: {re.escape(in_flight['name'])} \(saving, updated \d+ s ago: possibly an upload"
    kept += rf" in flight \(another unit's sync\), so not deleted until not updated for {QUIET}\)"
    assert re.search(kept, taken_over.stdout), taken_over.stdout
    assert f"deleted {in_flight['id']}" not in taken_over.stdout
    [new_image] = created_ids(taken_over.stdout)
    assert deposed.returncode == 1, stderr
    assert stdout.splitlines()[:-1] == [f"rolled back {in_flight['name']}: the run was asked to stop"]
    assert f"stopped at a safe point, publishing and deleting nothing more: {STOP_REASON}" in stderr
    result = json.loads((sync.state_dir / "last-sync.json").read_text())
    assert (result["stopped"], result["published"], result["deleted"], result["created"]) == (
        STOP_REASON,
        False,
        [],
        [],
    )
    assert [image["id"] for image in our_images(glance, sync.content_id)] == [new_image]
    assert_cloud_is_clean(glance, cloud, sync.content_id, source)


def test_an_unfinished_image_not_updated_for_longer_than_an_upload_in_flight_is_deleted(source, sync, glance, cloud):
    source.add_image(seed=2402)
    source.write()
    as_sync_user = glanceclient.Client("2", session=cloud.sync_session())
    left = as_sync_user.images.create(
        name="auto-sync/left-queued", disk_format="qcow2", container_format="bare", content_id=sync.content_id
    )
    recent = sync.run([sync.mirror(source.url)])
    cloud.set_image_updated_at(left["id"], datetime.now(timezone.utc) - timedelta(minutes=18))
    quiet_too_long = sync.run([sync.mirror(source.url)])

    assert recent.returncode == 0, recent.stderr
    kept = rf"kept {left['id']}: auto-sync/left-queued \(queued, updated \d+ s ago: possibly an upload in flight"
    assert re.search(kept, recent.stdout), recent.stdout
    assert quiet_too_long.returncode == 0, quiet_too_long.stderr
    deleted = re.search(
        rf"deleted {left['id']}: auto-sync/left-queued \(left queued by an interrupted sync \(not updated for "
        rf"(\d+) min; an upload in flight is updated at least every {QUIET}\)\)",
        quiet_too_long.stdout,
    )
    assert deleted is not None, quiet_too_long.stdout
    assert int(deleted.group(1)) >= 18
    assert [image["status"] for image in our_images(glance, sync.content_id)] == ["active"]


def test_an_upload_updates_its_image_while_the_bytes_flow(source, sync, glance, cloud, tmp_path, monkeypatch):
    item = source.add_image(seed=2403, size=2 * MIB)
    source.write()
    release = tmp_path / "release-upload"
    hold(source, item, release)
    monkeypatch.setattr(in_flight_module, "UPLOAD_BEAT", 0.0)  # a beat before every piece
    seen = []  # (status, beat property set) as Glance answers right after each beat
    beat = in_flight_module.beat

    def beat_and_look(store, image_id):
        beat(store, image_id)
        image = store.get(image_id)
        seen.append((image["status"], in_flight_module.BEAT_PROPERTY in image))

    monkeypatch.setattr(in_flight_module, "beat", beat_and_look)
    mirrors, identity = sync.write_files([sync.mirror(source.url)])
    run = SyncRun(load_sync_config(str(mirrors)), load_identity(str(identity)), out=lambda line: None)
    results = []
    uploading = threading.Thread(target=lambda: results.append(run.run()))
    uploading.start()
    try:
        in_flight = wait_until_uploading(glance, sync.content_id)  # what flows after the hold, flows into saving
    finally:
        release.touch()
        uploading.join(timeout=120)

    assert ("saving", True) in seen
    assert {status for status, beaten in seen if beaten} == {"saving"}  # never before Glance's queued -> saving
    [result] = results
    assert result.ok, result.errors + result.failed
    [stored] = our_images(glance, sync.content_id)
    assert (stored["id"], stored["status"]) == (in_flight["id"], "active")
    assert in_flight_module.BEAT_PROPERTY not in stored  # Glance's end of the upload drops it


def test_the_guard_stops_the_sync_of_a_unit_juju_no_longer_calls_the_leader(
    source, sync, glance, cloud, tmp_path, monkeypatch
):
    from sync_charm import leadership

    unit = "glance-simplestreams-sync/0"
    juju_bin = tmp_path / "juju-bin"
    juju_bin.mkdir()
    answer = juju_bin / "answer"
    answer.write_text("True\n")
    (juju_bin / "juju-exec").write_text(f"#!/bin/sh\ncat {answer}\n")
    (juju_bin / "juju-exec").chmod(0o755)
    monkeypatch.setenv("PATH", f"{juju_bin}:{os.environ['PATH']}")
    monkeypatch.setenv("PYTHONPATH", str(SRC))
    monkeypatch.setattr(leadership, "LEADER_POLL", 0.2)
    item = source.add_image(seed=2404, size=4 * MIB)
    source.write()
    release = tmp_path / "release-upload"
    hold(source, item, release)
    stop_request = sync.state_dir / "stop-request"
    codes = []
    guarded = threading.Thread(
        target=lambda: codes.append(
            leadership.run_while_leader(sync.command([sync.mirror(source.url)]), unit, sync.state_dir)
        )
    )
    guarded.start()
    try:
        in_flight = wait_until_uploading(glance, sync.content_id)
        answer.write_text("False\n")
        deadline = time.monotonic() + 60  # a bound on the guard's next question, not a measure
        while not stop_request.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        asked_to_stop = stop_request.read_text()
    finally:
        release.touch()
        guarded.join(timeout=120)

    assert asked_to_stop == STOP_REASON + "\n"
    assert codes == [1]
    assert not stop_request.exists()
    result = json.loads((sync.state_dir / "last-sync.json").read_text())
    assert (result["stopped"], result["published"], result["created"]) == (STOP_REASON, False, [])
    assert in_flight["id"] not in {image["id"] for image in our_images(glance, sync.content_id)}
