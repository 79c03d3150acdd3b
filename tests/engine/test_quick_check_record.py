"""The quick check's record (quick_check.py): what invalidates it before any request is made."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from simplestreams_sync import quick_check

PROJECT = "p1"
CONTENT_ID = "auto.sync"


def image(image_id: str, **fields) -> dict:
    return {
        "id": image_id,
        "name": f"auto-sync/{image_id}",
        "status": "active",
        "owner": PROJECT,
        "content_id": CONTENT_ID,
        "updated_at": "2026-01-01T00:00:00Z",
        "size": 10,
        "os_hash_algo": "sha512",
        "os_hash_value": "ab",
        "protected": False,
        "visibility": "public",
        **fields,
    }


def test_glance_fingerprint_ignores_order_and_images_that_are_not_ours():
    ours = [image("a"), image("b")]
    others = [image("c", owner="someone else"), image("d", content_id="other.sync")]

    assert quick_check.glance_fingerprint(ours[::-1] + others, CONTENT_ID, PROJECT) == quick_check.glance_fingerprint(
        ours, CONTENT_ID, PROJECT
    )


@pytest.mark.parametrize(
    "change",
    [
        {"updated_at": "2026-02-01T00:00:00Z"},
        {"status": "deactivated"},
        {"os_hash_value": "cd"},
        {"protected": True},
        {"latest": "true"},
    ],
)
def test_glance_fingerprint_moves_with_any_change_of_an_image(change):
    assert quick_check.glance_fingerprint(
        [image("a", **change)], CONTENT_ID, PROJECT
    ) != quick_check.glance_fingerprint([image("a")], CONTENT_ID, PROJECT)


def test_glance_fingerprint_moves_when_an_image_goes():
    assert quick_check.glance_fingerprint([image("a")], CONTENT_ID, PROJECT) != quick_check.glance_fingerprint(
        [image("a"), image("b")], CONTENT_ID, PROJECT
    )


class Server:
    """An HTTP server on 127.0.0.1 that logs requests ("GET /path") and answers each as `answer` says."""

    def __init__(self, answer):
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self._answer(b"")

            def do_POST(self):
                self._answer(self.rfile.read(int(self.headers.get("Content-Length", 0))))

            def _answer(self, body: bytes):
                outer.requests.append(f"{self.command} {self.path}")
                status, headers, content = answer(self.command, self.path, dict(self.headers), body)
                self.send_response(status)
                for name, value in {**headers, "Content-Length": str(len(content))}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(content)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc_info):
        self.httpd.shutdown()
        self.httpd.server_close()


SOURCE_DOC = b'{"index": {}}'


PASSWORD = "s3cret"
TOKEN = "t0k3n"
TOKEN_PATH = "/v3/auth/tokens"
LISTED = f"/v2/images?owner={PROJECT}&content_id={CONTENT_ID}&limit=100"
LISTED_HIDDEN = f"/v2/images?owner={PROJECT}&content_id={CONTENT_ID}&os_hidden=true&limit=100"


def catalog(keystone_public: str = "https://keystone.public:5000/v3") -> list[dict]:
    """A Keystone v3 catalog: keystone, Swift and Glance, each on three interfaces."""

    def service(service_type: str, public: str, internal: str) -> dict:
        urls = {"public": public, "internal": internal, "admin": internal}
        endpoints = [
            {"id": f"{service_type}-{interface}", "interface": interface, "region": "R1", "region_id": "R1", "url": url}
            for interface, url in urls.items()
        ]
        return {"type": service_type, "name": service_type, "id": service_type, "endpoints": endpoints}

    return [
        service("identity", keystone_public, "http://keystone.internal:5000/v3"),
        service("object-store", "https://swift.public/v1/AUTH_p1", "http://swift.internal/v1/AUTH_p1"),
        service("image", "https://glance.public:9292", "http://glance.internal:9292"),
    ]


def test_catalog_fingerprint_ignores_order_and_other_services():
    listed = catalog()
    reordered = [{**service, "endpoints": service["endpoints"][::-1]} for service in listed[::-1]]
    without_glance = [service for service in listed if service["type"] != "image"]

    assert quick_check.catalog_fingerprint(reordered) == quick_check.catalog_fingerprint(listed)
    assert quick_check.catalog_fingerprint(without_glance) == quick_check.catalog_fingerprint(listed)


def test_catalog_fingerprint_moves_with_keystones_public_url():
    assert quick_check.catalog_fingerprint(catalog("https://keystone.example:5000/v3")) != (
        quick_check.catalog_fingerprint(catalog())
    )


@pytest.fixture
def served():
    """What the server answers: the source document, Glance's listings by path (hidden images: none), the
    project Keystone scopes a token to and the catalog in its answer (tests may change them)."""
    return {
        "source": SOURCE_DOC,
        "glance": {LISTED: json.dumps({"images": [image("a")]}).encode(), LISTED_HIDDEN: b'{"images": []}'},
        "project": PROJECT,
        "catalog": catalog(),
    }


def _keystone(served: dict, body: bytes) -> tuple[int, dict, bytes]:
    """Keystone's answer to a password authentication scoped to a project (POST /v3/auth/tokens)."""
    auth = json.loads(body)["auth"]
    user = auth["identity"]["password"]["user"]
    if (user["name"], user["domain"]["name"], user["password"]) != ("sync", "Default", PASSWORD):
        return 401, {}, b'{"error": {"code": 401}}'
    assert auth["scope"] == {"project": {"name": "services", "domain": {"name": "Default"}}}
    token = {"project": {"id": served["project"]}, "catalog": served["catalog"]}
    return 201, {"X-Subject-Token": TOKEN}, json.dumps({"token": token}).encode()


