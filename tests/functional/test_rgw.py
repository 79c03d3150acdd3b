"""The sync against a real Ceph RGW serving the Swift API (tests/localcloud/rgw.py) in place of Swift.

One RGW cloud for the module: the `cloud` fixture is overridden here, so `sync`, `glance` and the Swift
tests imported below run against it. Those are the tests that exercise the object store (publish,
anonymous reads, re-runs, the quick check, stale tokens, the object store down then back); the tests
written here cover where RGW answers differently from Swift (see docs/how-to/ceph-rgw.md).
"""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path
from urllib.parse import urlparse

import pytest
import requests

from simplestreams_sync.object_store import CONTAINER, PUBLIC_READ_ACL
from tests.functional.conftest import created_ids, our_images, published_image_ids, published_products

# The Swift tests that exercise the object store, collected here again to run against RGW.
from tests.functional.test_faults import test_swift_down_images_still_sync_and_next_run_publishes  # noqa: F401
from tests.functional.test_lifecycle import test_internal_endpoints  # noqa: F401
from tests.functional.test_metadata_readers import (  # noqa: F401
    test_a_changed_acl_that_still_lets_anyone_read_and_list_ends_at_the_quick_check,
    test_a_drifted_read_acl_is_repaired_and_readers_read_again,
    test_superseded_image_stays_until_metadata_without_it_is_published,
)
from tests.functional.test_network_spaces import (  # noqa: F401
    region,
    test_metadata_an_earlier_revision_published_with_the_internal_url_is_republished,
    test_publish_only_names_the_url_of_each_interface,
    test_the_charm_registers_each_interfaces_url_and_juju_finds_the_images,
    test_the_sync_uses_one_interface_and_publishes_for_all,
)
from tests.functional.test_quick_check import (  # noqa: F401
    test_metadata_deleted_in_swift_is_published_again,
    test_nothing_changed_stops_at_the_quick_check,
    test_the_record_holds_no_secret_and_only_the_sync_reads_it,
)
from tests.functional.test_sync import (  # noqa: F401
    test_metadata_in_swift_lists_exactly_the_active_images_and_is_public,
    test_second_sync_creates_nothing,
    test_sstream_query_reads_the_published_metadata,
)
from tests.localcloud.cloud import LocalCloud

pytestmark = pytest.mark.functional


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    with LocalCloud(tmp_path_factory.mktemp("rgw-cloud"), object_store="rgw") as rgw_cloud:
        yield rgw_cloud


def container_url(cloud) -> str:
    return f"{cloud.swift_url}/{CONTAINER}"


def object_url(cloud, path: str) -> str:
    return f"{container_url(cloud)}/data/streams/v1/{path}"


def sync_one_image(source, sync, seed: int, serial: str = "20210720"):
    source.add_image(serial=serial, seed=seed)
    source.write()
    result = sync.run([sync.mirror(source.url)])
    assert result.returncode == 0, result.stderr
    return result


def empty_and_delete_container(cloud) -> None:
    session = cloud.sync_session()
    listing = session.get(f"{container_url(cloud)}?format=json", raise_exc=False)
    if listing.status_code == 404:
        return
    for entry in listing.json():
        session.delete(f"{container_url(cloud)}/{entry['name']}")
    assert session.delete(container_url(cloud)).status_code == 204


def test_the_object_store_is_rgw_registered_as_the_ceph_radosgw_charm_does(cloud):
    session = cloud.sync_session()

    endpoint = session.get_endpoint(service_type="object-store", interface="public")
    created = session.put(f"{container_url(cloud)}-probe", raise_exc=False)
    stored = session.put(f"{container_url(cloud)}-probe/x", data=b"{}")

    assert endpoint == cloud.swift_url
    assert endpoint.endswith(f"/swift/v1/AUTH_{cloud.services_project_id}")
    assert created.status_code in (201, 202)
    assert "etag" in list(stored.headers)  # RGW's own spelling: Swift says "Etag"
    session.delete(f"{container_url(cloud)}-probe/x")
    session.delete(f"{container_url(cloud)}-probe")


def test_first_publish_makes_the_container_and_juju_reads_it_anonymously(source, sync, glance, cloud):
    empty_and_delete_container(cloud)
    missing = requests.get(object_url(cloud, "index.json"), timeout=10)

    sync_one_image(source, sync, seed=900)

    assert missing.status_code == 404  # RGW: 404 NoSuchBucket (Swift: 401) for a missing container
    index = requests.get(object_url(cloud, "index.json"), timeout=10).json()
    assert index["index"][sync.content_id]["path"] == f"streams/v1/{sync.content_id}.json"
    assert published_image_ids(published_products(cloud, sync.content_id)) == {
        i["id"] for i in our_images(glance, sync.content_id)
    }
    acl = cloud.sync_session().head(container_url(cloud)).headers.get("X-Container-Read")
    assert acl == PUBLIC_READ_ACL
    # The container URL without its trailing slash: RGW redirects to it with the slash, then lists.
    redirect = requests.get(container_url(cloud), allow_redirects=False, timeout=10)
    assert redirect.status_code == 301 and redirect.headers["Location"].endswith(f"/{CONTAINER}/")
    listing = requests.get(container_url(cloud), timeout=10).text.split()
    assert f"data/streams/v1/{sync.content_id}.json" in listing


