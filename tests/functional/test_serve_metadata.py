"""The sync publishing to the directory the unit's own web server serves (serve_metadata), on a cloud
without an object store: the real nginx serves the site config the charm writes, on 127.0.0.1."""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import glanceclient
import pytest
import requests

from simplestreams_sync import state
from simplestreams_sync.publish import INDEX_PATH, image_ids_tree, products_path
from simplestreams_sync.publish_local import LocalPublisher
from sync_charm import host, metadata_server
from tests.functional.conftest import SyncRunner, created_ids, our_images, published_image_ids
from tests.localcloud.cloud import internal_url
from tests.localcloud.web_server import NginxServer, free_port

pytestmark = pytest.mark.functional

HELD_BYTES = 64 * 1024  # what the source sends of a held image before the test lets the rest go
UNIT = "glance-simplestreams-sync/0"


@pytest.fixture
def bare_glance(bare_cloud):
    return glanceclient.Client("2", session=bare_cloud.admin_session())


@dataclass
class Served:
    server: NginxServer
    directory: Path
    url: str

    def get(self, path: str) -> requests.Response:
        return requests.get(f"{self.url}/{path}", timeout=10)

    def image_ids(self, content_id: str) -> set[str]:
        """The ids in the served metadata, read anonymously, index first, as Juju reads them."""
        index = self.get(INDEX_PATH)
        index.raise_for_status()
        path = index.json()["index"][content_id]["path"]
        products = self.get(path)
        products.raise_for_status()
        return published_image_ids(products.json())


@pytest.fixture
def served(tmp_path, monkeypatch):
    """The charm's site config (host paths under tmp_path) served by nginx on a free 127.0.0.1 port."""
    paths = host.Paths.under(tmp_path / "machine")
    monkeypatch.setattr(host, "PATHS", paths)
    paths.served_dir.mkdir(parents=True)
    port = free_port()
    site = tmp_path / "site.conf"
    site.write_text(metadata_server.site_config(UNIT, [f"127.0.0.1:{port}"], tls=False))
    with NginxServer(tmp_path / "nginx", site, port) as server:
        yield Served(server, paths.served_dir, metadata_server.url("127.0.0.1", port, tls=False))


@pytest.fixture
def serving_sync(tmp_path, bare_cloud, test_key, served, request):
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")
    settings = {"local_metadata": {"directory": str(served.directory), "url": served.url}}
    runner = SyncRunner(tmp_path / "sync", bare_cloud, test_key.keyring, f"served.{name}.{{region}}", settings)
    runner.workdir.mkdir()
    return runner


def active_ids(glance, content_id: str) -> set[str]:
    return {image["id"] for image in our_images(glance, content_id) if image["status"] == "active"}


def ids_in_files(directory: Path, content_id: str) -> set[str]:
    return published_image_ids(json.loads((directory / products_path(content_id)).read_text()))


def first_sync(source, serving_sync, seed: int) -> tuple[list[dict], subprocess.CompletedProcess, str]:
    """One image in the source, synced: (the mirror list, the run, the image's id)."""
    source.add_image(serial="20250101", seed=seed)
    source.write()
    mirrors = [serving_sync.mirror(source.url)]
    run = serving_sync.run(mirrors)
    assert run.returncode == 0, run.stderr
    (image_id,) = created_ids(run.stdout)
    return mirrors, run, image_id


def test_a_sync_publishes_to_the_served_directory_and_reads_it_back(source, serving_sync, served, bare_glance):
    content_id = serving_sync.content_id

    mirrors, run, image_id = first_sync(source, serving_sync, seed=901)

    assert f"published metadata for 1 images to {served.url}\n" in run.stdout
    last = json.loads((serving_sync.state_dir / "last-sync.json").read_text())
    assert (last["published"], last["metadata_url"], last["object_store_missing"]) == (True, served.url, False)
    # anonymous readers get exactly the active image, as JSON
    assert served.image_ids(content_id) == active_ids(bare_glance, content_id) == {image_id}
    index = served.get(INDEX_PATH)
    assert index.headers["Content-Type"] == "application/json"
    assert (index.headers["Cache-Control"], index.headers["X-Content-Type-Options"]) == ("no-cache", "nosniff")
    assert index.headers["Server"] == "nginx"  # no version
    assert "ETag" in index.headers and "Last-Modified" in index.headers
    assert index.json()["index"][content_id]["path"] == products_path(content_id)
    # only the two files, each the sync's own and not world-readable; no listing, nothing else served
    files = sorted(str(path.relative_to(served.directory)) for path in served.directory.rglob("*") if path.is_file())
    assert files == [INDEX_PATH, products_path(content_id)]
    assert {oct((served.directory / name).stat().st_mode & 0o777) for name in files} == {"0o640"}
    assert served.get("streams/v1/").status_code == 403
    assert requests.get(served.url.removesuffix("/simplestreams/data") + "/", timeout=10).status_code == 404
    assert requests.post(f"{served.url}/{INDEX_PATH}", timeout=10).status_code == 403

    # the quick check covers the files: unchanged, it stops early; a served file changed, the full run
    # rewrites it
    quick = serving_sync.run(mirrors)
    assert quick.returncode == 0, quick.stderr
    assert f"and the metadata at {served.url} (quick check" in quick.stdout
    products_file = served.directory / products_path(content_id)
    products_file.write_text(json.dumps({"content_id": content_id, "products": {}}))
    full = serving_sync.run(mirrors)
    assert full.returncode == 0, full.stderr
    assert "quick check" not in full.stdout
    assert f"published metadata for 1 images to {served.url}\n" in full.stdout
    assert served.image_ids(content_id) == {image_id}


