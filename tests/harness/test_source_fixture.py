"""The generated simplestreams source (tests/localcloud/source.py) and its HTTP server."""

import functools
import hashlib
import json
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import requests
from simplestreams import mirrors, util

from tests.localcloud.source import (
    SourceBuilder,
    corrupt_item,
    file_digests,
    make_qcow2,
    make_test_key,
    processes_mentioning,
    qemu_img_available,
    tamper_signed_file,
)
from tests.localcloud.source_server import SourceServer

needs_qemu_img = pytest.mark.skipif(not qemu_img_available(), reason="qemu-img missing: apt-get install qemu-utils")

UA = "gss-fixture-test/1.0"


@pytest.fixture(scope="module")
def key(test_key):
    return test_key


@pytest.fixture(scope="module")
def tarball_source(tmp_path_factory, key):
    """A signed source whose items are plain bytes, so it needs no qemu-img."""
    builder = SourceBuilder(tmp_path_factory.mktemp("tarball-source"), key)
    builder.add_image(serial="20210720", ftype="root.tar.xz", size=300_000, seed=1)
    builder.add_image(serial="20210801", ftype="root.tar.xz", size=200_000, seed=2)
    builder.add_image(release="jammy", version="22.04", ftype="lxd.tar.xz", size=1000, seed=3)
    builder.write()
    return builder


@pytest.fixture(scope="module")
def module_server(tmp_path_factory, tarball_source):
    with SourceServer(tarball_source.root, tmp_path_factory.mktemp("server")) as server:
        yield server


@pytest.fixture
def server(module_server):
    module_server.clear_faults()
    module_server.clear_requests()
    yield module_server
    module_server.clear_faults()


def read_signed_file(path: Path, keyring: Path) -> dict:
    return json.loads(util.read_signed(path.read_text(), keyring=str(keyring)))


def fetch(url: str) -> requests.Response:
    return requests.get(url, headers={"User-Agent": UA}, timeout=10)


# --- the signed tree ------------------------------------------------------------------------


def test_signed_index_and_products_verify_with_simplestreams(tarball_source, key):
    streams = tarball_source.root / "streams" / "v1"
    index = read_signed_file(streams / "index.sjson", key.keyring)
    entry = index["index"]["com.ubuntu.cloud:released:download"]
    assert index["format"] == "index:1.0"
    assert entry["datatype"] == "image-downloads"
    assert entry["path"] == "streams/v1/com.ubuntu.cloud:released:download.sjson"
    assert entry["products"] == ["com.ubuntu.cloud:server:20.04:amd64", "com.ubuntu.cloud:server:22.04:amd64"]

    products = read_signed_file(tarball_source.root / entry["path"], key.keyring)
    assert products == json.loads((streams / "com.ubuntu.cloud:released:download.json").read_text())
    assert products["format"] == "products:1.0"


def test_unsigned_index_points_to_unsigned_products(tarball_source):
    index = json.loads((tarball_source.root / "streams/v1/index.json").read_text())
    assert index["index"]["com.ubuntu.cloud:released:download"]["path"] == (
        "streams/v1/com.ubuntu.cloud:released:download.json"
    )


def test_builder_without_key_writes_only_json(tmp_path):
    builder = SourceBuilder(tmp_path, None)
    builder.add_image(ftype="root.tar.xz", size=10, seed=1)
    assert builder.write() == tmp_path / "streams/v1/index.json"
    assert sorted(p.name for p in (tmp_path / "streams/v1").iterdir()) == [
        "com.ubuntu.cloud:released:download.json",
        "index.json",
    ]


def test_tampered_sjson_is_rejected(tarball_source, key, tmp_path):
    copy = tmp_path / "index.sjson"
    shutil.copy(tarball_source.root / "streams/v1/index.sjson", copy)
    tamper_signed_file(copy)
    json.loads(util.read_signed(copy.read_text(), checked=False))  # still valid JSON
    with pytest.raises(subprocess.CalledProcessError):
        read_signed_file(copy, key.keyring)


