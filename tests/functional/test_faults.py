"""Faults injected into the real local cloud and the source: the cloud is never left worse than before.

After each fault (and the recovery run where there is one) `assert_cloud_is_clean` checks: no image of
ours queued/saving/killed, no duplicate, no active image whose bytes differ from the source, and Swift
metadata listing exactly our active images.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from tests.functional.conftest import assert_cloud_is_clean, created_ids, our_images

pytestmark = pytest.mark.functional

EXIT_LOCKED = 3
MIB = 1 << 20


def image_path(item) -> str:
    return "/" + item.path


def hold(source, item, release: Path) -> None:
    """The source sends the first MiB of the item's file, then the rest once `release` exists."""
    source.server.set_faults({image_path(item): {"kind": "hold", "after": MIB, "until": str(release)}})


def wait_until_uploading(glance, content_id: str, timeout: float = 60.0) -> dict:
    """Our image once Glance has it in `saving`: the upload has reached Glance (a held one stays so)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        saving = [image for image in our_images(glance, content_id) if image["status"] == "saving"]
        if saving:
            return saving[0]
        time.sleep(0.1)
    raise AssertionError(f"no image of {content_id} reached Glance's saving state within {timeout}s")


def test_glance_killed_mid_upload_then_next_sync_completes(source, sync, glance, cloud, tmp_path):
    item = source.add_image(seed=100, size=8 * MIB)
    source.write()
    release = tmp_path / "release-upload"
    hold(source, item, release)
    running = sync.start([sync.mirror(source.url)])
    try:
        wait_until_uploading(glance, sync.content_id)
        cloud.stop_service("glance")
        release.touch()
        _, stderr = running.communicate(timeout=120)
    finally:
        release.touch()
        running.kill()
        cloud.start_service("glance")
    assert running.returncode == 1
    assert "failed auto-sync/" in stderr
    source.server.clear_faults()
    [left] = [image for image in our_images(glance, sync.content_id) if image["status"] == "saving"]
    # Until it has not been updated for longer than an upload in flight can be, it may be one (plan.py).
    cloud.set_image_updated_at(left["id"], datetime.now(timezone.utc) - timedelta(hours=1))

    recovery = sync.run([sync.mirror(source.url)])

    assert recovery.returncode == 0, recovery.stderr
    assert f"deleted {left['id']}: {left['name']} (left saving by an interrupted sync (not updated for" in (
        recovery.stdout
    )
    assert len(created_ids(recovery.stdout)) == 1
    assert_cloud_is_clean(glance, cloud, sync.content_id, source)


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "truncate", "after": 300_000},
        {"kind": "short", "bytes": 300_000},
        {"kind": "replace", "with": "OTHER"},
    ],
    ids=["closes-mid-image", "serves-fewer-bytes", "serves-different-bytes"],
)
def test_bad_bytes_from_the_source_leave_nothing_behind(source, sync, glance, cloud, fault):
    item = source.add_image(seed=101)
    other = source.add_image(release="jammy", version="22.04", serial="20240101", seed=102)
    source.write()
    if fault["kind"] == "replace":
        fault = {**fault, "with": str(source.builder.root / other.path)}
    source.server.set_faults({image_path(item): fault})

    result = sync.run([sync.mirror(source.url)])

    assert result.returncode == 1
    assert "failed auto-sync/ubuntu-focal" in result.stderr
    assert [i["version_name"] for i in our_images(glance, sync.content_id)] == ["20240101"]
    assert_cloud_is_clean(glance, cloud, sync.content_id, source)


def test_keystone_unreachable_is_a_clear_error(source, sync, glance, cloud):
    source.add_image(seed=103)
    source.write()
    with cloud.service_down("keystone"):
        result = sync.run([sync.mirror(source.url)])

    assert result.returncode == 1
    assert f"error: keystone {cloud.auth_url}: cannot connect" in result.stderr
    assert our_images(glance, sync.content_id) == []


def test_wrong_password_is_a_clear_error_and_not_printed(source, sync, glance, cloud, monkeypatch):
    source.add_image(seed=104)
    source.write()
    monkeypatch.setitem(cloud.sync_identity, "password", "wrong-password-123")

    result = sync.run([sync.mirror(source.url)])

    assert result.returncode == 1
    assert "authentication refused for user 'image-stream'" in result.stderr
    assert "wrong-password-123" not in result.stdout + result.stderr


def test_swift_down_images_still_sync_and_next_run_publishes(source, sync, glance, cloud):
    source.add_image(seed=105)
    source.write()
    with cloud.service_down(cloud.object_store_service, graceful=True):
        first = sync.run([sync.mirror(source.url)])

    assert first.returncode == 1
    assert len(created_ids(first.stdout)) == 1
    assert "error: metadata not published" in first.stderr and ": cannot connect" in first.stderr
    state = yaml.safe_load((sync.state_dir / "last-sync.json").read_text())
    assert state["published"] is False and state["errors"]

    second = sync.run([sync.mirror(source.url)])

    assert second.returncode == 0, second.stderr
    assert "published metadata for 1 images" in second.stdout
    assert_cloud_is_clean(glance, cloud, sync.content_id, source)


def test_two_syncs_at_once_one_runs_the_other_says_so(source, sync, glance, cloud, tmp_path):
    item = source.add_image(seed=106, size=4 * MIB)
    source.write()
    release = tmp_path / "release-upload"
    hold(source, item, release)
    first = sync.start([sync.mirror(source.url)])
    try:
        wait_until_uploading(glance, sync.content_id)  # the first holds the lock and cannot finish
        second = sync.run([sync.mirror(source.url)])
        release.touch()
        _first_out, first_err = first.communicate(timeout=120)
    finally:
        release.touch()
        first.kill()

    assert second.returncode == EXIT_LOCKED
    assert second.stdout == ""
    assert second.stderr == f"error: another sync is already running (pid {first.pid})\n"
    assert first.returncode == 0, first_err
    assert len(our_images(glance, sync.content_id)) == 1
    assert_cloud_is_clean(glance, cloud, sync.content_id, source)


def test_transient_source_errors_are_retried(source, sync, glance, cloud):
    item = source.add_image(seed=107)
    source.write()
    source.server.set_faults({image_path(item): {"kind": "status", "code": 503, "times": 2}})

    result = sync.run([sync.mirror(source.url)])

    assert result.returncode == 0, result.stderr
    assert "HTTP 503; retrying" in result.stderr
    image_requests = [r for r in source.server.wait_for_requests(5) if r["path"] == image_path(item)]
    assert [r["status"] for r in image_requests] == [503, 503, 200]
    assert_cloud_is_clean(glance, cloud, sync.content_id, source)


def test_permanent_source_errors_are_not_retried(source, sync, glance, cloud):
    item = source.add_image(seed=108)
    source.write()
    source.server.set_faults({image_path(item): {"kind": "status", "code": 404}})

    result = sync.run([sync.mirror(source.url)])

    assert result.returncode == 1
    assert "HTTP 404" in result.stderr
    image_requests = [r for r in source.server.wait_for_requests(3) if r["path"] == image_path(item)]
    assert [r["status"] for r in image_requests] == [404]
    assert our_images(glance, sync.content_id) == []
