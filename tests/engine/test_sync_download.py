"""Image downloads that drop or stall resume with Range + If-Range, against the test source server."""

import pytest

from simplestreams_sync import source_http as source_module
from simplestreams_sync import timeouts
from simplestreams_sync.source_http import Download, HttpSession, SourceChanged, SourceError
from tests.localcloud.source import SourceBuilder
from tests.localcloud.source_server import SourceServer


@pytest.fixture(scope="module")
def tree(tmp_path_factory, test_key):
    builder = SourceBuilder(tmp_path_factory.mktemp("download-source"), test_key)
    item = builder.add_image(ftype="root.tar.xz", size=3 << 20, seed=7)
    builder.write()
    return builder, item


@pytest.fixture(scope="module")
def module_server(tmp_path_factory, tree):
    with SourceServer(tree[0].root, tmp_path_factory.mktemp("download-server")) as server:
        yield server


@pytest.fixture
def server(module_server, monkeypatch):
    monkeypatch.setattr(source_module, "RESUME_BACKOFF", 0.01)
    module_server.clear_faults()
    module_server.clear_requests()
    yield module_server
    module_server.clear_faults()


def download(server, item) -> bytes:
    fetched = Download(server.url + item.path, HttpSession("gss-download-test"))
    try:
        return b"".join(fetched)
    finally:
        fetched.close()


def test_no_fault_means_one_plain_request(server, tree):
    builder, item = tree
    assert download(server, item) == (builder.root / item.path).read_bytes()
    assert [(e["status"], e["range"]) for e in server.wait_for_requests(1)] == [(200, None)]


def test_a_stalled_connection_resumes_from_the_last_whole_chunk_it_had(server, tree, monkeypatch):
    builder, item = tree
    monkeypatch.setattr(timeouts, "SOURCE_READ", 0.5)
    stall_at = source_module.CHUNK_SIZE + 1000
    server.set_faults({"/" + item.path: {"kind": "stall", "at": stall_at, "seconds": 30}})

    assert download(server, item) == (builder.root / item.path).read_bytes()

    # A read that times out loses what it had of its chunk, which the resume asks for again.
    logged = server.wait_for_requests(2)
    assert [(e["status"], e["range"]) for e in logged] == [(200, None), (206, f"bytes={source_module.CHUNK_SIZE}-")]
    assert sum(e["bytes_sent"] for e in logged) == item.size + 1000


def test_resumes_that_bring_nothing_end_in_a_clear_error(server, tree):
    _, item = tree
    server.set_faults({"/" + item.path: {"kind": "truncate", "after": 1000}})
    with pytest.raises(
        SourceError,
        match=r"connection lost \(\w+\) after 1000 bytes; 5 attempts to resume "
        "from there brought no more",
    ):
        download(server, item)
    assert len(server.wait_for_requests(6)) == 6


def test_a_source_that_ignores_ranges_means_a_restart(server, tree):
    _, item = tree
    server.set_faults({"/" + item.path: {"kind": "drop", "at": [1000], "ranges": False}})
    with pytest.raises(SourceChanged, match="answered a request to resume at byte 1000 with HTTP 200, not 206"):
        download(server, item)