def test_sjson_signed_by_another_key_is_rejected(tarball_source, other_key):
    with pytest.raises(subprocess.CalledProcessError):
        read_signed_file(tarball_source.root / "streams/v1/index.sjson", other_key.keyring)


def test_products_list_items_as_the_real_catalog(tarball_source):
    products = json.loads((tarball_source.root / "streams/v1/com.ubuntu.cloud:released:download.json").read_text())
    product = products["products"]["com.ubuntu.cloud:server:20.04:amd64"]
    assert {k: v for k, v in product.items() if k != "versions"} == {
        "aliases": "20.04,f,focal",
        "arch": "amd64",
        "os": "ubuntu",
        "release": "focal",
        "release_codename": "Focal Fossa",
        "release_title": "20.04 LTS",
        "support_eol": "2025-05-29",
        "supported": True,
        "version": "20.04",
    }
    version = product["versions"]["20210720"]
    assert version["pubname"] == "ubuntu-focal-20.04-amd64-server-20210720"
    assert version["label"] == "release"
    item = version["items"]["root.tar.xz"]
    assert item["path"] == ("server/releases/focal/release-20210720/ubuntu-20.04-server-cloudimg-amd64-root.tar.xz")
    sha256, md5, size = file_digests(tarball_source.root / item["path"])
    assert (item["sha256"], item["md5"], item["size"]) == (sha256, md5, size)


def test_key_close_stops_gpg_agent(tmp_path):
    home = tmp_path / "gnupg"
    key = make_test_key(home)
    key.clearsign("{}\n")  # signing starts the agent
    key.close()
    assert not processes_mentioning(str(key.home))


# --- qcow2 items ----------------------------------------------------------------------------


@needs_qemu_img
def test_make_qcow2_is_a_safe_qcow2_distinct_per_seed(tmp_path):
    format_inspector = pytest.importorskip("oslo_utils.imageutils.format_inspector")
    make_qcow2(tmp_path / "a.img", 1 << 20, seed=1)
    make_qcow2(tmp_path / "a-again.img", 1 << 20, seed=1)
    make_qcow2(tmp_path / "b.img", 1 << 20, seed=2, incompressible=True)

    inspector = format_inspector.detect_file_format(str(tmp_path / "b.img"))
    assert str(inspector) == "qcow2"
    assert inspector.virtual_size == 1 << 20
    inspector.safety_check()  # no backing file, no data-file
    sha = {name: file_digests(tmp_path / name)[0] for name in ("a.img", "a-again.img", "b.img")}
    assert sha["a.img"] == sha["a-again.img"] != sha["b.img"]


@needs_qemu_img
def test_corrupt_item_changes_sha256_not_size(tmp_path):
    builder = SourceBuilder(tmp_path, None)
    item = builder.add_image(size=256 << 10, seed=5)
    corrupt_item(tmp_path, item.path)
    sha256, _, size = file_digests(tmp_path / item.path)
    assert size == item.size and sha256 != item.sha256
    assert (tmp_path / item.path).read_bytes()[:4] == b"QFI\xfb"


@needs_qemu_img
def test_mirror_reader_reads_signed_source_over_http(tmp_path, key):
    builder = SourceBuilder(tmp_path / "source", key)
    image = builder.add_image(serial="20210720", size=128 << 10, seed=1)
    builder.add_image(serial="20210720", ftype="root.tar.xz", size=100, seed=1)
    builder.write()
    with SourceServer(builder.root, tmp_path / "server") as server:
        policy = functools.partial(util.policy_read_signed, keyring=str(key.keyring))
        reader = mirrors.UrlMirrorReader(server.url, policy=policy, user_agent=UA)
        index = reader.load_products("streams/v1/index.sjson")
        products = reader.load_products(index["index"][builder.content_id]["path"])
        with reader.source(image.path) as source:
            data = source.read()
        logged = server.wait_for_requests(3)

    version = products["products"][image.product_id]["versions"]["20210720"]
    assert set(version["items"]) == {"disk1.img", "root.tar.xz"}
    assert hashlib.sha256(data).hexdigest() == image.sha256
    assert {entry["user_agent"] for entry in logged} == {UA}


