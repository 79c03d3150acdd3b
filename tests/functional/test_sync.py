"""The sync engine against a real Keystone, Glance and Swift on 127.0.0.1 and a signed source over HTTP."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.functional.conftest import created_ids, our_images, published_image_ids, published_products
from tests.localcloud.source import SourceBuilder, corrupt_item, tamper_signed_file

pytestmark = pytest.mark.functional

FOCAL = "com.ubuntu.cloud:server:20.04:amd64"
JAMMY = "com.ubuntu.cloud:server:22.04:amd64"


def test_first_sync_creates_images_with_names_properties_and_visibility(source, sync, glance):
    focal = source.add_image(release="focal", version="20.04", serial="20210720", seed=1)
    source.add_image(release="jammy", version="22.04", serial="20240101", seed=2)
    source.add_image(release="focal", version="20.04", serial="20210720", ftype="root.tar.xz", size=1000)
    source.write()
    sync.settings = {"visibility": "private", "custom_properties": {"hw_rng_model": "virtio"}}

    result = sync.run([sync.mirror(source.url)])

    assert result.returncode == 0, result.stderr
    images = {image["name"]: image for image in our_images(glance, sync.content_id)}
    assert sorted(images) == [
        "auto-sync/ubuntu-focal-20.04-amd64-server-20210720-disk1.img",
        "auto-sync/ubuntu-jammy-22.04-amd64-server-20240101-disk1.img",
    ]
    image = images["auto-sync/ubuntu-focal-20.04-amd64-server-20210720-disk1.img"]
    assert f"created {image['id']}: {image['name']}" in result.stdout.splitlines()
    assert (image["status"], image["visibility"], image["disk_format"]) == ("active", "private", "qcow2")
    assert image["size"] == focal.size
    assert image["os_hash_value"] == hashlib.sha512((source.builder.root / focal.path).read_bytes()).hexdigest()
    expected_properties = {
        "content_id": sync.content_id,
        "source_content_id": "com.ubuntu.cloud:released:download",
        "product_name": FOCAL,
        "version_name": "20210720",
        "item_name": "disk1.img",
        "os_distro": "ubuntu",
        "os_version": "20.04",
        "architecture": "x86_64",
        "hw_rng_model": "virtio",
    }
    assert {key: image.get(key) for key in expected_properties} == expected_properties
    assert json.loads(image["simplestreams_metadata"])["sha256"] == focal.sha256


def test_second_sync_creates_nothing(source, sync, glance):
    source.add_image(seed=3)
    source.write()
    first = sync.run([sync.mirror(source.url)])
    source.server.clear_requests()

    second = sync.run([sync.mirror(source.url)])

    assert first.returncode == 0 and second.returncode == 0, second.stderr
    assert len(created_ids(first.stdout)) == 1 and created_ids(second.stdout) == []
    assert "0 created, 0 failed" in second.stdout
    fetched = sorted(request["path"] for request in source.server.wait_for_requests(2))
    assert fetched == ["/streams/v1/com.ubuntu.cloud:released:download.sjson", "/streams/v1/index.sjson"], (
        "image bytes fetched again"
    )
    assert len(our_images(glance, sync.content_id)) == 1


def test_newer_version_is_added_and_the_superseded_one_deleted(source, sync, glance):
    source.add_image(serial="20210720", seed=4)
    source.write()
    sync.run([sync.mirror(source.url)])
    old_id = our_images(glance, sync.content_id)[0]["id"]
    source.add_image(serial="20210801", seed=5)
    source.write()

    result = sync.run([sync.mirror(source.url)])

    assert result.returncode == 0, result.stderr
    versions = [image["version_name"] for image in our_images(glance, sync.content_id)]
    assert versions == ["20210801"]
    assert (
        f"deleted {old_id}: auto-sync/ubuntu-focal-20.04-amd64-server-20210720-disk1.img "
        "(superseded by a newer version)" in result.stdout
    )


def test_without_swift_images_sync_nothing_is_published_and_superseded_images_go_at_once(source, sync, glance, cloud):
    sync.settings = {"use_swift": False}
    source.add_image(serial="20210720", seed=14)
    source.write()
    first = sync.run([sync.mirror(source.url)])
    (old_id,) = created_ids(first.stdout)
    source.add_image(serial="20210801", seed=15)
    source.write()

    second = sync.run([sync.mirror(source.url)])

    assert (first.returncode, second.returncode) == (0, 0), first.stderr + second.stderr
    (new_id,) = created_ids(second.stdout)
    assert second.stdout.splitlines() == [
        f"created {new_id}: auto-sync/ubuntu-focal-20.04-amd64-server-20210801-disk1.img",
        f"deleted {old_id}: auto-sync/ubuntu-focal-20.04-amd64-server-20210720-disk1.img "
        "(superseded by a newer version)",
        "sync finished: 1 created, 0 failed, 1 deleted, 0 errors",
    ]
    assert [image["id"] for image in our_images(glance, sync.content_id)] == [new_id]
    last = json.loads((sync.state_dir / "last-sync.json").read_text())
    assert (last["ok"], last["published"], last["metadata_url"]) == (True, False, "")
    with pytest.raises(requests.HTTPError):
        published_products(cloud, sync.content_id)


def test_max_keeps_that_many_newest_versions(source, sync, glance):
    for seed, serial in enumerate(["20210101", "20210201", "20210301"], start=10):
        source.add_image(serial=serial, seed=seed)
    source.write()

    result = sync.run([sync.mirror(source.url, max=2)])

    assert result.returncode == 0, result.stderr
    assert sorted(i["version_name"] for i in our_images(glance, sync.content_id)) == ["20210201", "20210301"]


def test_two_mirrors_in_one_run(source, sync, glance, tmp_path, test_key):
    source.add_image(release="focal", version="20.04", serial="20210720", seed=20)
    source.write()
    daily = SourceBuilder(
        tmp_path / "daily",
        test_key,
        content_id="com.ubuntu.cloud:daily:download",
        product_prefix="com.ubuntu.cloud.daily:server",
    )
    daily.add_image(release="jammy", version="22.04", serial="20240301", seed=21)
    daily.write()
    daily_url = (tmp_path / "daily").as_uri() + "/"  # an air-gapped mirror on local disk

    result = sync.run([sync.mirror(source.url), sync.mirror(daily_url, image_name_prefix="daily/")])

    assert result.returncode == 0, result.stderr
    names = sorted(i["name"] for i in our_images(glance, sync.content_id))
    assert names == [
        "auto-sync/ubuntu-focal-20.04-amd64-server-20210720-disk1.img",
        "daily/ubuntu-jammy-22.04-amd64-server-20240301-disk1.img",
    ]


def test_tampered_signed_index_is_refused(source, sync, glance):
    source.add_image(seed=30)
    index = source.write()
    tamper_signed_file(index)

    result = sync.run([sync.mirror(source.url)])

    assert result.returncode == 1
    assert "index.sjson: signature check failed" in result.stderr and "BAD signature" in result.stderr
    assert our_images(glance, sync.content_id) == []


def test_index_signed_by_an_unknown_key_is_refused(source, sync, glance, other_key):
    source.add_image(seed=31)
    source.write()
    sync.keyring = other_key.keyring

    result = sync.run([sync.mirror(source.url)])

    assert result.returncode == 1
    assert "signature check failed" in result.stderr
    assert our_images(glance, sync.content_id) == []


def test_unsigned_json_path_is_the_operators_choice(source, sync, glance):
    source.add_image(seed=32)
    source.write()

    result = sync.run([sync.mirror(source.url, path="streams/v1/index.json")])

    assert result.returncode == 0, result.stderr
    assert len(our_images(glance, sync.content_id)) == 1


def test_corrupted_image_is_refused_and_nothing_is_left_in_glance(source, sync, glance):
    bad = source.add_image(release="focal", version="20.04", seed=40)
    source.add_image(release="jammy", version="22.04", serial="20240101", seed=41)
    source.write()
    corrupt_item(source.builder.root, bad.path)

    result = sync.run([sync.mirror(source.url)])

    assert result.returncode == 1
    assert "failed auto-sync/ubuntu-focal-20.04-amd64-server-20210720-disk1.img" in result.stderr
    assert "does not match the source's" in result.stderr
    images = our_images(glance, sync.content_id)
    assert [(i["version_name"], i["status"]) for i in images] == [("20240101", "active")]
    state = json.loads((sync.state_dir / "last-sync.json").read_text())
    assert state["ok"] is False and len(state["created"]) == 1 and len(state["failed"]) == 1


def test_one_failed_mirror_does_not_stop_the_others(source, sync, glance):
    source.add_image(seed=50)
    source.write()
    missing = sync.mirror("http://127.0.0.1:9/nothing-listens-here/")

    result = sync.run([missing, sync.mirror(source.url)])

    assert result.returncode == 1
    assert "mirror http://127.0.0.1:9/nothing-listens-here/" in result.stderr
    assert len(created_ids(result.stdout)) == 1


def test_metadata_in_swift_lists_exactly_the_active_images_and_is_public(source, sync, glance, cloud):
    source.add_image(release="focal", version="20.04", seed=60)
    source.add_image(release="jammy", version="22.04", serial="20240101", seed=61)
    source.write()

    result = sync.run([sync.mirror(source.url)])

    assert result.returncode == 0, result.stderr
    products = published_products(cloud, sync.content_id)
    active = {i["id"] for i in our_images(glance, sync.content_id) if i["status"] == "active"}
    assert published_image_ids(products) == active and len(active) == 2
    item = products["products"][FOCAL]["versions"]["20210720"]["items"]["disk1.img"]
    assert item["region"] == cloud.sync_identity["region"] and item["endpoint"] == cloud.auth_url
    index = requests.get(f"{cloud.swift_url}/simplestreams/data/streams/v1/index.json", timeout=10).json()
    entry = index["index"][sync.content_id]
    assert entry["datatype"] == "image-ids" and entry["path"] == f"streams/v1/{sync.content_id}.json"
    anonymous_write = requests.put(f"{cloud.swift_url}/simplestreams/data/evil", data=b"x", timeout=10)
    assert anonymous_write.status_code in (401, 403)


def test_sstream_query_reads_the_published_metadata(source, sync, cloud):
    source.add_image(seed=70)
    source.write()
    result = sync.run([sync.mirror(source.url)])
    assert result.returncode == 0, result.stderr
    image_id = created_ids(result.stdout)[0]

    query = subprocess.run(
        [
            str(Path(sys.executable).parent / "sstream-query"),
            "--no-verify",
            "--output-format=%(id)s",
            f"{cloud.swift_url}/simplestreams/data/streams/v1/index.json",
            f"content_id={sync.content_id}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert query.returncode == 0, query.stderr
    assert query.stdout.split() == [image_id]


def test_dry_run_lists_what_would_be_created_and_creates_nothing(source, sync, glance):
    source.add_image(seed=80)
    source.write()

    result = sync.run([sync.mirror(source.url)], "--dry-run")

    assert result.returncode == 0, result.stderr
    assert (
        f"would create {FOCAL} 20210720 disk1.img: auto-sync/ubuntu-focal-20.04-amd64-server-20210720-disk1.img"
    ) in result.stdout
    assert our_images(glance, sync.content_id) == []


def test_dry_run_against_a_source_alone_needs_no_cloud(source, sync):
    source.add_image(seed=81)
    source.write()
    mirrors_file, _ = sync.write_files([sync.mirror(source.url)])

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "simplestreams_sync",
            "--mirrors",
            str(mirrors_file),
            "--identity",
            "/nonexistent",
            "--dry-run",
            "--assume-empty-glance",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(sync_src())},
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert "would create" in result.stdout


def test_password_never_appears_in_output_or_state(source, sync, cloud):
    source.add_image(seed=90)
    source.write()

    result = sync.run([sync.mirror(source.url)])

    password = cloud.sync_identity["password"]
    assert result.returncode == 0
    assert password not in result.stdout + result.stderr
    assert password not in (sync.state_dir / "last-sync.json").read_text()


def test_user_agent_is_sent_to_the_source(source, sync):
    source.add_image(seed=91)
    source.write()
    sync.settings = {"user_agent": "gss-test-agent/1.0"}

    sync.run([sync.mirror(source.url)])

    agents = {r["user_agent"] for r in source.server.wait_for_requests(3)}
    assert agents == {"gss-test-agent/1.0"}


def sync_src() -> Path:
    return Path(__file__).resolve().parents[2] / "src"
