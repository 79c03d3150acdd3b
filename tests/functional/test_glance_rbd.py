"""The sync against a Glance that stores images on Ceph RBD, as Charmed OpenStack's glance does when related
to ceph-mon (tests/localcloud: LocalCloud(glance_store="rbd"), show_image_direct_url on), where Cinder and
Nova make copy-on-write clones of an image's RBD snapshot (tests/localcloud/rbd_clones.py).

One cloud for the module, Swift as its object store (test_glance_rbd_rgw.py runs these tests again with
RGW, one Ceph cluster for both). Each test has its own content_id, so none depends on another's images or
order. After every run the published ids are checked to be active images.
"""

from __future__ import annotations

import io
import re
import shutil
from contextlib import contextmanager

import pytest

from tests.functional.conftest import created_ids, our_images, published_image_ids, published_products
from tests.functional.test_quick_check import test_nothing_changed_stops_at_the_quick_check  # noqa: F401
from tests.localcloud import rbd_clones
from tests.localcloud.cloud import LocalCloud
from tests.localcloud.proxy import HttpProxy

pytestmark = [
    pytest.mark.functional,
    pytest.mark.skipif(not shutil.which("qemu-img"), reason="qemu-img not installed (Debian qemu-utils)"),
]

MIB = 1 << 20
IMPORT_TIMEOUT = 120
RESIZE_WARNING = "Since image size is zero we will be doing resize-before-write"


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    # image_conversion: the import plugin, for imports only; uploads are stored as sent.
    with LocalCloud(tmp_path_factory.mktemp("rbd-cloud"), glance_store="rbd", image_conversion=True) as rbd_cloud:
        yield rbd_cloud


def run_sync(sync, source, glance, cloud, *extra: str, expect: int = 0):
    result = sync.run([sync.mirror(source.url)], *extra)
    assert result.returncode == expect, result.stdout + result.stderr
    assert_published_ids_are_active(glance, cloud, sync.content_id)
    return result


def assert_published_ids_are_active(glance, cloud, content_id: str) -> None:
    """The invariant readers of the metadata rely on: every id it names is an active image."""
    published = published_image_ids(published_products(cloud, content_id))
    statuses = {image["id"]: image["status"] for image in our_images(glance, content_id)}
    assert {image_id: statuses.get(image_id) for image_id in published} == dict.fromkeys(published, "active")


def glance_log_since(cloud, offset: int) -> str:
    return (cloud.logs / "glance.log").read_bytes()[offset:].decode(errors="replace")


def glance_log_size(cloud) -> int:
    return (cloud.logs / "glance.log").stat().st_size


def fsid(cloud) -> str:
    return re.search(r"^fsid = (\S+)$", cloud.ceph_conf.read_text(), flags=re.M).group(1)


# -- the upload path ---------------------------------------------------------------------------------


def test_a_sync_stores_each_image_in_rbd_with_its_snapshot_and_direct_url(source, sync, glance, cloud):
    item = source.add_image(seed=1700, size=3 * MIB)
    source.write()
    log_start = glance_log_size(cloud)

    result = run_sync(sync, source, glance, cloud)

    (image,) = our_images(glance, sync.content_id)
    assert created_ids(result.stdout) == [image["id"]]
    assert (image["status"], image["disk_format"], image["size"]) == ("active", "qcow2", item.size)
    assert image["verified_source_hash"] == f"sha256:{item.sha256}"
    assert image["direct_url"] == f"rbd://{fsid(cloud)}/images/{image['id']}/snap"
    assert image["id"] in rbd_clones.rbd_images(cloud)
    assert [(s["name"], s["protected"]) for s in rbd_clones.snapshots(cloud, image["id"])] == [("snap", "true")]
    assert published_image_ids(published_products(cloud, sync.content_id)) == {image["id"]}
    # The upload carried its size: glance_store made the RBD image at that size, not growing as bytes came.
    assert RESIZE_WARNING not in glance_log_since(cloud, log_start)


def test_an_upload_without_its_size_is_resized_as_it_arrives(glance, cloud):
    """What the sync's uploads avoid, seen here so that the check above can fail."""
    log_start = glance_log_size(cloud)
    image = glance.images.create(name="rbd-no-size", disk_format="raw", container_format="bare")
    try:
        glance.images.upload(image.id, io.BytesIO(bytes(MIB)))

        assert RESIZE_WARNING in glance_log_since(cloud, log_start)
    finally:
        glance.images.delete(image.id)


