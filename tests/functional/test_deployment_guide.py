"""The deployment guide's own example, through the charm, gives the names the guide shows.

tests/data/deployment-guide/gss.yaml is applied unchanged as the charm's options (its two mirrors name
`http://cloud-images.ubuntu.com/releases/` and `/daily/`, with `name_prefix: 'ubuntu:released'` and
`'ubuntu:daily'`). Those URLs are served from local signed trees through the model's proxy, a local
proxy that routes cloud-images.ubuntu.com to 127.0.0.1; the test adds only what a test cloud needs
(its region, its own content_id, the test signing key). The `sync-images` action runs the real engine
against the local cloud.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml
from ops import testing

from charm import GlanceSimplestreamsSyncCharm
from tests.functional.conftest import keystone_relation, our_images
from tests.localcloud.proxy import HttpProxy
from tests.localcloud.source import SourceBuilder
from tests.localcloud.source_server import SourceServer

pytestmark = pytest.mark.functional

GUIDE = Path(__file__).resolve().parents[1] / "data" / "deployment-guide" / "gss.yaml"
SERIAL = "20210720"
RELEASES = (("bionic", "18.04"), ("focal", "20.04"))
ARCHES = ("amd64", "arm64")

# What the guide shows `sync-images` creating with its gss.yaml.
GUIDE_NAMES = sorted(
    [
        f"auto-sync/ubuntu-{release}-{version}-{arch}-server-{SERIAL}-disk1.img"
        for release, version in RELEASES
        for arch in ARCHES
    ]
    + [
        f"auto-sync/ubuntu-{release}-daily-{arch}-server-{SERIAL}-disk1.img"
        for release, _ in RELEASES
        for arch in ARCHES
    ]
)


def cloud_images_tree(root: Path, test_key) -> None:
    """releases/ and daily/ as cloud-images.ubuntu.com lays them out, with what the guide filters on:
    bionic and focal, amd64 and arm64, disk1.img (and a jammy image its filters leave out)."""
    released = SourceBuilder(root / "releases", test_key)
    daily = SourceBuilder(
        root / "daily",
        test_key,
        content_id="com.ubuntu.cloud:daily:download",
        product_prefix="com.ubuntu.cloud.daily:server",
    )
    seed = 400
    for builder in (released, daily):
        for release, version in RELEASES:
            for arch in ARCHES:
                seed += 1
                item = builder.add_image(
                    release=release, version=version, arch=arch, serial=SERIAL, size=256 << 10, seed=seed
                )
                if builder is daily:  # the daily stream's pubname has "daily" where the version is
                    entry = daily.products[item.product_id]["versions"][SERIAL]
                    entry.update(label="daily", pubname=f"ubuntu-{release}-daily-{arch}-server-{SERIAL}")
        builder.add_image(release="jammy", version="22.04", serial=SERIAL, size=256 << 10, seed=seed + 10)
        builder.write()


def test_the_guides_gss_yaml_names_images_as_the_guide_shows(
    charm_machine, cloud, test_key, tmp_path, monkeypatch, glance
):
    cloud_images_tree(tmp_path / "cloud-images", test_key)
    guide_options = yaml.safe_load(GUIDE.read_text())["glance-simplestreams-sync"]
    content_id_template = "guide.test.{region}"
    config = {
        **guide_options,
        "custom_keyring": base64.b64encode(test_key.keyring.read_bytes()).decode(),
        "region": cloud.sync_identity["region"],
        "content_id_template": content_id_template,
    }
    ctx = testing.Context(GlanceSimplestreamsSyncCharm)

    with (
        SourceServer(tmp_path / "cloud-images", tmp_path / "cloud-images-server") as server,
        HttpProxy(tmp_path / "proxy", routes={"cloud-images.ubuntu.com": f"127.0.0.1:{server.port}"}) as proxy,
    ):
        monkeypatch.setenv("JUJU_CHARM_HTTP_PROXY", proxy.url)
        ctx.run(
            ctx.on.action("sync-images"),
            testing.State(leader=True, config=config, relations=[keystone_relation(cloud)]),
        )
        through_proxy = {entry["url"] for entry in proxy.requests()}

    images = our_images(glance, content_id_template.format(region=cloud.sync_identity["region"]))
    assert sorted(image["name"] for image in images) == GUIDE_NAMES
    assert {image["status"] for image in images} == {"active"}
    created = ctx.action_results["created"].splitlines()
    assert sorted(line.split(": ", 1)[1] for line in created) == GUIDE_NAMES
    assert ctx.action_results["created-count"] == len(GUIDE_NAMES)
    assert {
        f"http://cloud-images.ubuntu.com/{stream}/streams/v1/index.sjson" for stream in ("releases", "daily")
    } <= through_proxy
