"""Image lifecycle options against the real local cloud: retention, latest, hypervisor mapping,
image modifiers, proxies, internal endpoints."""

from __future__ import annotations

import hashlib
import json
from urllib.parse import urlparse

import pytest
import requests
from simplestreams import util

from tests.functional.conftest import (
    created_ids,
    our_images,
    published_image_ids,
    published_products,
    visible_images,
)
from tests.localcloud.proxy import HttpProxy

pytestmark = pytest.mark.functional

FOCAL = "com.ubuntu.cloud:server:20.04:amd64"


def sync_two_versions(source, sync, glance, **mirror_fields) -> dict:
    """Sync serial 20210101, then add 20210201 to the source; returns the first image."""
    source.add_image(serial="20210101", seed=300)
    source.write()
    first = sync.run([sync.mirror(source.url, **mirror_fields)])
    assert first.returncode == 0, first.stderr
    old = our_images(glance, sync.content_id)[0]
    source.add_image(serial="20210201", seed=301)
    source.write()
    return old


# -- retention ------------------------------------------------------------------------------------


def test_protected_superseded_image_is_kept_and_said_so(source, sync, glance):
    old = sync_two_versions(source, sync, glance)
    glance.images.update(old["id"], protected=True)
    try:
        result = sync.run([sync.mirror(source.url)])
    finally:
        glance.images.update(old["id"], protected=False)

    assert result.returncode == 0, result.stderr
    assert f"kept {old['id']}: {old['name']} (superseded but protected)" in result.stdout
    assert sorted(i["version_name"] for i in our_images(glance, sync.content_id)) == ["20210101", "20210201"]


def test_superseded_image_in_use_by_a_server_is_kept(source, sync, glance, nova):
    old = sync_two_versions(source, sync, glance)
    nova.max_limit = 1  # one server a page: the server that uses the image is on the third
    nova.servers = [
        {"id": "vm-1", "image": {"id": "some-other-image"}},
        {"id": "vm-2", "image": ""},  # booted from a volume
        {"id": "vm-3", "image": {"id": old["id"]}},
    ]

    result = sync.run([sync.mirror(source.url)])

    assert result.returncode == 0, result.stderr
    assert f"kept {old['id']}: {old['name']} (superseded but in use by a server; hidden)" in result.stdout.splitlines()
    assert nova.listings == 1  # asked once per run
    assert nova.answers == [200, 200, 200, 200]  # three full pages, then an empty one
    assert all("all_tenants=1" in path for path in nova.requests_seen)
    assert len(our_images(glance, sync.content_id)) == 2


def test_superseded_image_in_use_is_hidden_active_and_unpublished(source, sync, glance, nova, cloud):
    """Kept only because a server uses it: hidden from image lists, still active (bootable by id, as Nova
    needs), out of the metadata; the next run still finds it (hidden) and Nova's answer keeps it."""
    old = sync_two_versions(source, sync, glance)
    nova.servers = [{"id": "vm-1", "image": {"id": old["id"]}}]
    kept = f"kept {old['id']}: {old['name']} (superseded but in use by a server; hidden)"

    first = sync.run([sync.mirror(source.url)])
    hidden = glance.images.get(old["id"])
    again = sync.run([sync.mirror(source.url)])
    nova.servers = []
    unused = sync.run([sync.mirror(source.url)])

    assert first.returncode == again.returncode == unused.returncode == 0
    assert (hidden["status"], hidden["os_hidden"], hidden["hidden_by_sync"]) == ("active", True, "true")
    assert old["id"] not in {image["id"] for image in visible_images(glance, sync.content_id)}
    assert old["id"] not in published_image_ids(published_products(cloud, sync.content_id))
    assert kept in first.stdout.splitlines() and kept in again.stdout.splitlines()
    assert f"deleted {old['id']}: {old['name']} (superseded by a newer version)" in unused.stdout.splitlines()
    assert old["id"] not in {image["id"] for image in our_images(glance, sync.content_id)}


def test_the_recorded_nova_checks_tokens_and_projects_as_nova_does(cloud, nova):
    nova.servers = [{"id": "vm-1", "image": {"id": "an-image"}}]
    session = cloud.sync_session()
    servers = session.get_endpoint(service_type="compute", interface="public") + "/servers/detail"

    assert requests.get(servers, timeout=10).status_code == 401
    assert requests.get(servers, headers={"X-Auth-Token": "not-a-token"}, timeout=10).status_code == 401
    assert session.get(servers).json()["servers"] == []  # the servers are another project's
    listed = session.get(f"{servers}?all_tenants=1").json()["servers"]
    assert [server["id"] for server in listed] == ["vm-1"]
    assert nova.listings == 4


