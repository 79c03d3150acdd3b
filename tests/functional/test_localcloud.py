"""Smoke test of the local OpenStack (tests/localcloud): it must really work."""

import hashlib
import io
import json
import os
import shutil
import socket
import struct
import subprocess
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import swiftclient
from glanceclient import Client as GlanceClient

from tests.localcloud.cloud import LocalCloud

pytestmark = pytest.mark.functional

MiB = 1024 * 1024


def empty_qcow2(virtual_size: int) -> bytes:
    """An empty qcow2 v3 image laid out as `qemu-img create -f qcow2` lays it out:
    header, refcount table, refcount block and L1 table, one 64 KiB cluster each."""
    cluster = 1 << 16
    l2_coverage = (cluster // 8) * cluster  # one L2 table maps 8192 clusters
    l1_entries = -(-virtual_size // l2_coverage)
    header = struct.pack(
        ">4sIQIIQIIQQIIQQQQII",
        b"QFI\xfb", 3,  # magic, version
        0, 0,  # no backing file
        16, virtual_size,  # cluster_bits, size
        0, l1_entries, 3 * cluster,  # no encryption, L1 size and offset
        cluster, 1,  # refcount table offset, clusters
        0, 0,  # no snapshots
        0, 0, 0,  # incompatible, compatible, autoclear features
        4, 104,  # refcount_order (16-bit refcounts), header length
    )  # fmt: skip
    header += struct.pack(">II", 0, 0)  # end of header extensions
    refcount_table = struct.pack(">Q", 2 * cluster)
    refcount_block = struct.pack(">4H", 1, 1, 1, 1)  # the four clusters in use
    image = bytearray(3 * cluster + 8 * l1_entries)
    image[0 : len(header)] = header
    image[cluster : cluster + 8] = refcount_table
    image[2 * cluster : 2 * cluster + 8] = refcount_block
    return bytes(image)


@pytest.mark.skipif(not shutil.which("qemu-img"), reason="qemu-img not installed")
def test_generated_qcow2_is_valid_for_qemu_img(tmp_path):
    path = tmp_path / "empty.qcow2"
    path.write_bytes(empty_qcow2(10 * MiB))
    subprocess.run(["qemu-img", "check", str(path)], check=True, capture_output=True)
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(path)], check=True,
                                     capture_output=True).stdout)  # fmt: skip
    assert (info["format"], info["virtual-size"]) == ("qcow2", 10 * MiB)


def test_sync_identity_gets_a_project_scoped_token(cloud):
    session = cloud.sync_session()
    assert session.get_token()
    access = session.auth.get_access(session)
    assert access.project_name == "services"
    assert {"admin", "member", "reader"} <= set(access.role_names)  # member, reader: implied by admin
    assert session.get_endpoint(service_type="object-store", interface="public") == cloud.swift_url
    assert session.get_endpoint(service_type="image", interface="public").rstrip("/") == cloud.glance_url


@pytest.mark.parametrize(
    "disk_format, data, virtual_size",
    [("raw", os.urandom(MiB + 123), None), ("qcow2", empty_qcow2(10 * MiB), 10 * MiB)],
    ids=["raw", "qcow2"],
)
def test_image_upload_becomes_active(cloud, disk_format, data, virtual_size):
    glance = GlanceClient("2", session=cloud.sync_session())
    image = glance.images.create(name=f"smoke-{disk_format}", disk_format=disk_format, container_format="bare")
    glance.images.upload(image.id, io.BytesIO(data), image_size=len(data))

    image = glance.images.get(image.id)
    assert image.status == "active"
    assert image.owner == cloud.services_project_id
    assert image.size == len(data)
    assert image.os_hash_algo == "sha512"
    assert image.os_hash_value == hashlib.sha512(data).hexdigest()
    assert image.checksum == hashlib.md5(data).hexdigest()
    if virtual_size is not None:
        assert image.virtual_size == virtual_size
    assert b"".join(glance.images.data(image.id)) == data


def server_errors_in_log(path, since: int) -> list[str]:
    """Access-log lines of 5xx answers written after byte offset `since`."""
    with open(path, "rb") as log:
        log.seek(since)
        lines = log.read().decode(errors="replace").splitlines()
    return [line for line in lines if '" 50' in line or "database is locked" in line]


def test_concurrent_uploads_all_become_active(cloud):
    # 4 uploaders at once, each creating and uploading 5 images in a row. With sqlite as Glance's
    # database this gave 500 "database is locked" in every run; PostgreSQL must give none.
    threads, per_thread = 4, 5
    glance_log = cloud.logs / "glance.log"
    log_offset = glance_log.stat().st_size

    def create_and_upload(n: int) -> list[tuple[str, bytes]]:
        glance = GlanceClient("2", session=cloud.sync_session())
        uploaded = []
        for round_ in range(per_thread):
            data = os.urandom(MiB + n * per_thread + round_)
            image = glance.images.create(name=f"concurrent-{n}-{round_}", disk_format="raw", container_format="bare")
            glance.images.upload(image.id, io.BytesIO(data), image_size=len(data))
            uploaded.append((image.id, data))
        return uploaded

    with ThreadPoolExecutor(threads) as pool:
        uploaded = [item for items in pool.map(create_and_upload, range(threads)) for item in items]

    glance = GlanceClient("2", session=cloud.sync_session())
    images = [glance.images.get(image_id) for image_id, _ in uploaded]
    assert [image.status for image in images] == ["active"] * threads * per_thread
    assert [(image.size, image.os_hash_value) for image in images] == [
        (len(data), hashlib.sha512(data).hexdigest()) for _, data in uploaded
    ]
    assert server_errors_in_log(glance_log, log_offset) == []
    for image in images:
        glance.images.delete(image.id)