# --- the server -----------------------------------------------------------------------------


def tarball(source: SourceBuilder, serial: str = "20210720"):
    return next(i for i in source.items if i.serial == serial)


def test_server_serves_file_bytes_and_logs_user_agent(server, tarball_source):
    item = tarball(tarball_source)
    response = fetch(server.url + item.path)
    assert response.status_code == 200
    assert response.headers["Content-Length"] == str(item.size)
    assert hashlib.sha256(response.content).hexdigest() == item.sha256
    assert server.wait_for_requests(1) == [
        {
            "method": "GET",
            "path": "/" + item.path,
            "user_agent": UA,
            "status": 200,
            "bytes_sent": item.size,
            "fault": None,
            "range": None,
            "if_range": None,
        }
    ]


def test_server_answers_404_outside_root_and_for_missing_files(server):
    assert fetch(server.url + "streams/v1/missing.json").status_code == 404
    assert fetch(server.url + "../../etc/passwd").status_code == 404
    assert fetch(server.url + "%2e%2e/%2e%2e/etc/passwd").status_code == 404


def test_fault_truncate_sends_full_length_then_closes(server, tarball_source):
    item = tarball(tarball_source)
    server.set_faults({item.path: {"kind": "truncate", "after": 1000}})
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        fetch(server.url + item.path)
    assert server.wait_for_requests(1)[0]["bytes_sent"] == 1000


def test_fault_short_sends_honest_prefix(server, tarball_source):
    item = tarball(tarball_source)
    server.set_faults({"/" + item.path: {"kind": "short", "bytes": 4096}})
    response = fetch(server.url + item.path)
    assert response.status_code == 200
    assert response.content == (tarball_source.root / item.path).read_bytes()[:4096]


def test_fault_replace_serves_other_file(server, tarball_source):
    item, other = tarball(tarball_source), tarball(tarball_source, "20210801")
    replacement = str(tarball_source.root / other.path)
    server.set_faults({item.path: {"kind": "replace", "with": replacement}})
    assert hashlib.sha256(fetch(server.url + item.path).content).hexdigest() == other.sha256


def test_fault_hold_sends_the_rest_once_released(server, tarball_source, tmp_path):
    item = tarball(tarball_source)
    release = tmp_path / "release"
    server.set_faults({item.path: {"kind": "hold", "after": 1000, "until": str(release)}})
    with requests.get(server.url + item.path, stream=True, timeout=10) as response:
        first = response.raw.read(1000)
        assert server.requests() == []  # still held: logged only once the response is sent
        release.touch()
        rest = response.raw.read()
    assert first + rest == (tarball_source.root / item.path).read_bytes()
    assert server.wait_for_requests(1)[0]["bytes_sent"] == item.size


def test_fault_status_answers_code_the_given_times(server):
    server.set_faults({"streams/v1/index.sjson": {"kind": "status", "code": 503, "times": 2}})
    codes = [fetch(server.url + "streams/v1/index.sjson").status_code for _ in range(3)]
    assert codes == [503, 503, 200]
    server.set_faults({"streams/v1/index.sjson": {"kind": "status", "code": 503, "times": 2}})
    assert fetch(server.url + "streams/v1/index.sjson").status_code == 503  # re-armed


def fetch_range(url: str, start: int, if_range: str | None = None) -> requests.Response:
    headers = {"User-Agent": UA, "Range": f"bytes={start}-", **({"If-Range": if_range} if if_range else {})}
    return requests.get(url, headers=headers, timeout=10)


def test_range_is_answered_206_from_that_byte(server, tarball_source):
    item = tarball(tarball_source)
    data = (tarball_source.root / item.path).read_bytes()
    first = fetch(server.url + item.path)
    assert first.headers["Accept-Ranges"] == "bytes"

    by_etag = fetch_range(server.url + item.path, 1000, if_range=first.headers["ETag"])
    by_date = fetch_range(server.url + item.path, 2000, if_range=first.headers["Last-Modified"])

    assert (by_etag.status_code, by_etag.content) == (206, data[1000:])
    assert by_etag.headers["Content-Range"] == f"bytes 1000-{item.size - 1}/{item.size}"
    assert (by_date.status_code, by_date.content) == (206, data[2000:])
    assert fetch_range(server.url + item.path, item.size).status_code == 416