def test_superseded_image_not_in_use_is_deleted_when_nova_says_so(source, sync, glance, nova):
    old = sync_two_versions(source, sync, glance)
    nova.servers = [{"id": "vm-1", "image": {"id": "some-other-image"}}]

    result = sync.run([sync.mirror(source.url)])

    assert result.returncode == 0, result.stderr
    assert f"deleted {old['id']}: {old['name']} (superseded by a newer version)" in result.stdout.splitlines()
    assert (nova.listings, nova.answers) == (1, [200])
    assert [i["version_name"] for i in our_images(glance, sync.content_id)] == ["20210201"]


def test_product_dropped_from_the_filters_is_listed_not_deleted(source, sync, glance):
    source.add_image(release="focal", version="20.04", seed=310)
    source.add_image(release="jammy", version="22.04", serial="20240101", seed=311)
    source.write()
    assert sync.run([sync.mirror(source.url)]).returncode == 0
    focal = next(i for i in our_images(glance, sync.content_id) if i["product_name"] == FOCAL)

    narrowed = sync.mirror(source.url, item_filters=["release=jammy", "ftype=disk1.img"])
    dry = sync.run([narrowed], "--dry-run")
    result = sync.run([narrowed])

    reason = "its product is no longer selected by any mirror's filters; not deleted"
    assert f"kept {focal['id']}: {focal['name']} ({reason})" in dry.stdout
    assert f"kept {focal['id']}: {focal['name']} ({reason})" in result.stdout
    assert len(our_images(glance, sync.content_id)) == 2


# -- latest, hypervisor mapping -------------------------------------------------------------------


def test_latest_property_marks_only_the_newest_per_release_and_arch(source, sync, glance):
    sync.settings = {"set_latest_property": True}
    sync_two_versions(source, sync, glance, max=2)

    result = sync.run([sync.mirror(source.url, max=2)])

    assert result.returncode == 0, result.stderr
    flags = {i["version_name"]: i.get("latest") for i in our_images(glance, sync.content_id)}
    assert flags == {"20210201": "true", "20210101": None}


def test_a_property_removal_whose_answer_is_lost_is_retried_and_found_done(source, sync, glance, cloud, tmp_path):
    """The proxy in front of Glance forwards the PATCH that takes `latest` off the older image, then
    resets the connection before its answer arrives: the retry gets 409 (nothing left to remove), the
    image as Glance has it shows the property gone, and the run counts that as done."""
    sync.settings = {"set_latest_property": True}
    old = sync_two_versions(source, sync, glance, max=2)
    assert old.get("latest") == "true"
    glance_port = cloud.glance_url.rsplit(":", 1)[1]
    old_path = f"/v2/images/{old['id']}"
    proxy = HttpProxy(tmp_path / "proxy", upstream=f"127.0.0.1:{glance_port}", resets_after={f"PATCH {old_path}": 1})

    with proxy, cloud.image_endpoints_at(proxy.url):
        result = sync.run([sync.mirror(source.url, max=2)])

    assert result.returncode == 0, result.stderr
    assert "sync finished: 1 created, 0 failed, 0 deleted, 0 errors" in result.stdout
    assert [(r["method"], r["status"]) for r in proxy.requests() if r["url"] == old_path] == [
        ("PATCH", "reset after 200"),
        ("PATCH", 409),
        ("GET", 200),
    ]
    flags = {i["version_name"]: i.get("latest") for i in our_images(glance, sync.content_id)}
    assert flags == {"20210201": "true", "20210101": None}


def test_latest_property_is_scoped_to_each_source(source, sync, glance, tmp_path, test_key):
    from tests.localcloud.source import SourceBuilder

    sync.settings = {"set_latest_property": True}
    source.add_image(serial="20210101", seed=320)
    source.write()
    daily = SourceBuilder(
        tmp_path / "daily",
        test_key,
        content_id="com.ubuntu.cloud:daily:download",
        product_prefix="com.ubuntu.cloud.daily:server",
    )
    daily.add_image(serial="20210301", seed=321)
    daily.write()

    result = sync.run([sync.mirror(source.url), sync.mirror((tmp_path / "daily").as_uri(), image_name_prefix="daily/")])

    assert result.returncode == 0, result.stderr
    assert {i["name"].split("/")[0]: i.get("latest") for i in our_images(glance, sync.content_id)} == {
        "auto-sync": "true",
        "daily": "true",
    }