@pytest.fixture
def recorded(tmp_path, served):
    """A state dir with a record of a run that read one source document and listed one image."""
    mirrors = tmp_path / "mirrors.yaml"
    mirrors.write_text("mirror_list: []\n")
    identity = tmp_path / "identity.yaml"
    identity.write_text(f"auth_url: http://127.0.0.1/v3\nusername: sync\npassword: {PASSWORD}\n")

    def answer(method: str, path: str, headers: dict, body: bytes) -> tuple[int, dict, bytes]:
        if method == "POST":
            return _keystone(served, body)
        if not path.startswith("/v2/images"):
            return 200, {}, served["source"]
        if headers.get("X-Auth-Token") != TOKEN:
            return 401, {}, b""
        return (200, {}, served["glance"][path]) if path in served["glance"] else (404, {}, b"")

    with Server(answer) as server:
        record = quick_check.Record(
            code=quick_check.code_fingerprint(),
            inputs=quick_check.input_digests([str(mirrors), str(identity)]),
            source=[{"url": f"{server.url}/streams/v1/index.json", "sha256": _sha256(SOURCE_DOC), "proxy": None}],
            user_agent="test",
            identity_file=str(identity),
            keystone={
                "token_url": f"{server.url}/v3/auth/tokens",
                "user": "sync",
                "user_domain": "Default",
                "project": "services",
                "project_domain": "Default",
            },
            verify=True,
            glance_endpoint=server.url,
            glance_images=quick_check.glance_fingerprint([image("a")], CONTENT_ID, PROJECT),
            content_id=CONTENT_ID,
            project_id=PROJECT,
            catalog=quick_check.catalog_fingerprint(catalog()),
        )
        quick_check.save(tmp_path / "state", record)
        yield tmp_path / "state", mirrors, server


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_record_whose_observations_hold_is_current(recorded):
    state_dir, _, server = recorded

    assert quick_check.still_current(state_dir) is not None
    assert sorted(server.requests) == [
        "GET /streams/v1/index.json",
        f"GET {LISTED}",
        f"GET {LISTED_HIDDEN}",
        f"POST {TOKEN_PATH}",
    ]


def test_a_moved_keystone_public_url_in_the_catalog_invalidates(recorded, served):
    """The metadata names keystone's public URL: a new one there means publishing again."""
    state_dir, _, server = recorded
    served["catalog"] = catalog("https://keystone.example:5000/v3")

    assert quick_check.still_current(state_dir) is None
    assert server.requests.count(f"POST {TOKEN_PATH}") == 1


def test_a_changed_input_file_invalidates_without_a_request(recorded):
    state_dir, mirrors, server = recorded
    mirrors.write_text("mirror_list: [] # edited\n")

    assert quick_check.still_current(state_dir) is None
    assert server.requests == []


def test_the_record_holds_neither_token_nor_password(recorded):
    state_dir, _, _ = recorded
    quick_check.still_current(state_dir)

    text = (state_dir / quick_check.RECORD_FILE).read_text()

    assert TOKEN not in text and PASSWORD not in text
    assert not {"token", "token_expires"} & json.loads(text).keys()


def test_keystone_refusing_the_password_invalidates(recorded, tmp_path):
    state_dir, _, server = recorded
    identity = tmp_path / "identity.yaml"
    digest_before = quick_check.file_digest(str(identity))
    identity.write_text(identity.read_text().replace(PASSWORD, "changed"))
    data = json.loads((state_dir / quick_check.RECORD_FILE).read_text())
    data["inputs"][str(identity)] = quick_check.file_digest(str(identity))  # as if the run had read it
    assert data["inputs"][str(identity)] != digest_before
    (state_dir / quick_check.RECORD_FILE).write_text(json.dumps(data))

    assert quick_check.still_current(state_dir) is None
    assert f"POST {TOKEN_PATH}" in server.requests
    assert not any(request.startswith("GET /v2/") for request in server.requests)


def test_a_token_scoped_to_another_project_invalidates(recorded, served):
    state_dir, _, server = recorded
    served["project"] = "another-project"

    assert quick_check.still_current(state_dir) is None
    assert not any(request.startswith("GET /v2/") for request in server.requests)


