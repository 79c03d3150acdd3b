"""Migration from the classic charm: a classic deployment switched to this charm keeps its images.

The classic charm runs python-simplestreams' `sstream-mirror-glance` once per mirror, as its service user,
with its options (`--content-id` from content_id_template, `--name-prefix` from name_prefix, `--max`,
`--keep`, `--output-swift simplestreams/data/`). Here it runs exactly so against the local cloud; then
this charm, given the same options under ops.testing, runs `sync-images` with the real engine. It must
adopt the classic images (verified by hashing what Glance stores, no byte fetched from the source again),
create nothing, and publish metadata that lists the same image ids.
"""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import yaml
from ops import testing

from charm import GlanceSimplestreamsSyncCharm
from tests.functional.conftest import keystone_relation, our_images, published_image_ids, published_products
from tests.localcloud.engine_cli import openstack_env

pytestmark = pytest.mark.functional

SSTREAM_MIRROR_GLANCE = Path(sys.executable).parent / "sstream-mirror-glance"
FILTERS = ["arch~(x86_64|amd64)", "ftype~(disk1.img|disk.img)"]
CLOUD_NAME = "glance-simplestreams-sync-openstack"  # both charms' default cloud_name


def run_classic_sync(cloud, source_url: str, keyring: Path, content_id: str, tmp_path: Path) -> None:
    """One mirror of the classic charm's sync: its sstream-mirror-glance command line and environment."""
    identity = cloud.sync_identity
    env = openstack_env(identity, TMPDIR=str(tmp_path))
    argv = [
        str(SSTREAM_MIRROR_GLANCE),
        "-vv",
        "--keep",
        "--max",
        "1",
        "--content-id",
        content_id,
        "--cloud-name",
        CLOUD_NAME,
        "--path",
        "streams/v1/index.sjson",
        "--name-prefix",
        "auto-sync/",
        "--keyring",
        str(keyring),
        "--output-swift",
        "simplestreams/data/",
        source_url,
        *FILTERS,
    ]
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


def test_a_classic_deployment_switched_to_this_charm_keeps_its_images(
    charm_machine, cloud, source, test_key, glance, tmp_path
):
    source.add_image(release="jammy", version="22.04", serial="20261101", seed=500)
    source.add_image(release="noble", version="24.04", serial="20261101", seed=501)
    source.write()
    content_id_template = "migration.test.{region}"
    content_id = content_id_template.format(region=cloud.sync_identity["region"])
    run_classic_sync(cloud, source.url, test_key.keyring, content_id, tmp_path)
    classic = {image["id"]: image["name"] for image in our_images(glance, content_id)}
    assert sorted(classic.values()) == [
        "auto-sync/ubuntu-jammy-22.04-amd64-server-20261101-disk1.img",
        "auto-sync/ubuntu-noble-24.04-amd64-server-20261101-disk1.img",
    ]
    assert published_image_ids(published_products(cloud, content_id)) == set(classic)
    source.server.clear_requests()

    # `juju refresh --switch`: the same options, the classic mirror_list's own name_prefix included
    mirror_list = [
        {
            "url": source.url,
            "name_prefix": "ubuntu:released",
            "path": "streams/v1/index.sjson",
            "max": 1,
            "item_filters": FILTERS,
        }
    ]
    config = {
        "mirror_list": yaml.safe_dump(mirror_list),
        "content_id_template": content_id_template,
        "region": cloud.sync_identity["region"],
        "name_prefix": "auto-sync/",
        "custom_keyring": base64.b64encode(test_key.keyring.read_bytes()).decode(),
    }
    ctx = testing.Context(GlanceSimplestreamsSyncCharm)
    ctx.run(
        ctx.on.action("sync-images"), testing.State(leader=True, config=config, relations=[keystone_relation(cloud)])
    )

    assert ctx.action_results["created-count"] == 0
    assert ctx.action_results["failed-count"] == 0
    images = our_images(glance, content_id)
    assert {image["id"]: image["name"] for image in images} == classic
    assert all(image["verified_source_hash"].startswith("sha256:") for image in images)
    fetched = sorted(request["path"] for request in source.server.wait_for_requests(2))
    assert fetched == [
        "/streams/v1/com.ubuntu.cloud:released:download.sjson",
        "/streams/v1/index.sjson",
    ]  # the signed documents, no image
    products = published_products(cloud, content_id)
    assert published_image_ids(products) == set(classic)
    assert products["content_id"] == content_id
    index = requests.get(f"{cloud.swift_url}/simplestreams/data/streams/v1/index.json", timeout=10).json()
    assert index["index"][content_id]["path"] == f"streams/v1/{content_id}.json"