def test_hypervisor_mapping_sets_hypervisor_type_and_virt(source, sync, glance, cloud):
    sync.settings = {"hypervisor_mapping": True}
    source.add_image(seed=330)
    source.write()

    result = sync.run([sync.mirror(source.url)])

    assert result.returncode == 0, result.stderr
    (image,) = our_images(glance, sync.content_id)
    assert image["hypervisor_type"] == "qemu"
    products = published_products(cloud, sync.content_id)
    item = util.products_exdata(products, (FOCAL, "20210720", "disk1.img"))
    assert item["virt"] == "kvm" and item["id"] == image["id"]


# -- image modifier -------------------------------------------------------------------------------

MODIFIER = """#!/bin/sh
# A real image-modifier: recompress the qcow2 (new bytes, still a valid image) and note what it saw.
set -e
qemu-img convert -c -O qcow2 "$IMAGE_PATH" "$IMAGE_PATH.new"
mv "$IMAGE_PATH.new" "$IMAGE_PATH"
echo "$version_name $item_name" >> "{log}"
"""


def test_image_modifier_script_changes_the_bytes_uploaded(source, sync, glance, cloud, tmp_path):
    item = source.add_image(seed=340, size=4 << 20)
    source.write()
    log = tmp_path / "modifier.log"
    script = tmp_path / "modify.sh"
    script.write_text(MODIFIER.replace("{log}", str(log)))
    script.chmod(0o755)
    sync.settings = {"modify_hook": str(script)}

    result = sync.run([sync.mirror(source.url)])

    assert result.returncode == 0, result.stderr
    assert log.read_text() == "20210720 disk1.img\n"
    (image,) = our_images(glance, sync.content_id)
    original = (source.builder.root / item.path).read_bytes()
    assert image["os_hash_value"] != hashlib.sha512(original).hexdigest()
    stored = b"".join(glance.images.data(image["id"]))
    assert image["size"] == len(stored) != len(original)
    assert json.loads(image["simplestreams_metadata"])["sha256"] == hashlib.sha256(stored).hexdigest()


def test_failing_image_modifier_leaves_nothing(source, sync, glance, tmp_path):
    source.add_image(seed=341)
    source.write()
    script = tmp_path / "fail.sh"
    script.write_text("#!/bin/sh\necho 'cannot modify this image' >&2\nexit 3\n")
    script.chmod(0o755)
    sync.settings = {"modify_hook": str(script)}

    result = sync.run([sync.mirror(source.url)])

    assert result.returncode == 1
    assert f"image-modifier script {script} exited 3: cannot modify this image" in result.stderr
    assert our_images(glance, sync.content_id) == []


# -- proxies, endpoints ---------------------------------------------------------------------------


def hosts(requests: list[dict]) -> set[str]:
    return {urlparse(r["url"]).netloc for r in requests}


def test_proxy_is_used_for_the_source_only(source, sync, cloud, tmp_path):
    source.add_image(seed=350)
    source.write()
    with HttpProxy(tmp_path / "proxy") as proxy:
        sync.settings = {"source_proxy": {"http": proxy.url, "https": proxy.url}}
        result = sync.run([sync.mirror(source.url)])
        seen = proxy.requests()

    assert result.returncode == 0, result.stderr
    assert hosts(seen) == {urlparse(source.url).netloc}
    assert any(r["url"].endswith(".img") for r in seen)


def test_object_store_through_the_proxy_when_asked(source, sync, cloud, tmp_path):
    source.add_image(seed=351)
    source.write()
    with HttpProxy(tmp_path / "proxy") as proxy:
        sync.settings = {"source_proxy": {"http": proxy.url}, "ignore_proxy_for_object_store": False}
        result = sync.run([sync.mirror(source.url)])
        seen = proxy.requests()

    assert result.returncode == 0, result.stderr
    assert hosts(seen) == {urlparse(source.url).netloc, urlparse(cloud.swift_url).netloc}


def test_internal_endpoints(source, sync, glance, cloud):
    source.add_image(seed=352)
    source.write()
    identity = {**cloud.sync_identity, "interface": "internal"}
    sync.identity_override = identity

    result = sync.run([sync.mirror(source.url)])

    assert result.returncode == 0, result.stderr
    assert len(created_ids(result.stdout)) == 1
    internal_swift = cloud.swift_url.replace("://127.0.0.1:", "://localhost:")  # LocalCloud's internal URLs
    assert f"published metadata for 1 images to {internal_swift}/simplestreams/data" in result.stdout