@pytest.mark.parametrize("sent", ["fewer", "more"])
def test_a_source_sending_another_byte_count_than_the_size_sent_leaves_no_image(source, sync, glance, cloud, sent):
    """The upload announced the source's size; the stream fails before Glance has it all: Glance keeps
    nothing, nor does RBD."""
    item = source.add_image(seed=1701, size=2 * MIB)
    larger = source.add_image(release="jammy", version="22.04", seed=1702, size=3 * MIB)
    source.builder.remove_version(larger.product_id, larger.serial)  # its file only, served in the item's place
    source.write()
    fault = (
        {"kind": "short", "bytes": MIB}
        if sent == "fewer"
        else {"kind": "replace", "with": str(source.builder.root / larger.path)}
    )
    source.server.set_faults({"/" + item.path: fault})
    rbd_before = rbd_clones.rbd_images(cloud)

    result = sync.run([sync.mirror(source.url)])

    assert result.returncode == 1
    expected = (
        f"got {MIB} bytes, the source lists {item.size}"
        if sent == "fewer"
        else f"source sent more than the {item.size} bytes its metadata lists"
    )
    assert expected in result.stderr
    assert our_images(glance, sync.content_id) == []
    assert rbd_clones.rbd_images(cloud) == rbd_before


# -- conversion ----------------------------------------------------------------------------------------


def test_import_conversion_stores_raw_in_rbd_which_clones_copy_on_write(source, sync, glance, cloud):
    item = source.add_image(seed=1702, size=4 * MIB)
    source.write()
    sync.settings = {"image_import_conversion": True, "import_timeout": IMPORT_TIMEOUT}

    run_sync(sync, source, glance, cloud)

    (image,) = our_images(glance, sync.content_id)
    assert (image["status"], image["disk_format"], image["size"]) == ("active", "raw", 4 * MIB)
    assert image["verified_source_hash"] == f"sha256:{item.sha256}"
    assert image["direct_url"] == f"rbd://{fsid(cloud)}/images/{image['id']}/snap"
    clone = rbd_clones.clone_image(cloud, image["id"], f"conv-{image['id'][:8]}")
    try:
        assert rbd_clones.children(cloud, image["id"]) == [clone.name]
    finally:
        clone.remove()


# -- fewer requests, retried when the connection drops ---------------------------------------------------


@contextmanager
def glance_behind_proxy(cloud, tmp_path, resets: dict[str, int] | None = None):
    """A logging (and, with `resets`, connection-dropping) proxy in front of Glance, in the catalog for the block."""
    glance_port = cloud.glance_url.rsplit(":", 1)[1]
    proxy = HttpProxy(tmp_path / "proxy", upstream=f"127.0.0.1:{glance_port}", resets=resets)
    with proxy, cloud.image_endpoints_at(proxy.url):
        yield proxy


def glance_requests(proxy: HttpProxy) -> list[tuple[str, str, int | str]]:
    """(method, path without query, status) of each request the proxy passed to Glance or dropped."""
    return [(r["method"], r["url"].split("?")[0], r["status"]) for r in proxy.requests()]


def test_each_new_image_costs_three_glance_requests(source, sync, glance, cloud, tmp_path):
    """Create (marked verified with the digests the bytes must have), upload, read back what Glance
    stored: nothing more per image (the run's own listings come on top)."""
    items = [
        source.add_image(release=release, version=version, seed=seed)
        for seed, release, version in ((1710, "focal", "20.04"), (1711, "jammy", "22.04"), (1712, "noble", "24.04"))
    ]
    source.write()
    with glance_behind_proxy(cloud, tmp_path) as proxy:
        result = run_sync(sync, source, glance, cloud)
        images = our_images(glance, sync.content_id)  # through the proxy, as the client's catalog says

    ids = created_ids(result.stdout)
    assert len(ids) == 3
    seen = glance_requests(proxy)
    for image_id in ids:
        per_image = [(method, status) for method, path, status in seen if image_id in path]
        assert per_image == [("PUT", 204), ("GET", 200)], image_id
    assert [(m, p, s) for m, p, s in seen if m == "POST"] == [("POST", "/v2/images", 201)] * 3
    assert {i["verified_source_hash"] for i in images} == {f"sha256:{item.sha256}" for item in items}
    assert {i["verified_stored_hash"] for i in images} == {f"md5:{item.md5}" for item in items}
    assert [i["verified_stored_hash"] for i in images] == [f"md5:{i['checksum']}" for i in images]


@pytest.mark.parametrize("method", ["DELETE", "GET"])
def test_a_dropped_connection_to_glance_is_retried(source, sync, glance, cloud, tmp_path, method):
    """The proxy in front of Glance resets the connection of the first DELETE (of the superseded image)
    or GET (reading back what Glance stored of the new one) after reading it; the sync tries again and
    succeeds."""
    source.add_image(serial="20210101", seed=1720)
    source.write()
    run_sync(sync, source, glance, cloud)
    (old,) = our_images(glance, sync.content_id)
    source.add_image(serial="20210201", seed=1721)
    source.write()

    resets = {"DELETE": 1} if method == "DELETE" else {"GET /v2/images/*": 1}  # not the listing: /v2/images
    with glance_behind_proxy(cloud, tmp_path, resets=resets) as proxy:
        result = run_sync(sync, source, glance, cloud)

    (new,) = our_images(glance, sync.content_id)
    assert new["version_name"] == "20210201"
    assert new["verified_source_hash"]
    assert f"deleted {old['id']}: " in result.stdout
    assert "failed (CommunicationError); retrying in 0.5s" in result.stderr
    image_id = old["id"] if method == "DELETE" else new["id"]
    dropped_then_retried = [s for m, p, s in glance_requests(proxy) if m == method and p == f"/v2/images/{image_id}"]
    assert dropped_then_retried[:2] == ["reset", 204 if method == "DELETE" else 200]