def test_a_record_with_a_token_is_rewritten_without_it(tmp_path):
    old = {"version": 1, "code": "c", "token": "gAAAAold", "token_expires": "2026-01-01T00:00:00+00:00"}
    (tmp_path / quick_check.RECORD_FILE).write_text(json.dumps(old))
    (tmp_path / quick_check.RECORD_FILE).chmod(0o600)

    assert quick_check.load(tmp_path) is None
    assert json.loads((tmp_path / quick_check.RECORD_FILE).read_text()) == {"version": 1, "code": "c"}
    assert stat.S_IMODE((tmp_path / quick_check.RECORD_FILE).stat().st_mode) == 0o600
    assert quick_check.drop_token(tmp_path) is False  # nothing left to drop


def test_a_record_from_other_code_is_not_trusted(recorded):
    state_dir, _, server = recorded
    data = json.loads((state_dir / quick_check.RECORD_FILE).read_text())
    data["code"] = "0" * 64
    (state_dir / quick_check.RECORD_FILE).write_text(json.dumps(data))

    assert quick_check.still_current(state_dir) is None
    assert server.requests == []


def test_changed_source_bytes_invalidate(recorded, served):
    state_dir, _, _ = recorded
    served["source"] = b'{"index": {"new": {}}}'

    assert quick_check.still_current(state_dir) is None


def test_a_changed_glance_listing_invalidates(recorded, served):
    state_dir, _, _ = recorded
    served["glance"][LISTED] = json.dumps({"images": [image("a", status="deactivated")]}).encode()

    assert quick_check.still_current(state_dir) is None


def test_glance_pages_are_all_read(recorded, served):
    state_dir, _, server = recorded
    served["glance"][LISTED] = json.dumps({"images": [], "next": "/v2/images?marker=x"}).encode()
    served["glance"]["/v2/images?marker=x"] = json.dumps({"images": [image("a")]}).encode()

    assert quick_check.still_current(state_dir) is not None
    assert "GET /v2/images?marker=x" in server.requests


def test_glance_fingerprint_is_the_same_for_raw_json_and_glanceclient_objects():
    raw = image("a", self="/v2/images/a")  # glanceclient's image objects have no "self"

    assert quick_check.glance_fingerprint([raw], CONTENT_ID, PROJECT) == quick_check.glance_fingerprint(
        [image("a")], CONTENT_ID, PROJECT
    )


@pytest.mark.parametrize("text", ["[]", '{"version": 1}', "{not json"])
def test_a_record_that_is_not_one_is_no_record(tmp_path, text):
    (tmp_path / quick_check.RECORD_FILE).write_text(text)

    assert quick_check.still_current(tmp_path) is None


def test_a_file_source_is_read_from_the_file(recorded, tmp_path):
    state_dir, _, _ = recorded
    document = tmp_path / "index.json"
    document.write_bytes(SOURCE_DOC)
    data = json.loads((state_dir / quick_check.RECORD_FILE).read_text())
    data["source"] = [{"url": document.as_uri(), "sha256": _sha256(SOURCE_DOC), "proxy": None}]
    (state_dir / quick_check.RECORD_FILE).write_text(json.dumps(data))

    assert quick_check.still_current(state_dir) is not None
    document.write_bytes(b"{}")
    assert quick_check.still_current(state_dir) is None


def test_an_image_listed_only_as_hidden_counts_as_listed(recorded, served):
    """The full run lists hidden images too (api.py): a record holding one is current when Glance still
    lists it, hidden, and is not once it is gone."""
    state_dir, _, _ = recorded
    hidden = image("b", os_hidden=True)
    data = json.loads((state_dir / quick_check.RECORD_FILE).read_text())
    data["glance_images"] = quick_check.glance_fingerprint([image("a"), hidden], CONTENT_ID, PROJECT)
    (state_dir / quick_check.RECORD_FILE).write_text(json.dumps(data))
    served["glance"][LISTED_HIDDEN] = json.dumps({"images": [hidden]}).encode()

    assert quick_check.still_current(state_dir) is not None
    served["glance"][LISTED_HIDDEN] = b'{"images": []}'
    assert quick_check.still_current(state_dir) is None


def test_a_glance_listing_that_fails_invalidates(recorded, served):
    state_dir, _, _ = recorded
    del served["glance"][LISTED_HIDDEN]

    assert quick_check.still_current(state_dir) is None


HEAVY_MODULES = ("requests", "keystoneauth1", "glanceclient", "pydantic", "simplestreams", "urllib3", "jinja2")


def test_the_quick_check_decides_without_a_heavy_import(recorded):
    """In a fresh interpreter, as cron starts the sync: a current record is confirmed with none of the
    full run's libraries loaded."""
    state_dir, _, _ = recorded
    program = (
        "import sys\n"
        "from simplestreams_sync import __main__, quick_check\n"
        f"assert quick_check.still_current({str(state_dir)!r}) is not None\n"
        f"print(sorted(name for name in sys.modules if name.split('.')[0] in {HEAVY_MODULES!r}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(quick_check.__file__).parents[1])}

    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, env=env, timeout=60)

    assert (done.returncode, done.stdout, done.stderr) == (0, "[]\n", "")