def test_a_rerun_rewrites_nothing(source, sync, cloud):
    sync_one_image(source, sync, seed=901)
    session = cloud.sync_session()
    paths = ("index.json", f"{sync.content_id}.json")
    before = {path: session.head(object_url(cloud, path)).headers for path in paths}

    result = sync.run([sync.mirror(source.url)], "--full-check")

    assert result.returncode == 0, result.stderr
    assert "is up to date" in result.stdout
    after = {path: session.head(object_url(cloud, path)).headers for path in paths}
    for path in paths:  # X-Timestamp: the object's write time, to the microsecond
        assert (after[path]["etag"], after[path]["X-Timestamp"]) == (
            before[path]["etag"],
            before[path]["X-Timestamp"],
        ), f"{path} was rewritten"


def test_the_quick_check_records_and_compares_rgws_etags(source, sync, cloud):
    sync_one_image(source, sync, seed=902)
    recorded = json.loads((sync.state_dir / "unchanged.json").read_text())["swift_objects"]

    quick = sync.run([sync.mirror(source.url)])

    expected = {object_url(cloud, path): hashlib.md5(requests.get(object_url(cloud, path), timeout=10).content)
                .hexdigest() for path in ("index.json", f"{sync.content_id}.json")}  # fmt: skip
    assert recorded == expected  # RGW's lower-case `etag`, the objects' md5, one per metadata object
    assert quick.returncode == 0, quick.stderr
    assert "(quick check; --full-check redoes it all)" in quick.stdout


def test_metadata_shrinks_when_a_superseded_image_is_deleted(source, sync, glance, cloud):
    sync_one_image(source, sync, seed=903, serial="20210101")
    (old,) = our_images(glance, sync.content_id)

    result = sync_one_image(source, sync, seed=904, serial="20210201")

    (new,) = our_images(glance, sync.content_id)
    assert f"deleted {old['id']}" in result.stdout and created_ids(result.stdout) == [new["id"]]
    assert published_image_ids(published_products(cloud, sync.content_id)) == {new["id"]}


def test_a_container_whose_read_acl_was_removed_is_made_public_again(source, sync, glance, cloud):
    sync_one_image(source, sync, seed=905)
    session = cloud.sync_session()
    session.post(container_url(cloud), headers={"X-Container-Read": ""})
    assert requests.get(object_url(cloud, "index.json"), timeout=10).status_code in (401, 403)
    refused = session.put(container_url(cloud), headers={"X-Container-Read": PUBLIC_READ_ACL}, raise_exc=False)
    assert refused.status_code == 409 and "BucketAlreadyExists" in refused.text  # RGW, where Swift says 202
    source.add_image(serial="20210801", seed=906)
    source.write()
    try:
        result = sync.run([sync.mirror(source.url)])
        again = sync.run([sync.mirror(source.url)])
    finally:
        session.post(container_url(cloud), headers={"X-Container-Read": PUBLIC_READ_ACL})

    assert result.returncode == 0, result.stderr
    assert "repaired the read ACL of container simplestreams" in result.stdout
    assert requests.get(object_url(cloud, "index.json"), timeout=10).status_code == 200
    assert published_image_ids(published_products(cloud, sync.content_id)) == {
        i["id"] for i in our_images(glance, sync.content_id) if i["status"] == "active"
    }
    assert again.returncode == 0 and "unchanged since the sync of" in again.stdout


def test_an_acl_without_rlistings_still_lets_anyone_list_on_rgw_so_the_quick_check_holds(source, sync, cloud):
    sync_one_image(source, sync, seed=907)
    session = cloud.sync_session()
    session.post(container_url(cloud), headers={"X-Container-Read": ".r:*"})
    try:
        listing = requests.get(container_url(cloud) + "/?format=json", timeout=10)
        result = sync.run([sync.mirror(source.url)])
        acl = session.head(container_url(cloud)).headers.get("X-Container-Read")
    finally:
        session.post(container_url(cloud), headers={"X-Container-Read": PUBLIC_READ_ACL})

    assert listing.status_code == 200  # RGW, where Swift answers 401 (test_metadata_readers)
    assert result.returncode == 0, result.stderr
    assert "unchanged since the sync of" in result.stdout
    assert acl == ".r:*"


def test_stop_leaves_no_ceph_daemon_running(tmp_path):
    with LocalCloud(tmp_path / "own-rgw-cloud", object_store="rgw") as cloud:  # the module's cloud stays up
        groups = cloud.process_groups()
        assert {"ceph-mon", "ceph-osd", "rgw"} <= set(groups)

        cloud.stop()

        assert not [name for name, pid in groups.items() if Path(f"/proc/{pid}").exists()]
        assert not LocalCloud.kill_leftovers(cloud.workdir)
        rgw_port = urlparse(cloud.swift_url).port
        with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", rgw_port), timeout=2):
            pass
