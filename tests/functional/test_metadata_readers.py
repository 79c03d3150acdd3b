"""The published metadata as its readers (Juju, anonymous) see it: readable, and naming only images
that are active in Glance, whatever happens to the object store between upload and publish."""

from __future__ import annotations

import json

import pytest
import requests

from tests.functional.conftest import (
    QUICK,
    assert_full_run,
    created_ids,
    our_images,
    published_image_ids,
    published_products,
)

pytestmark = pytest.mark.functional
PUBLIC_READ_ACL = ".r:*,.rlistings"
HELD_BYTES = 64 * 1024  # what the source sends of a held image before the test lets the rest go


def read_by_anyone(cloud, content_id: str) -> set[str]:
    """The image ids in the published metadata, read without a token, index first as Juju does."""
    index = requests.get(f"{cloud.swift_url}/simplestreams/data/streams/v1/index.json", timeout=10)
    index.raise_for_status()
    assert index.json()["index"][content_id]["path"] == f"streams/v1/{content_id}.json"
    return published_image_ids(published_products(cloud, content_id))


def assert_readers_see_only_active_images(glance, cloud, content_id: str) -> set[str]:
    published = read_by_anyone(cloud, content_id)
    status = {image["id"]: image["status"] for image in our_images(glance, content_id)}
    assert published and {image_id: status.get(image_id) for image_id in published} == dict.fromkeys(
        published, "active"
    )
    return published


def container_read_acl(cloud) -> str:
    return cloud.sync_session().head(f"{cloud.swift_url}/simplestreams").headers.get("X-Container-Read", "")


def test_superseded_image_stays_until_metadata_without_it_is_published(source, sync, glance, cloud, tmp_path):
    source.add_image(serial="20210101", seed=720)
    source.write()
    mirrors = [sync.mirror(source.url)]
    first = sync.run(mirrors)
    assert first.returncode == 0, first.stderr
    old_id = created_ids(first.stdout)[0]
    assert assert_readers_see_only_active_images(glance, cloud, sync.content_id) == {old_id}

    newer = source.add_image(serial="20210201", seed=721)
    source.write()
    release = tmp_path / "release-upload"
    source.server.set_faults({"/" + newer.path: {"kind": "hold", "after": HELD_BYTES, "until": str(release)}})
    running = sync.start(mirrors)
    try:
        sync.wait_for_progress(lambda progress: progress.get("phase") == "uploading")
        # the upload cannot end before the release: this is before publish
        cloud.stop_service(cloud.object_store_service)
        release.touch()
        stdout, stderr = running.communicate(timeout=300)
    finally:
        release.touch()
        running.kill()
        cloud.start_service(cloud.object_store_service)

    assert running.returncode == 1
    new_id = created_ids(stdout)[0]
    assert (
        f"kept {old_id}: auto-sync/ubuntu-focal-20.04-amd64-server-20210101-disk1.img "
        "(superseded, kept until metadata without it is published)" in stdout
    )
    assert f"deleted {old_id}" not in stdout
    assert (
        f"error: metadata not published: object store: cannot connect to {cloud.swift_url}/simplestreams "
        "([Errno 111] Connection refused): check that the object store" in stderr
    )
    last = json.loads((sync.state_dir / "last-sync.json").read_text())
    assert [image["id"] for image in last["kept"]] == [old_id] and last["deleted"] == []
    assert assert_readers_see_only_active_images(glance, cloud, sync.content_id) == {old_id}

    source.server.clear_faults()
    recovery = sync.run(mirrors)

    assert recovery.returncode == 0, recovery.stderr
    assert QUICK not in recovery.stdout
    assert recovery.stdout.index("published metadata for 1 images") < recovery.stdout.index(f"deleted {old_id}")
    assert assert_readers_see_only_active_images(glance, cloud, sync.content_id) == {new_id}
    assert [image["id"] for image in our_images(glance, sync.content_id)] == [new_id]


def one_image_synced(source, sync, seed: int) -> list[dict]:
    """The mirrors of a source with one image, synced once."""
    source.add_image(serial="20210101", seed=seed)
    source.write()
    mirrors = [sync.mirror(source.url)]
    first = sync.run(mirrors)
    assert first.returncode == 0, first.stderr
    return mirrors


@pytest.mark.parametrize("extra", [[], ["--full-check"]], ids=["quick-check-falls-through", "full-check"])
def test_a_drifted_read_acl_is_repaired_and_readers_read_again(source, sync, glance, cloud, extra):
    mirrors = one_image_synced(source, sync, seed=722 + len(extra))
    products_url = f"{cloud.swift_url}/simplestreams/data/streams/v1/{sync.content_id}.json"
    drift = cloud.sync_session().post(
        f"{cloud.swift_url}/simplestreams", headers={"X-Container-Read": ".r:example.com"}
    )
    assert drift.status_code == 204
    assert requests.get(products_url, timeout=10).status_code == 401

    result = sync.run(mirrors, *extra)

    assert result.returncode == 0, result.stderr
    assert_full_run(result, sync, images=1, published=False)
    assert (
        "repaired the read ACL of container simplestreams: it was '.r:example.com', anonymous readers "
        f"need '{PUBLIC_READ_ACL}'" in result.stdout
    )
    assert container_read_acl(cloud) == PUBLIC_READ_ACL
    assert assert_readers_see_only_active_images(glance, cloud, sync.content_id) == {
        image["id"] for image in our_images(glance, sync.content_id)
    }

    again = sync.run(mirrors)

    assert again.returncode == 0, again.stderr
    assert QUICK in again.stdout


def test_a_changed_acl_that_still_lets_anyone_read_and_list_ends_at_the_quick_check(source, sync, cloud):
    mirrors = one_image_synced(source, sync, seed=724)
    container = f"{cloud.swift_url}/simplestreams"
    try:
        cloud.sync_session().post(container, headers={"X-Container-Read": f"{PUBLIC_READ_ACL},.r:example.com"})
        changed = container_read_acl(cloud)
        assert changed != PUBLIC_READ_ACL

        result = sync.run(mirrors)

        assert result.returncode == 0, result.stderr
        assert QUICK in result.stdout
        assert container_read_acl(cloud) == changed
    finally:
        cloud.sync_session().post(container, headers={"X-Container-Read": PUBLIC_READ_ACL})


def test_an_acl_that_lets_anyone_read_but_not_list_is_repaired_after_the_quick_check(source, sync, cloud):
    mirrors = one_image_synced(source, sync, seed=726)
    container = f"{cloud.swift_url}/simplestreams"
    cloud.sync_session().post(container, headers={"X-Container-Read": ".r:*"})
    products_url = f"{container}/data/streams/v1/{sync.content_id}.json"
    assert requests.get(products_url, timeout=10).status_code == 200
    assert requests.head(container, timeout=10).status_code == 401

    result = sync.run(mirrors)

    assert result.returncode == 0, result.stderr
    assert_full_run(result, sync, images=1, published=False)
    assert (
        "repaired the read ACL of container simplestreams: it was '.r:*', anonymous readers "
        f"need '{PUBLIC_READ_ACL}'" in result.stdout
    )
    assert container_read_acl(cloud) == PUBLIC_READ_ACL
