"""Fixtures for functional tests: one real local cloud per session (and one each over TLS and with no object
store, and the packed charm, each made once per session), a fresh signed source per test.

Each test owns a distinct `content_id` (from its own `content_id_template`), so its images and its
products file in Swift never mix with another test's, and the cloud can be shared.
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import parse_qs, urlencode, urlparse

import glanceclient
import pytest
import requests
import yaml
from keystoneclient.v3 import client as keystone_client
from ops import testing

from sync_charm import host, sync_process
from tests.localcloud import seeds
from tests.localcloud.cloud import LocalCloud
from tests.localcloud.engine_cli import engine_argv, engine_env
from tests.localcloud.source import SourceBuilder
from tests.localcloud.source_server import SourceServer

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"


@pytest.fixture(scope="session", autouse=True)
def cloud_seeds(tmp_path_factory):
    """Every new LocalCloud of the session copies Keystone's empty schema and PostgreSQL's initdb from
    the first one that made them (tests/localcloud/seeds.py)."""
    seeds.use(tmp_path_factory.mktemp("cloud-seeds"))
    yield
    seeds.use(None)


@pytest.fixture(scope="session")
def cloud(tmp_path_factory):
    with LocalCloud(tmp_path_factory.mktemp("cloud")) as local_cloud:
        yield local_cloud


@pytest.fixture(scope="session")
def tls_cloud(tmp_path_factory):
    """Keystone, Glance and Swift over HTTPS only, with a throw-away CA (LocalCloud(tls=True))."""
    with LocalCloud(tmp_path_factory.mktemp("tls-cloud"), tls=True) as local_cloud:
        yield local_cloud


@pytest.fixture(scope="session")
def bare_cloud(tmp_path_factory):
    """Keystone and Glance, and no object store in the catalog: the unit serves the metadata itself."""
    with LocalCloud(tmp_path_factory.mktemp("no-object-store"), object_store=None) as local_cloud:
        yield local_cloud


PACKED_BASE = "24.04"  # the pack the packed-charm tests drive: its venv is ubuntu@24.04's (Python 3.12)


@dataclass
class Packing:
    """`scripts/pack --base PACKED_BASE` running in the background, its output in files."""

    output: Path
    log: Path
    process: subprocess.Popen

    @classmethod
    def start(cls, tmp_path_factory) -> Packing:
        output = tmp_path_factory.mktemp("packed")
        state = tmp_path_factory.mktemp("charmcraft-home")
        env = {
            **os.environ,
            "XDG_STATE_HOME": str(state / "state"),
            "XDG_DATA_HOME": str(state / "data"),
            "XDG_CONFIG_HOME": str(state / "config"),
            "XDG_RUNTIME_DIR": str(state / "run"),
        }
        log = state / "pack.log"
        with open(log, "wb") as log_file:
            process = subprocess.Popen(
                [str(ROOT / "scripts" / "pack"), "--base", PACKED_BASE, str(output)],
                env=env, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        return cls(output, log, process)

    def charm(self) -> Path:
        """The packed .charm, once the packing has ended well."""
        returncode = self.process.wait(timeout=1200)
        said = self.log.read_text(errors="replace")
        assert returncode == 0, said[-6000:]
        (charm,) = self.output.glob(f"*_ubuntu@{PACKED_BASE}-*.charm")
        assert "(for testing here, not for deploying)" in said
        return charm

    def stop(self) -> None:
        """Stop a packing still under way (the session ended before its packed-charm tests)."""
        if self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)  # scripts/pack removes its build directory
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@pytest.fixture(scope="session", autouse=True)
def packing(request, tmp_path_factory):
    """When the session has packed-charm tests, the packing starts with the first functional test and
    goes on while the tests before those run."""
    if not any("packed_charm" in getattr(item, "fixturenames", ()) for item in request.session.items):
        yield None
        return
    started = Packing.start(tmp_path_factory)
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="session")
def packed_charm(packing) -> Path:
    """The charm as `scripts/pack` builds it with charmcraft for PACKED_BASE, packed once per session."""
    return packing.charm()


@dataclass
class ServedSource:
    builder: SourceBuilder
    server: SourceServer

    @property
    def url(self) -> str:
        return self.server.url

    def add_image(self, **fields):
        return self.builder.add_image(**fields)

    def write(self) -> Path:
        return self.builder.write()


@pytest.fixture
def source(tmp_path, test_key):
    """A signed source tree (empty until the test adds images and writes it), served on 127.0.0.1."""
    builder = SourceBuilder(tmp_path / "source", test_key)
    with SourceServer(builder.root, tmp_path / "source-server") as server:
        yield ServedSource(builder, server)


@pytest.fixture
def glance(cloud):
    """An admin Glance client, to look at what the sync did."""
    return glanceclient.Client("2", session=cloud.admin_session())


@dataclass
class SyncRunner:
    """Renders mirrors.yaml + identity.yaml as the charm does and runs the sync's command line."""

    workdir: Path
    cloud: LocalCloud
    keyring: Path
    content_id_template: str
    settings: dict = field(default_factory=dict)
    identity_override: dict | None = None

    @property
    def content_id(self) -> str:
        return self.content_id_template.format(region=self.cloud.sync_identity["region"])

    @property
    def state_dir(self) -> Path:
        return self.workdir / "state"

    @property
    def metadata_url(self) -> str:
        """Where the sync publishes the metadata."""
        return f"{self.cloud.swift_url}/simplestreams/data"

    def mirror(self, url: str, **fields) -> dict:
        entry = {
            "url": url,
            "path": "streams/v1/index.sjson",
            "max": 1,
            "item_filters": ["arch~(x86_64|amd64)", "ftype~(disk1.img|disk.img)"],
        }
        entry.update(fields)
        return entry

    def write_files(self, mirrors: list[dict]) -> tuple[Path, Path]:
        config = {
            "mirror_list": mirrors,
            "keyring": str(self.keyring),
            "state_dir": str(self.state_dir),
            "content_id_template": self.content_id_template,
            "region": self.cloud.sync_identity["region"],
            **self.settings,
        }
        mirrors_file = self.workdir / "mirrors.yaml"
        identity_file = self.workdir / "identity.yaml"
        mirrors_file.write_text(yaml.safe_dump(config))
        identity_file.write_text(yaml.safe_dump(self.identity_override or self.cloud.sync_identity))
        os.chmod(identity_file, 0o600)
        return mirrors_file, identity_file

    def command(self, mirrors: list[dict], *extra: str) -> list[str]:
        mirrors_file, identity_file = self.write_files(mirrors)
        return engine_argv(mirrors_file, identity_file, *extra)

    def run(self, mirrors: list[dict], *extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            self.command(mirrors, *extra), capture_output=True, text=True, env=sync_environment(), timeout=600
        )

    def start(self, mirrors: list[dict], *extra: str) -> subprocess.Popen:
        """Start a sync in the background (stdout/stderr captured as text)."""
        return subprocess.Popen(
            self.command(mirrors, *extra),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=sync_environment(),
        )

    def wait_for_progress(self, condition, timeout: float = 60.0) -> dict:
        """Poll progress.json until condition(progress) holds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                progress = json.loads((self.state_dir / "progress.json").read_text())
            except (OSError, ValueError):
                progress = None
            if progress and condition(progress):
                return progress
            time.sleep(0.1)
        raise AssertionError(f"progress never reached the expected state within {timeout}s")


def sync_environment() -> dict:
    return engine_env()


@pytest.fixture
def sync(tmp_path, cloud, test_key, request):
    test_name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")
    runner = SyncRunner(tmp_path / "sync", cloud, test_key.keyring, f"test.{test_name}.{{region}}")
    runner.workdir.mkdir()
    return runner


def our_images(glance_client, content_id: str) -> list[dict]:
    """Every image with this content_id, whatever its status, hidden or not."""
    return [
        dict(image)
        for hidden in ({}, {"os_hidden": True})
        for image in glance_client.images.list(filters={"content_id": content_id, **hidden})
        if image.get("content_id") == content_id
    ]


def visible_images(glance_client, content_id: str) -> list[dict]:
    """The images with this content_id that `openstack image list` shows."""
    return [
        dict(image)
        for image in glance_client.images.list(filters={"content_id": content_id})
        if image.get("content_id") == content_id
    ]


QUICK = "(quick check; --full-check redoes it all)"


def assert_full_run(result: subprocess.CompletedProcess, sync: SyncRunner, *, images: int, published: bool) -> None:
    """The full sync ran, not just the quick check: it ended by publishing the metadata of `images` images
    (published) or by finding that metadata up to date, as only the full run does."""
    if published:
        expected = f"published metadata for {images} images to {sync.metadata_url}"
    else:
        expected = f"metadata for {images} images at {sync.metadata_url} is up to date"
    said = [
        line for line in result.stdout.splitlines() if line.startswith(("published metadata for ", "metadata for "))
    ]
    assert said == [expected], result.stdout
    assert QUICK not in result.stdout


def created_ids(output: str) -> list[str]:
    return re.findall(r"^created (\S+): ", output, flags=re.M)


def published_products(cloud: LocalCloud, content_id: str) -> dict:
    """The products file in Swift, read anonymously as Juju would."""
    url = f"{cloud.swift_url}/simplestreams/data/streams/v1/{content_id}.json"
    response = requests.get(url, timeout=10)
    response.raise_for_status()
    return response.json()


def published_image_ids(products: dict) -> set[str]:
    return {
        item["id"]
        for product in products["products"].values()
        for version in product["versions"].values()
        for item in version["items"].values()
    }


UNFINISHED = {"queued", "saving", "killed", "uploading", "importing"}


def assert_cloud_is_clean(glance_client, cloud: LocalCloud, content_id: str, source: ServedSource) -> None:
    """What every fault must leave: nothing unfinished, no duplicate, no active image whose bytes differ
    from the source, and Swift metadata listing exactly our active images."""
    images = our_images(glance_client, content_id)
    assert [i["name"] for i in images if i["status"] in UNFINISHED] == []
    keys = [(i["product_name"], i["version_name"], i["item_name"]) for i in images]
    assert len(keys) == len(set(keys)), f"duplicates: {keys}"
    sha512_by_key = {}
    for item in source.builder.items:
        data = (source.builder.root / item.path).read_bytes()
        sha512_by_key[(item.product_id, item.serial, item.ftype)] = hashlib.sha512(data).hexdigest()
    active = [i for i in images if i["status"] == "active"]
    for image in active:
        key = (image["product_name"], image["version_name"], image["item_name"])
        assert image["os_hash_value"] == sha512_by_key[key], f"{image['name']} differs from the source"
    try:
        products = published_products(cloud, content_id)
    except requests.HTTPError:
        assert active == [], "active images but no metadata published"
        return
    assert published_image_ids(products) == {i["id"] for i in active}


# -- Nova, as the sync asks it which images servers use ------------------------------------------

OTHER_PROJECT_ID = "0123456789abcdef0123456789abcdef"  # servers belong to a project other than the sync's


@dataclass
class RecordedNova:
    """Nova cannot run here (it needs a hypervisor): the one faked service. It answers
    `GET /v2.1/servers/detail` as Nova does for what the sync asks: each token is validated with the real
    Keystone (401 otherwise); without `all_tenants` only the token's project's servers are listed, and
    `all_tenants` needs the admin role (403 otherwise); `limit` (at most `max_limit`) and `marker` page
    the list, with a `next` link in `servers_links` while a page is full. Every request is recorded."""

    keystone_auth_url: str
    admin_session: object
    servers: list[dict] = field(default_factory=list)  # as Nova shows them; tenant_id: OTHER_PROJECT_ID unless set
    max_limit: int = 1000  # Nova's [api] max_limit
    requests_seen: list[str] = field(default_factory=list)  # the path and query of each request
    answers: list[int] = field(default_factory=list)  # the status of each answer

    @property
    def listings(self) -> int:
        """How many times the servers were listed: the first page of each listing has no marker."""
        return sum(1 for path in self.requests_seen if "marker=" not in path)

    def answer(self, path: str, token: str | None, base_url: str) -> tuple[int, dict]:
        url = urlparse(path)
        query = parse_qs(url.query)
        if url.path != "/v2.1/servers/detail":
            return 404, {"itemNotFound": {"message": f"no such resource {url.path}"}}
        access = self._validate(token)
        if access is None:
            return 401, {"error": {"message": "The request you have made requires authentication."}}
        servers = [{"tenant_id": OTHER_PROJECT_ID, **server} for server in self.servers]
        if query.get("all_tenants", ["0"])[0] not in ("0", "false", "False"):
            if "admin" not in {role["name"] for role in access["roles"]}:
                return 403, {"forbidden": {"message": "Policy doesn't allow all_tenants to be performed."}}
        else:
            servers = [server for server in servers if server["tenant_id"] == access["project"]["id"]]
        if "marker" in query:
            ids = [server["id"] for server in servers]
            if query["marker"][0] not in ids:
                return 400, {"badRequest": {"message": f"marker [{query['marker'][0]}] not found"}}
            servers = servers[ids.index(query["marker"][0]) + 1 :]
        limit = min(int(query.get("limit", [self.max_limit])[0]), self.max_limit)
        page = servers[:limit]
        body: dict = {"servers": page}
        if page and len(page) == limit:
            next_query = {**{key: values[0] for key, values in query.items()}, "marker": page[-1]["id"]}
            body["servers_links"] = [{"rel": "next", "href": f"{base_url}{url.path}?{urlencode(next_query)}"}]
        return 200, body

    def _validate(self, token: str | None) -> dict | None:
        """The token as Keystone describes it (roles, project), or None when Keystone does not know it."""
        if not token:
            return None
        response = self.admin_session.get(
            f"{self.keystone_auth_url}/auth/tokens", headers={"X-Subject-Token": token}, raise_exc=False
        )
        return response.json()["token"] if response.status_code == 200 else None


class _NovaHandler(BaseHTTPRequestHandler):
    nova: ClassVar[RecordedNova]

    def do_GET(self):
        host, port = self.server.server_address[:2]
        status, body = self.nova.answer(self.path, self.headers.get("X-Auth-Token"), f"http://{host}:{port}")
        self.nova.requests_seen.append(self.path)
        self.nova.answers.append(status)
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def nova(cloud):
    """A compute endpoint in the catalog served by RecordedNova; removed again afterwards."""
    recorded = RecordedNova(cloud.auth_url, cloud.admin_session())
    handler = type("NovaHandler", (_NovaHandler,), {"nova": recorded})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    keystone = keystone_client.Client(session=cloud.admin_session())
    service = keystone.services.create(name="nova", type="compute")
    url = f"http://127.0.0.1:{server.server_address[1]}/v2.1"
    endpoints = [
        keystone.endpoints.create(service, url, interface=interface, region=cloud.sync_identity["region"])
        for interface in ("public", "internal", "admin")
    ]
    try:
        yield recorded
    finally:
        for endpoint in endpoints:
            keystone.endpoints.delete(endpoint)
        keystone.services.delete(service)
        server.shutdown()
        server.server_close()
        thread.join()


# -- the charm against the local cloud ---------------------------------------------------------


@pytest.fixture
def charm_machine(tmp_path, monkeypatch):
    """The charm's machine paths under tmp_path; the real engine, importable from the repo's src/, run
    as the test's own user (tests/functional/test_packed_charm.py runs it as the charm's system user)."""
    paths = host.Paths.under(tmp_path / "machine")
    monkeypatch.setattr(host, "PATHS", paths)
    monkeypatch.setattr(host, "SYNC_USER", pwd.getpwuid(os.geteuid()).pw_name)
    monkeypatch.setattr(host, "UPDATE_CA_CERTIFICATES", ["true"])
    monkeypatch.setattr(host, "install_packages", lambda: None)
    monkeypatch.setattr(sync_process, "start_background_sync", lambda charm_dir: 0)
    # the hook that starts the empty metadata's publish sees it end (test_charm_endpoint.py: the background)
    monkeypatch.setattr(sync_process, "PUBLISH_WAIT", 600)
    monkeypatch.setattr(sync_process, "ENGINE", [sys.executable, "-m", "simplestreams_sync"])
    monkeypatch.setattr(sync_process, "python_path", lambda charm_dir: str(SRC))
    return paths


def keystone_relation(cloud, **overrides) -> testing.Relation:
    answer = keystone_answer(cloud)
    if "password" in overrides:
        answer["service_password"] = overrides.pop("password")
    return testing.Relation(
        "identity-service", remote_app_name="keystone", remote_units_data={0: {**answer, **overrides}}
    )


def keystone_answer(cloud) -> dict:
    """What the keystone charm puts on its unit data for our service user."""
    identity = cloud.sync_identity
    auth = urlparse(identity["auth_url"])
    return {
        "service_host": auth.hostname,
        "service_port": str(auth.port),
        "service_protocol": auth.scheme,
        "auth_host": auth.hostname,
        "auth_port": str(auth.port),
        "auth_protocol": auth.scheme,
        "internal_host": auth.hostname,
        "internal_port": str(auth.port),
        "internal_protocol": auth.scheme,
        "api_version": "3",
        "service_username": identity["username"],
        "service_password": identity["password"],
        "service_tenant": identity["project_name"],
        "service_tenant_id": cloud.services_project_id,
        "service_domain": identity["user_domain_name"],
        "service_domain_id": "default",
    }


@pytest.fixture
def product_streams_service(cloud):
    """Registers our request as the keystone charm does (service image-stream of type product-streams);
    removed afterwards."""
    from keystoneclient.v3 import client as keystone_v3

    ks = keystone_v3.Client(session=cloud.admin_session(), interface="public")
    created = []

    def register(request: dict) -> None:
        service = ks.services.create(request["service"], type="product-streams")
        created.append(service)
        for interface in ("public", "internal", "admin"):
            ks.endpoints.create(service, request[f"{interface}_url"], interface=interface, region=request["region"])

    yield register
    for service in created:
        ks.services.delete(service)
