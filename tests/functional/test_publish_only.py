"""`--publish-only`: valid, empty metadata before the first sync, never a change to what a sync published."""

from __future__ import annotations

import pytest
import requests

from tests.functional.conftest import our_images, published_image_ids, published_products
from tests.localcloud.cloud import internal_url

pytestmark = pytest.mark.functional


def test_publish_only_publishes_an_empty_image_list_and_prints_its_urls(source, sync, cloud, glance):
    source.write()

    result = sync.run([sync.mirror(source.url)], "--publish-only")

    assert result.returncode == 0, result.stderr
    public, internal = f"{cloud.swift_url}/simplestreams/data", internal_url(f"{cloud.swift_url}/simplestreams/data")
    assert result.stdout.splitlines() == [
        f"metadata_url {public}",
        f"public_url {public}",
        f"internal_url {internal}",
        f"admin_url {public}",
    ]
    assert published_products(cloud, sync.content_id)["products"] == {}
    assert our_images(glance, sync.content_id) == []
    assert not (sync.state_dir / "last-sync.json").exists()


def test_publish_only_leaves_what_a_sync_published(source, sync, cloud):
    source.add_image(release="noble", version="24.04", serial="20261110", seed=210)
    source.write()
    mirrors = [sync.mirror(source.url)]
    assert sync.run(mirrors).returncode == 0
    published = published_products(cloud, sync.content_id)

    result = sync.run(mirrors, "--publish-only")

    assert result.returncode == 0, result.stderr
    assert f"already lists {sync.content_id}: left as it is" in result.stderr
    assert published_products(cloud, sync.content_id) == published
    assert len(published_image_ids(published)) == 1


def test_publish_only_without_an_object_store_says_why(source, sync):
    source.write()
    sync.settings = {"use_swift": False}

    result = sync.run([sync.mirror(source.url)], "--publish-only")

    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == f"error: use_swift is false in {sync.workdir / 'mirrors.yaml'}: no metadata is published\n"


def test_publish_only_with_keystone_down_fails_saying_why(source, sync, cloud):
    source.write()

    with cloud.service_down("keystone"):
        result = sync.run([sync.mirror(source.url)], "--publish-only")

    assert (result.returncode, result.stdout) == (1, "")
    assert "error: metadata not published: keystone " in result.stderr
    assert "cannot connect" in result.stderr


def test_publish_only_while_a_sync_runs_exits_3_and_publishes_nothing(source, sync, cloud, glance, tmp_path):
    item = source.add_image(release="noble", version="24.04", serial="20261110", seed=211)
    source.write()
    mirrors = [sync.mirror(source.url)]
    release = tmp_path / "release-upload"
    source.server.set_faults({"/" + item.path: {"kind": "hold", "after": 64 * 1024, "until": str(release)}})
    running = sync.start(mirrors)
    try:
        sync.wait_for_progress(lambda progress: progress.get("phase") == "uploading")  # under the lock
        result = sync.run(mirrors, "--publish-only")
        with pytest.raises(requests.HTTPError):
            published_products(cloud, sync.content_id)  # nothing published while the sync runs
        release.touch()
        _, sync_err = running.communicate(timeout=300)
    finally:
        release.touch()
        running.kill()

    assert (result.returncode, result.stdout) == (3, "")
    assert result.stderr == f"error: another sync is already running (pid {running.pid})\n"
    assert running.returncode == 0, sync_err
    assert len(published_image_ids(published_products(cloud, sync.content_id))) == 1
