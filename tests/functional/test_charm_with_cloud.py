"""The charm's rendered files, run through the real sync engine against the real local cloud.

The charm runs under ops.testing with keystone's relation data pointing at the local Keystone and its
options pointing at a local signed source; the `sync-images` action then runs the real engine on what
the charm rendered, and Glance and Swift are checked for the result. Before any sync, the hook that
brings keystone's credentials makes the product-streams endpoint serve valid, empty metadata.
"""

from __future__ import annotations

import base64

import pytest
import requests
import yaml
from ops import testing

from charm import GlanceSimplestreamsSyncCharm
from tests.functional.conftest import keystone_relation, our_images, published_image_ids, published_products

pytestmark = pytest.mark.functional


def test_sync_images_action_syncs_from_what_the_charm_rendered(charm_machine, cloud, source, test_key, glance):
    source.add_image(release="noble", version="24.04", serial="20261120", seed=200)
    source.write()
    mirror_list = [
        {
            "url": source.url,
            "path": "streams/v1/index.sjson",
            "max": 1,
            "item_filters": ["release~(noble)", "arch~(x86_64|amd64)", "ftype~(disk1.img|disk.img)"],
        }
    ]
    content_id_template = "charm.test.{region}"
    config = {
        "mirror_list": yaml.safe_dump(mirror_list),
        "custom_keyring": base64.b64encode(test_key.keyring.read_bytes()).decode(),
        "region": cloud.sync_identity["region"],
        "content_id_template": content_id_template,
        "visibility": "private",
    }
    keystone = keystone_relation(cloud)
    ctx = testing.Context(GlanceSimplestreamsSyncCharm)

    out = ctx.run(ctx.on.action("sync-images"), testing.State(leader=True, config=config, relations=[keystone]))

    content_id = content_id_template.format(region=cloud.sync_identity["region"])
    (image,) = our_images(glance, content_id)
    assert image["name"] == "auto-sync/ubuntu-noble-24.04-amd64-server-20261120-disk1.img"
    assert (image["status"], image["visibility"]) == ("active", "private")
    assert ctx.action_results["created-count"] == 1
    assert f"created {image['id']}: {image['name']}" in ctx.action_results["created"]
    assert published_image_ids(published_products(cloud, content_id)) == {image["id"]}
    # keystone is now told to point product-streams at the published metadata
    request = out.get_relation(keystone.id).local_unit_data
    assert request["public_url"] == f"{cloud.swift_url}/simplestreams/data"
    assert cloud.sync_identity["password"] not in charm_machine.mirrors.read_text()
    assert oct(charm_machine.identity.stat().st_mode & 0o777) == "0o640"


def test_no_secret_in_anything_the_charm_or_the_sync_writes(charm_machine, cloud, source, test_key):
    """Scan files, logs, state, metrics, action results/logs and status for the service password."""
    source.add_image(release="noble", version="24.04", serial="20261121", seed=201)
    source.write()
    config = {
        "mirror_list": yaml.safe_dump([{"url": source.url, "path": "streams/v1/index.sjson", "max": 1}]),
        "custom_keyring": base64.b64encode(test_key.keyring.read_bytes()).decode(),
        "region": cloud.sync_identity["region"],
        "content_id_template": "secrets.test",
        "run": True,
    }
    password = cloud.sync_identity["password"]
    ctx = testing.Context(GlanceSimplestreamsSyncCharm)
    seen = []
    for keystone in (keystone_relation(cloud), keystone_relation(cloud, password="wrong-" + password)):
        state = testing.State(leader=True, config=config, relations=[keystone])
        try:
            out = ctx.run(ctx.on.action("sync-images"), state)
            seen.append(out.unit_status.message)
        except testing.ActionFailed as failure:
            seen.append(failure.message)
        seen += [str(ctx.action_results), *ctx.action_logs]
        seen.append(ctx.run(ctx.on.update_status(), state).unit_status.message)

    files = [path for path in charm_machine.config_dir.parent.parent.rglob("*") if path.is_file()]
    identity = charm_machine.identity
    assert identity in files and oct(identity.stat().st_mode & 0o777) == "0o640"
    assert any(path.name == "last-sync.json" for path in files)
    for path in files:
        if path != identity:
            assert password not in path.read_text(errors="replace"), f"password in {path}"
    for text in seen:
        assert password not in text


def test_credentials_alone_give_a_catalog_endpoint_that_serves_a_valid_index(
    charm_machine, cloud, glance, product_streams_service
):
    """No image synced, no sync run: the hook that brings keystone's credentials publishes empty metadata
    and asks for the endpoint; registered as keystone would, the catalog's URL serves it anonymously."""
    region = cloud.sync_identity["region"]
    content_id = f"endpoint.test.{region}"
    config = {"region": region, "content_id_template": "endpoint.test.{region}", "run": False}
    keystone = keystone_relation(cloud)
    ctx = testing.Context(GlanceSimplestreamsSyncCharm)

    out = ctx.run(
        ctx.on.relation_changed(keystone, remote_unit=0),
        testing.State(leader=True, config=config, relations=[keystone]),
    )

    request = out.get_relation(keystone.id).local_unit_data
    assert request["public_url"] == f"{cloud.swift_url}/simplestreams/data"
    product_streams_service(request)
    catalog_url = cloud.sync_session().get_endpoint(
        service_type="product-streams", interface="public", region_name=region
    )
    index = requests.get(f"{catalog_url}/streams/v1/index.json", timeout=30)  # anonymous, as Juju reads it
    assert index.status_code == 200, index.text
    assert index.json()["format"] == "index:1.0"
    entry = index.json()["index"][content_id]
    assert (entry["datatype"], entry["format"], entry["products"]) == ("image-ids", "products:1.0", [])
    products = requests.get(f"{catalog_url}/{entry['path']}", timeout=30).json()
    assert (products["content_id"], products["products"]) == (content_id, {})
    assert our_images(glance, content_id) == []
    assert not (charm_machine.state_dir / "last-sync.json").exists()

    # the next hook publishes nothing again; a later sync's result keeps the same endpoint
    again = ctx.run(
        ctx.on.update_status(), testing.State(leader=True, config=config, relations=[out.get_relation(keystone.id)])
    )
    assert again.get_relation(keystone.id).local_unit_data["public_url"] == catalog_url
    assert charm_machine.log_file.read_text().count("# publish-only ") == 1
