"""The local cloud with Glance's image_conversion import plugin: a qcow2 imported with glance-direct
must end active as raw, as it does in a cloud whose Glance converts images (e.g. for Ceph)."""

import json
import os
import shutil
import subprocess
import time

import pytest
from glanceclient import Client as GlanceClient

from tests.localcloud.cloud import LocalCloud

pytestmark = [
    pytest.mark.functional,
    pytest.mark.skipif(not shutil.which("qemu-img"), reason="qemu-img not installed (Debian qemu-utils)"),
]

MiB = 1024 * 1024
IMPORT_TIMEOUT = 120


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    with LocalCloud(tmp_path_factory.mktemp("conversion-cloud"), image_conversion=True) as local_cloud:
        yield local_cloud


def qemu_img_info(path) -> dict:
    result = subprocess.run(["qemu-img", "info", "--output=json", str(path)], check=True, capture_output=True)
    return json.loads(result.stdout)


@pytest.fixture
def qcow2_image(tmp_path) -> tuple[bytes, int]:
    """(bytes of a qcow2 holding 1 MiB of random data in a 4 MiB disk, its virtual size)."""
    raw, qcow2 = tmp_path / "disk.raw", tmp_path / "disk.qcow2"
    raw.write_bytes(os.urandom(MiB) + bytes(3 * MiB))
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(qcow2)], check=True)
    info = qemu_img_info(qcow2)
    assert (info["format"], info["virtual-size"]) == ("qcow2", 4 * MiB)
    return qcow2.read_bytes(), info["virtual-size"]


def wait_for_import_end(glance, image_id: str):
    """The image once its import flow has ended: killed, or active with Glance's import lock released.
    Glance marks the image active before the flow's last step; a delete in between can fail with 500."""
    deadline = time.monotonic() + IMPORT_TIMEOUT
    while True:
        image = glance.images.get(image_id)
        ended = image.status == "killed" or (image.status == "active" and "os_glance_import_task" not in image)
        if ended or time.monotonic() > deadline:
            return image
        time.sleep(0.5)


def test_glance_direct_import_converts_qcow2_to_raw(cloud, qcow2_image, tmp_path):
    data, virtual_size = qcow2_image
    glance = GlanceClient("2", session=cloud.sync_session())
    image = glance.images.create(name="conversion-qcow2", disk_format="qcow2", container_format="bare")

    # PUT /v2/images/{id}/stage, then POST /v2/images/{id}/import with method glance-direct
    staged = tmp_path / "staged.qcow2"
    staged.write_bytes(data)
    with open(staged, "rb") as stream:
        glance.images.stage(image.id, stream, image_size=len(data))
    assert glance.images.get(image.id).status == "uploading"
    glance.images.image_import(image.id, method="glance-direct")

    image = wait_for_import_end(glance, image.id)
    assert image.status == "active", f"import ended {image.status}; see {cloud.logs / 'glance.log'}"
    assert (image.disk_format, image.container_format) == ("raw", "bare")
    assert image.size == virtual_size
    assert image.virtual_size == virtual_size
    downloaded = tmp_path / "downloaded.raw"
    downloaded.write_bytes(b"".join(glance.images.data(image.id)))
    assert downloaded.stat().st_size == virtual_size
    assert qemu_img_info(downloaded)["format"] == "raw"
    assert downloaded.read_bytes()[:MiB] == (tmp_path / "disk.raw").read_bytes()[:MiB]
    glance.images.delete(image.id)


def test_sync_with_image_import_conversion_ends_raw_verified_and_published(source, sync, glance, cloud):
    """The engine with image_import_conversion: staged (verified on the stream), imported, converted."""
    from tests.functional.conftest import our_images, published_image_ids, published_products

    item = source.add_image(seed=400, size=4 * MiB)
    source.write()
    sync.settings = {"image_import_conversion": True, "import_timeout": IMPORT_TIMEOUT}

    result = sync.run([sync.mirror(source.url)])

    assert result.returncode == 0, result.stderr
    (image,) = our_images(glance, sync.content_id)
    assert (image["status"], image["disk_format"]) == ("active", "raw")
    assert image["size"] == 4 * MiB != item.size
    assert image["verified_source_hash"] == f"sha256:{item.sha256}"
    assert published_image_ids(published_products(cloud, sync.content_id)) == {image["id"]}