# -- retention: superseded images that Cinder/Nova-style clones still use ------------------------------

KEPT_IN_STORE = "superseded; in use in the image store by volumes or disks cloned from it; hidden"
QUICK = "(quick check; --full-check redoes it all)"


def sync_a_newer_version(source, sync, glance, cloud, old_serial: str, new_serial: str, seed: int):
    source.add_image(serial=new_serial, seed=seed)
    source.write()
    result = run_sync(sync, source, glance, cloud)
    (new,) = [i for i in our_images(glance, sync.content_id) if i["version_name"] == new_serial]
    assert created_ids(result.stdout) == [new["id"]]
    return result, new


@pytest.mark.parametrize("conversion", [False, True], ids=["uploaded", "imported-as-raw"])
def test_a_superseded_image_with_a_format_1_clone_is_kept_hidden_then_deleted_once_the_clone_is_gone(
    source, sync, glance, cloud, conversion
):
    if conversion:
        sync.settings = {"image_import_conversion": True, "import_timeout": IMPORT_TIMEOUT}
    source.add_image(serial="20210101", seed=1730 + conversion)
    source.write()
    run_sync(sync, source, glance, cloud)
    (old,) = our_images(glance, sync.content_id)
    clone = rbd_clones.clone_image(cloud, old["id"], f"f1-{old['id'][:8]}", clone_format=1)
    try:
        kept_line = f"kept {old['id']}: {old['name']} ({KEPT_IN_STORE})"

        result, new = sync_a_newer_version(source, sync, glance, cloud, "20210101", "20210201", seed=1732 + conversion)

        assert kept_line in result.stdout.splitlines()
        assert "sync finished: 1 created, 0 failed, 0 deleted, 0 errors" in result.stdout
        assert "glance: delete" not in result.stderr  # no retries spent on it
        still = glance.images.get(old["id"])
        assert (still["status"], still["os_hidden"]) == ("active", True)  # hidden, still bootable by id
        assert [i["id"] for i in glance.images.list(filters={"content_id": sync.content_id})] == [new["id"]]
        assert published_image_ids(published_products(cloud, sync.content_id)) == {new["id"]}
        assert rbd_clones.children(cloud, old["id"]) == [clone.name]

        again = run_sync(sync, source, glance, cloud)  # nothing new: not settled, so no quick check

        assert QUICK not in again.stdout
        assert kept_line in again.stdout.splitlines()
    finally:
        clone.remove()

    after = run_sync(sync, source, glance, cloud)

    assert f"deleted {old['id']}: {old['name']} (superseded by a newer version)" in after.stdout.splitlines()
    assert [i["id"] for i in our_images(glance, sync.content_id)] == [new["id"]]
    assert old["id"] not in rbd_clones.rbd_images(cloud)
    assert old["id"] not in rbd_clones.trash(cloud).values()


def test_a_superseded_image_with_a_format_2_clone_is_deleted_and_its_rbd_image_goes_to_the_trash(
    source, sync, glance, cloud
):
    source.add_image(serial="20210101", seed=1740)
    source.write()
    run_sync(sync, source, glance, cloud)
    (old,) = our_images(glance, sync.content_id)
    clone = rbd_clones.clone_image(cloud, old["id"], f"f2-{old['id'][:8]}", clone_format=2)
    try:
        result, new = sync_a_newer_version(source, sync, glance, cloud, "20210101", "20210201", seed=1741)

        # Glance answers 204: for the sync and for Glance the image is gone ...
        assert f"deleted {old['id']}: {old['name']} (superseded by a newer version)" in result.stdout.splitlines()
        assert "sync finished: 1 created, 0 failed, 1 deleted, 0 errors" in result.stdout
        assert [i["id"] for i in our_images(glance, sync.content_id)] == [new["id"]]
        # ... but glance_store moved the RBD image to the trash, where the clone still uses it.
        assert old["id"] not in rbd_clones.rbd_images(cloud)
        assert old["id"] in rbd_clones.trash(cloud).values()
        parent = clone.parent()  # (its snapshot, removed, lives on in RBD's trash namespace under a new name)
        assert (parent["image"], parent["trash"]) == (old["id"], True)
    finally:
        clone.remove()
    # The clone gone, the trashed image stays until an operator purges the trash.
    assert old["id"] in rbd_clones.trash(cloud).values()
    rbd_clones.purge_trash(cloud)
    assert old["id"] not in rbd_clones.trash(cloud).values()
