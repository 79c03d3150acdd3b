"""The charm's rendered files, run through the real sync engine against the real local cloud.

The charm runs under ops.testing with keystone's relation data pointing at the local Keystone and its
options pointing at a local signed source; the `sync-images` action then runs the real engine on what
the charm rendered, and Glance and Swift are checked for the result.
"""

from __future__ import annotations

import base64
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml
from ops import testing

import workload
from charm import GlanceSimplestreamsSyncCharm
from tests.functional.conftest import our_images, published_image_ids, published_products

pytestmark = pytest.mark.functional

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture
def machine(tmp_path, monkeypatch):
    """The charm's machine paths under tmp_path; the real engine, importable from the repo's src/."""
    paths = workload.Paths.under(tmp_path / "machine")
    monkeypatch.setattr(workload, "PATHS", paths)
    monkeypatch.setattr(workload, "UPDATE_CA_CERTIFICATES", ["true"])
    monkeypatch.setattr(workload, "install_packages", lambda: None)
    monkeypatch.setattr(workload, "start_background_sync", lambda charm_dir: 0)
    monkeypatch.setattr(workload, "ENGINE", [sys.executable, "-m", "simplestreams_sync"])
    monkeypatch.setattr(workload, "python_path", lambda charm_dir: str(SRC))
    return paths


def keystone_answer(cloud) -> dict:
    """What the keystone charm puts on its unit data for our service user."""
    identity = cloud.sync_identity
    auth = urlparse(identity["auth_url"])
    return {
        "service_host": auth.hostname, "service_port": str(auth.port), "service_protocol": auth.scheme,
        "auth_host": auth.hostname, "auth_port": str(auth.port), "auth_protocol": auth.scheme,
        "internal_host": auth.hostname, "internal_port": str(auth.port), "internal_protocol": auth.scheme,
        "api_version": "3", "service_username": identity["username"], "service_password": identity["password"],
        "service_tenant": identity["project_name"], "service_tenant_id": cloud.services_project_id,
        "service_domain": identity["user_domain_name"], "service_domain_id": "default",
    }


def test_sync_images_action_syncs_from_what_the_charm_rendered(machine, cloud, source, test_key, glance):
    source.add_image(release="noble", version="24.04", serial="20261120", seed=200)
    source.write()
    mirror_list = [{"url": source.url, "path": "streams/v1/index.sjson", "max": 1,
                    "item_filters": ["release~(noble)", "arch~(x86_64|amd64)", "ftype~(disk1.img|disk.img)"]}]
    content_id_template = "charm.test.{region}"
    config = {
        "mirror_list": yaml.safe_dump(mirror_list),
        "custom_keyring": base64.b64encode(test_key.keyring.read_bytes()).decode(),
        "region": cloud.sync_identity["region"],
        "content_id_template": content_id_template,
        "visibility": "private",
    }
    keystone = testing.Relation("identity-service", remote_app_name="keystone",
                                remote_units_data={0: keystone_answer(cloud)})
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
    assert cloud.sync_identity["password"] not in machine.mirrors.read_text()
    assert oct(machine.identity.stat().st_mode & 0o777) == "0o600"
