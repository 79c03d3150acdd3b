"""The published metadata as its readers (Juju, anonymous) see it: readable, and naming only images
that are active in Glance."""

from __future__ import annotations

import pytest
import requests

from tests.functional.conftest import our_images, published_image_ids, published_products

pytestmark = pytest.mark.functional

QUICK = "(quick check; --full-check redoes it all)"
PUBLIC_READ_ACL = ".r:*,.rlistings"


def read_by_anyone(cloud, content_id: str) -> set[str]:
    """The image ids in the published metadata, read without a token, index first as Juju does."""
    index = requests.get(f"{cloud.swift_url}/simplestreams/data/streams/v1/index.json", timeout=10)
    index.raise_for_status()
    assert index.json()["index"][content_id]["path"] == f"streams/v1/{content_id}.json"
    return published_image_ids(published_products(cloud, content_id))


def assert_readers_see_only_active_images(glance, cloud, content_id: str) -> set[str]:
    published = read_by_anyone(cloud, content_id)
    status = {image["id"]: image["status"] for image in our_images(glance, content_id)}
    assert published and {image_id: status.get(image_id) for image_id in published} == \
        {image_id: "active" for image_id in published}
    return published


def container_read_acl(cloud) -> str:
    return cloud.sync_session().head(f"{cloud.swift_url}/simplestreams").headers.get("X-Container-Read", "")


@pytest.mark.parametrize("extra", [[], ["--full-check"]], ids=["quick-check-falls-through", "full-check"])
def test_a_drifted_read_acl_is_repaired_and_readers_read_again(source, sync, glance, cloud, extra):
    source.add_image(serial="20210101", seed=722 + len(extra))
    source.write()
    mirrors = [sync.mirror(source.url)]
    first = sync.run(mirrors)
    assert first.returncode == 0, first.stderr
    products_url = f"{cloud.swift_url}/simplestreams/data/streams/v1/{sync.content_id}.json"
    drift = cloud.sync_session().post(f"{cloud.swift_url}/simplestreams", headers={"X-Container-Read": ".r:example.com"})
    assert drift.status_code == 204
    assert requests.get(products_url, timeout=10).status_code == 401

    result = sync.run(mirrors, *extra)

    assert result.returncode == 0, result.stderr
    assert QUICK not in result.stdout
    assert "repaired the read ACL of container simplestreams: it was '.r:example.com', anonymous readers " \
           f"need '{PUBLIC_READ_ACL}'" in result.stdout
    assert container_read_acl(cloud) == PUBLIC_READ_ACL
    assert assert_readers_see_only_active_images(glance, cloud, sync.content_id) == \
        {image["id"] for image in our_images(glance, sync.content_id)}

    again = sync.run(mirrors)

    assert again.returncode == 0, again.stderr
    assert QUICK in again.stdout


def test_a_changed_acl_that_still_lets_anyone_read_means_a_full_check_and_no_repair(source, sync, cloud):
    source.add_image(serial="20210101", seed=724)
    source.write()
    mirrors = [sync.mirror(source.url)]
    assert sync.run(mirrors).returncode == 0
    container = f"{cloud.swift_url}/simplestreams"
    try:
        cloud.sync_session().post(container, headers={"X-Container-Read": ".rlistings,.r:*"})
        changed = container_read_acl(cloud)
        assert changed != PUBLIC_READ_ACL

        result = sync.run(mirrors)

        assert result.returncode == 0, result.stderr
        assert QUICK not in result.stdout and "repaired" not in result.stdout
        assert container_read_acl(cloud) == changed
        assert QUICK in sync.run(mirrors).stdout
    finally:
        cloud.sync_session().post(container, headers={"X-Container-Read": PUBLIC_READ_ACL})