def test_if_range_that_does_not_match_gets_the_whole_file(server, tarball_source):
    item = tarball(tarball_source)
    response = fetch_range(server.url + item.path, 1000, if_range='"another-version"')
    assert response.status_code == 200
    assert hashlib.sha256(response.content).hexdigest() == item.sha256


def test_fault_drop_closes_once_at_each_offset(server, tarball_source):
    item = tarball(tarball_source)
    data = (tarball_source.root / item.path).read_bytes()
    server.set_faults({item.path: {"kind": "drop", "at": [1000, 5000]}})
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        fetch(server.url + item.path)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        fetch_range(server.url + item.path, 1000)
    rest = fetch_range(server.url + item.path, 5000)
    assert (rest.status_code, rest.content) == (206, data[5000:])
    assert [entry["bytes_sent"] for entry in server.wait_for_requests(3)] == [1000, 4000, item.size - 5000]


def test_fault_drop_without_ranges_always_serves_the_whole_file(server, tarball_source):
    item = tarball(tarball_source)
    server.set_faults({item.path: {"kind": "drop", "at": [1000], "ranges": False}})
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        fetch(server.url + item.path)
    again = fetch_range(server.url + item.path, 1000)
    assert again.status_code == 200 and "Accept-Ranges" not in again.headers
    assert hashlib.sha256(again.content).hexdigest() == item.sha256


def test_fault_drop_with_new_etag_makes_if_range_fail(server, tarball_source):
    item = tarball(tarball_source)
    server.set_faults({item.path: {"kind": "drop", "at": [1000], "new_etag_after_drop": True}})
    with requests.get(server.url + item.path, stream=True, timeout=10) as first:
        etag, modified = first.headers["ETag"], first.headers["Last-Modified"]
    for validator in (etag, modified):
        again = fetch_range(server.url + item.path, 1000, if_range=validator)
        assert again.status_code == 200 and again.headers["ETag"] != etag


def test_a_fault_without_etag_serves_no_etag_and_ranges_by_last_modified(server, tarball_source):
    item = tarball(tarball_source)
    data = (tarball_source.root / item.path).read_bytes()
    server.set_faults({item.path: {"kind": "drop", "at": [], "etag": False}})
    first = fetch(server.url + item.path)
    assert "ETag" not in first.headers

    resumed = fetch_range(server.url + item.path, 1000, if_range=first.headers["Last-Modified"])

    assert (resumed.status_code, resumed.content) == (206, data[1000:])
    logged = server.wait_for_requests(2, path="/" + item.path)
    assert [(entry["range"], entry["if_range"]) for entry in logged] == [
        (None, None),
        ("bytes=1000-", first.headers["Last-Modified"]),
    ]


def test_fault_stall_sends_nothing_past_the_offset_then_closes(server, tarball_source):
    item = tarball(tarball_source)
    server.set_faults({item.path: {"kind": "stall", "at": 1000, "seconds": 0.2}})
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        fetch(server.url + item.path)
    assert fetch(server.url + item.path).status_code == 200  # once only
    assert [entry["bytes_sent"] for entry in server.wait_for_requests(2)] == [1000, item.size]


def test_clear_faults_serves_normally_again(server, tarball_source):
    item = tarball(tarball_source)
    server.set_faults({item.path: {"kind": "status", "code": 500}})
    assert fetch(server.url + item.path).status_code == 500
    server.clear_faults()
    assert fetch(server.url + item.path).status_code == 200


def test_stop_leaves_no_process(tarball_source, tmp_path):
    server = SourceServer(tarball_source.root, tmp_path).start()
    pid, port = server.pid, server.port
    server.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    server.stop()  # idempotent