def test_public_swift_container_is_anonymously_readable_not_writable(cloud):
    swift = swiftclient.Connection(session=cloud.sync_session())
    container = f"public-{uuid.uuid4().hex[:8]}"
    swift.put_container(container, headers={"X-Container-Read": ".r:*,.rlistings"})
    swift.put_object(container, "streams/v1/index.json", b'{"index": {}}', content_type="application/json")

    url = f"{cloud.swift_url}/{container}"
    response = requests.get(f"{url}/streams/v1/index.json", timeout=10)
    assert response.status_code == 200
    assert response.content == b'{"index": {}}'
    assert requests.get(url, timeout=10).text.split() == ["streams/v1/index.json"]

    assert requests.put(f"{url}/intruder", data=b"x", timeout=10).status_code in (401, 403)
    assert requests.delete(f"{url}/streams/v1/index.json", timeout=10).status_code in (401, 403)


def test_private_swift_container_is_not_anonymously_readable(cloud):
    swift = swiftclient.Connection(session=cloud.sync_session())
    swift.put_container("private")
    swift.put_object("private", "secret", b"s")
    assert requests.get(f"{cloud.swift_url}/private/secret", timeout=10).status_code == 401


@pytest.mark.parametrize("name", ["keystone", "glance", "swift-proxy", "postgres"])
def test_a_killed_service_comes_back_on_the_same_port(cloud, name):
    glance = GlanceClient("2", session=cloud.sync_session())
    before = glance.images.create(name=f"before-{name}-restart", disk_format="raw", container_format="bare")
    cloud.stop_service(name)
    if name == "postgres":
        with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", cloud.postgres_port), 2):
            pass
    else:
        with pytest.raises(requests.ConnectionError):
            requests.get(cloud.auth_url if name == "keystone" else cloud.glance_url if name == "glance"
                         else cloud.swift_url, timeout=5)  # fmt: skip
    cloud.start_service(name)

    session = cloud.sync_session()
    glance = GlanceClient("2", session=session)
    listed = glance.images.list(filters={"name": before.name})  # a generator: the request is made here
    assert [image.id for image in listed] == [before.id]
    assert swiftclient.Connection(session=session).head_account()["x-account-container-count"].isdigit()
    if name == "postgres":  # Glance writes again, through fresh database connections
        image = glance.images.create(name="after-postgres-restart", disk_format="raw", container_format="bare")
        glance.images.upload(image.id, io.BytesIO(b"x" * 1000), image_size=1000)
        assert glance.images.get(image.id).status == "active"


@pytest.fixture
def own_cloud(tmp_path):
    """A cloud of the test's own, for tests that stop a whole cloud: the module's stays up for the others."""
    with LocalCloud(tmp_path / "own-cloud") as cloud:
        yield cloud


def test_restart_on_the_same_workdir_keeps_images(own_cloud):
    cloud = own_cloud
    glance = GlanceClient("2", session=cloud.sync_session())
    image = glance.images.create(name="survives-restart", disk_format="raw", container_format="bare")
    glance.images.upload(image.id, io.BytesIO(b"kept" * 1000), image_size=4000)

    cloud.stop()
    cloud.start()

    glance = GlanceClient("2", session=cloud.sync_session())
    assert glance.images.get(image.id).status == "active"
    assert b"".join(glance.images.data(image.id)) == b"kept" * 1000


def proc_stat(pid: int | str) -> tuple[str, int] | None:
    """(state, parent) of a process, None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[1])


def is_alive(pid: int) -> bool:
    stat = proc_stat(pid)
    return stat is not None and stat[0] != "Z"  # a zombie (orphans wait for init to reap them) holds nothing


def children_of(pids: list[int]) -> list[int]:
    """Direct children (PostgreSQL's run in sessions of their own, so not in their parent's group)."""
    stats = {int(entry): proc_stat(entry) for entry in os.listdir("/proc") if entry.isdigit()}
    return [pid for pid, stat in stats.items() if stat is not None and stat[1] in pids]


def test_stop_leaves_nothing_running(own_cloud):
    cloud = own_cloud
    pids = [int(line) for line in (cloud.workdir / "pids").read_text().split()]
    ports = [int(url.rsplit(":", 1)[1].split("/")[0]) for url in (cloud.auth_url, cloud.glance_url, cloud.swift_url)]
    ports.append(cloud.postgres_port)
    assert len(pids) == 7  # postgres, keystone, glance, 3 swift back-ends, swift proxy
    children = children_of(pids)
    assert children  # gunicorn workers, PostgreSQL's background processes

    cloud.stop()

    assert not [pid for pid in pids + children if is_alive(pid)]
    assert not LocalCloud.kill_leftovers(cloud.workdir)
    for port in ports:
        with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