def test_publish_only_names_the_keystone_url_a_sync_names(source, serving_sync, served, bare_cloud):
    """With the internal endpoints (identity.yaml's auth_url the internal keystone URL), --publish-only
    and a sync both name the catalog's public identity URL in the index, as Juju's cloud does."""
    serving_sync.identity_override = {
        **bare_cloud.sync_identity,
        "auth_url": internal_url(bare_cloud.auth_url),
        "interface": "internal",
    }
    source.write()
    content_id = serving_sync.content_id
    expected = [{"region": bare_cloud.sync_identity["region"], "endpoint": bare_cloud.auth_url}]

    publish_only = serving_sync.run([serving_sync.mirror(source.url)], "--publish-only")

    assert publish_only.returncode == 0, publish_only.stderr
    assert served.get(INDEX_PATH).json()["index"][content_id]["clouds"] == expected
    served.directory.joinpath(INDEX_PATH).unlink()
    first_sync(source, serving_sync, seed=905)
    assert served.get(INDEX_PATH).json()["index"][content_id]["clouds"] == expected


def test_the_products_file_is_replaced_first_the_index_last_each_whole(served, monkeypatch):
    publisher = LocalPublisher(served.directory, served.url, "RegionOne", "http://keystone/v3", verify=True)
    old_tree = image_ids_tree("order.test", [], "RegionOne", "http://keystone/v3", hypervisor_mapping=False)
    publisher.publish(old_tree, "cloud")
    old_index = served.get(INDEX_PATH).json()
    image = {
        "id": "11111111-2222-3333-4444-555555555555",
        "name": "auto-sync/ubuntu-noble-24.04-amd64-server-20250101-disk1.img",
        "product_name": "com.ubuntu.cloud:server:24.04:amd64",
        "version_name": "20250101",
        "item_name": "disk1.img",
        "simplestreams_metadata": json.dumps({"ftype": "disk1.img", "sha256": "ab" * 32, "size": 10}),
    }
    new_tree = image_ids_tree("order.test", [image], "RegionOne", "http://keystone/v3", hypervisor_mapping=False)
    renames = []
    real_replace = state.os.replace

    def replace(source, target):
        # at each rename the new file is complete; readers still get the old index, and when it is
        # the index's turn, the new products file already
        renames.append((Path(target).relative_to(served.directory).as_posix(), json.loads(Path(source).read_text())))
        assert served.get(INDEX_PATH).json() == old_index
        if len(renames) == 2:
            assert served.get(products_path("order.test")).json() == new_tree
        real_replace(source, target)

    monkeypatch.setattr(state.os, "replace", replace)
    assert publisher.publish(new_tree, "cloud") is True

    assert [name for name, _ in renames] == [products_path("order.test"), INDEX_PATH]
    assert renames[0][1] == new_tree
    assert renames[1][1]["index"]["order.test"]["products"] == ["com.ubuntu.cloud:server:24.04:amd64"]
    assert served.get(products_path("order.test")).json() == new_tree
    assert [path.name for path in served.directory.rglob(".*")] == []


def test_a_web_server_down_between_upload_and_publish_never_serves_a_deleted_image(
    source, serving_sync, served, bare_glance, tmp_path
):
    content_id = serving_sync.content_id
    mirrors, _, old_id = first_sync(source, serving_sync, seed=911)

    newer = source.add_image(serial="20250201", seed=912)
    source.write()
    release = tmp_path / "release-upload"
    source.server.set_faults({"/" + newer.path: {"kind": "hold", "after": HELD_BYTES, "until": str(release)}})
    running = serving_sync.start(mirrors)
    try:
        serving_sync.wait_for_progress(lambda progress: progress.get("phase") == "uploading")
        served.server.stop()  # the upload cannot end before the release: this is before publish
        release.touch()
        stdout, stderr = running.communicate(timeout=300)
    finally:
        release.touch()
        running.kill()

    assert running.returncode == 1
    (new_id,) = created_ids(stdout)
    assert (
        f"kept {old_id}: auto-sync/ubuntu-focal-20.04-amd64-server-20250101-disk1.img "
        "(superseded, kept until metadata without it is published)" in stdout
    )
    assert f"deleted {old_id}" not in stdout
    assert (
        f"error: metadata not published: the unit's web server does not serve {served.url}/"
        f"{products_path(content_id)}: [Errno 111] Connection refused; check that it runs "
        "(systemctl status nginx) and that the charm's site config is in place\n"
    ) in stderr
    # what the files name is active, and what the web server will serve once back
    assert ids_in_files(served.directory, content_id) <= active_ids(bare_glance, content_id) == {old_id, new_id}
    served.server.start()
    assert served.image_ids(content_id) <= active_ids(bare_glance, content_id)

    # the web server back: the next run reads it back and only then deletes the superseded image
    again = serving_sync.run(mirrors, "--full-check")
    assert again.returncode == 0, again.stderr
    assert f"deleted {old_id}" in again.stdout
    assert served.image_ids(content_id) == active_ids(bare_glance, content_id) == {new_id}
