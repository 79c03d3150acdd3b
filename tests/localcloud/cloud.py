"""A real Keystone + Glance + Swift on 127.0.0.1, for functional tests and benchmarks.

Glance's database is a private PostgreSQL server (Debian's `postgresql` package, newest version
under /usr/lib/postgresql) that LocalCloud starts on its own port with its data under
workdir/postgres: with sqlite, Glance answered 500 "database is locked" as soon as two uploads ran
at once. Keystone stays on sqlite (nothing writes to it concurrently).

    with LocalCloud(tmp_path / "cloud") as cloud:
        glance = glanceclient.Client("2", session=cloud.sync_session())

or, from a shell:  python -m tests.localcloud.cloud --workdir DIR [--tls] [--object-store rgw] [--glance-store rbd]

The object store is OpenStack Swift, or with object_store="rgw" a real Ceph RGW serving the Swift API
(tests/localcloud/rgw.py), registered in Keystone as the ceph-radosgw charm registers it, by default as
with its namespace-tenants=true (rgw_namespace_tenants=False: as with the charm's default, false).
With object_store=None there is none, and no object-store endpoint in the catalog (a cloud whose unit
serves the metadata itself).

Glance stores images on its file store, or with glance_store="rbd" in the RBD pool `images` of a local Ceph
cluster, configured as the glance charm configures it when related to ceph-mon (show_image_direct_url, its
expose-image-locations); a `volumes` pool takes Cinder-style clones (`cloud.rbd("clone", ...)`). With
object_store="rgw" too, one Ceph cluster serves both.

With tls=True, LocalCloud makes a throw-away CA (workdir/tls/ca.pem, `cloud.ca_file`) and a server
certificate for 127.0.0.1 and localhost signed by it, and Keystone, Glance and the Swift proxy answer
over HTTPS only (the catalog lists https:// endpoints). Glance and Swift check tokens with Keystone
trusting that CA; the Swift backend servers stay plain HTTP on 127.0.0.1 (they are no endpoint).

Every server binary is taken from the Python environment running this module
(next to sys.executable), so the servers run with the same packages as the tests.
Known pitfalls are explained (PITFALL:) where they are handled.
"""

from __future__ import annotations

import argparse
import atexit
import base64
import datetime
import getpass
import importlib.metadata
import ipaddress
import os
import pwd
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import requests
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3 as ks_identity

from tests.localcloud import rgw, seeds

BIN_DIR = Path(sys.executable).parent
HOST = "127.0.0.1"
# Every process we start carries this variable, set to the workdir: kill_leftovers()
# only ever kills processes whose environment says they belong to that workdir.
WORKDIR_ENV = "LOCALCLOUD_WORKDIR"
START_TIMEOUT = 120.0
STOP_GRACE = 5.0
SERVICES_PROJECT = "services"
SYNC_USER = "image-stream"
DOMAIN = "Default"
# (name, ready path): in start order. Any HTTP answer on the path means "up";
# None: not HTTP (PostgreSQL: "up" is a successful login).
SERVICES = (
    ("postgres", None),
    ("keystone", "/v3"),
    ("glance", "/versions"),
)
OBJECT_STORE_SERVICES = {
    "swift": (
        ("swift-account", "/"),
        ("swift-container", "/"),
        ("swift-object", "/"),
        ("swift-proxy", "/healthcheck"),
    ),
    "rgw": rgw.RGW_SERVICES,
    None: (),
}
GLANCE_STORES = ("file", "rbd")
# The service that answers the object-store API, per object store.
OBJECT_STORE_ENDPOINT_SERVICE = {"swift": "swift-proxy", "rgw": "rgw"}
SWIFT_BACKENDS = ("account", "container", "object")
POSTGRES_ROOT = Path("/usr/lib/postgresql")  # Debian: one <version>/bin per installed major version
POSTGRES_SYSTEM_USER = "postgres"  # runs initdb and the server when we are root (both refuse root)
POSTGRES_SUPERUSER = "postgres"
GLANCE_DB = "glance"  # database and role
# In a service's argv: replaced at launch by /proc/self/fd/N, N an open descriptor of its `dir_fd` directory.
# PITFALL: PostgreSQL runs as the `postgres` user when we are root, and the workdir usually sits under
# directories only root may enter (pytest's tmp dirs are 0700). A path through the inherited descriptor
# reaches workdir/postgres (owned by `postgres`) without searching those parents; relative paths do not
# work, as postgres makes its data directory path absolute.
DIR_FD = "{dir_fd}"

# Served over HTTPS when tls=True (the catalog's endpoints); the others stay plain HTTP.
TLS_SERVICES = ("keystone", "glance", "swift-proxy")

# Builds the three one-device rings in a child process, so the caller's process
# never imports swift (and eventlet).
_RING_SCRIPT = """
import sys
from swift.common.ring import RingBuilder
swift_dir = sys.argv[1]
for arg in sys.argv[2:]:
    kind, port = arg.split("=")
    builder = RingBuilder(10, 1, 1)
    builder.add_dev({"region": 1, "zone": 1, "ip": "127.0.0.1", "port": int(port),
                     "device": "d1", "weight": 1.0})
    builder.rebalance()
    builder.save(f"{swift_dir}/{kind}.builder")
    builder.get_ring().save(f"{swift_dir}/{kind}.ring.gz")
"""

# PITFALL: keystone's oslo.config parses sys.argv, so gunicorn's own arguments make
# every worker exit with code 2 (and requests hang). Reset argv before loading the app.
_KEYSTONE_SHIM = """
import sys
sys.argv = sys.argv[:1]
from keystone.wsgi.api import application  # noqa: E402,F401
"""


@dataclass
class _Service:
    name: str
    port: int
    ready_path: str
    argv: list[str]
    popen: subprocess.Popen | None = None
    stop_signal: int = signal.SIGTERM
    dir_fd: Path | None = None  # see DIR_FD
    ready: Callable[[], bool] | None = None  # when not HTTP: True once the service serves
    run_as: dict = field(default_factory=dict)  # Popen's user/group/extra_groups
    env: dict = field(default_factory=dict)  # added to the environment every service gets
    scheme: str = "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{HOST}:{self.port}"

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None


class LocalCloud:
    def __init__(
        self,
        workdir: Path,
        region: str = "RegionOne",
        image_conversion: bool = False,
        tls: bool = False,
        token_lifetime: int | None = None,
        glance_options: dict | None = None,
        object_store: str | None = "swift",
        rgw_namespace_tenants: bool = True,
        glance_store: str = "file",
        ceph_osd_bytes: int = 1 << 30,
    ):
        if object_store not in OBJECT_STORE_SERVICES:
            choices = ", ".join(map(repr, OBJECT_STORE_SERVICES))
            raise ValueError(f"object_store must be one of {choices}, not {object_store!r}")
        if glance_store not in GLANCE_STORES:
            raise ValueError(f"glance_store must be one of {', '.join(GLANCE_STORES)}, not {glance_store!r}")
        if tls and (object_store == "rgw" or glance_store != "file"):
            raise ValueError("tls=True is only implemented with object_store='swift' or None and glance_store='file'")
        self.workdir = Path(workdir).resolve()
        self.object_store = object_store
        self.glance_store = glance_store
        self.ceph_osd_bytes = ceph_osd_bytes  # room in the in-memory OSD for RGW's objects and RBD's images
        self.rgw_namespace_tenants = rgw_namespace_tenants
        self.token_lifetime = token_lifetime  # seconds: keystone's [token] expiration (default 1 hour)
        self.glance_options = glance_options or {}  # extra glance-api.conf [DEFAULT] options, e.g. image_size_cap
        self.region = region
        self.image_conversion = image_conversion
        self.tls = tls
        self.ca_file: Path | None = None  # with tls: the throw-away CA (PEM) the servers' certificate chains to
        self._tls_files: TlsFiles | None = None
        self.logs = self.workdir / "logs"
        self.auth_url: str | None = None
        self.admin: dict | None = None
        self.sync_identity: dict | None = None
        self.glance_url: str | None = None
        self.postgres_port: int | None = None  # Glance's database server on 127.0.0.1
        self.swift_url: str | None = None  # the object store's account URL (Swift's, or RGW's Swift API)
        self._ceph: rgw.CephCluster | None = None  # with RGW or Glance on RBD
        self.services_project_id: str | None = None  # owner of the images the sync user creates
        self.startup_seconds: float | None = None
        self._services: dict[str, _Service] = {}
        self._passwords: dict[str, str] = {}
        self._pids_lock = threading.Lock()

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> LocalCloud:
        began = time.monotonic()
        if self.image_conversion and not shutil.which("qemu-img"):
            raise RuntimeError("image_conversion needs qemu-img (Debian package qemu-utils)")
        uses_ceph = self.object_store == "rgw" or self.glance_store == "rbd"
        rgw_needed, rbd_needed = self.object_store == "rgw", self.glance_store == "rbd"
        if uses_ceph and (missing := rgw.missing_programs(rgw=rgw_needed, rbd=rbd_needed)):
            raise RuntimeError(f"object_store={self.object_store!r} glance_store={self.glance_store!r} needs "
                               f"{', '.join(missing)}: install the Debian packages {' '.join(rgw.PACKAGES)} "
                               "(scripts/bootstrap does)")  # fmt: skip
        self.stop()
        self.kill_leftovers(self.workdir)
        self._make_dirs()
        table = (*SERVICES, *(rgw.CEPH_SERVICES if uses_ceph else ()), *OBJECT_STORE_SERVICES[self.object_store])
        ports = _free_ports(len(table))
        self._services = {
            name: _Service(name, port, ready_path, []) for (name, ready_path), port in zip(table, ports, strict=False)
        }
        if self.tls:  # a new CA each start: the servers restart with it, nothing else keeps the old one
            self._tls_files = make_tls_files(self.workdir / "tls", "LocalCloud")
            self.ca_file = self._tls_files.ca
            for name in TLS_SERVICES:
                if name in self._services:
                    self._services[name].scheme = "https"
        self._passwords = {user: secrets.token_urlsafe(16) for user in ("admin", "glance", "swift", SYNC_USER)}
        self._passwords["glance-db"] = secrets.token_urlsafe(16)
        self.auth_url = f"{self._services['keystone'].url}/v3"
        self.glance_url = self._services["glance"].url
        self.postgres_port = self._services["postgres"].port
        if uses_ceph:
            self._ceph = rgw.CephCluster(
                self.workdir / "ceph",
                self._services["ceph-mon"].port,
                rgw_port=self._services["rgw"].port if rgw_needed else None,
                keystone=self._keystone_for_rgw() if rgw_needed else None,
                namespace_tenants=self.rgw_namespace_tenants,
                rbd=rbd_needed,
                osd_bytes=self.ceph_osd_bytes,
            )
        self._write_configs()
        self._define_commands()
        atexit.register(self.stop)
        try:
            with ThreadPoolExecutor(4) as pool:
                ceph = pool.submit(self._bring_up_ceph) if self._ceph else None
                bring_ups = [self._bring_up_keystone, self._bring_up_glance]
                if self.object_store is not None:
                    bring_ups.append(self._bring_up_rgw if self.object_store == "rgw" else self._bring_up_swift)
                futures = [pool.submit(bring_up, ceph) for bring_up in bring_ups]
                for future in [*futures, *([ceph] if ceph else [])]:
                    future.result()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def stop(self) -> None:
        atexit.unregister(self.stop)
        services = [s for s in reversed(self._services.values()) if s.popen is not None]
        if not services:
            return
        _terminate([s.popen for s in services], grace=STOP_GRACE, signals=[s.stop_signal for s in services])
        for service in services:
            service.popen = None
        self._write_pids()

    def __enter__(self) -> LocalCloud:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def stop_service(self, name: str, graceful: bool = False) -> None:
        """Kill one service abruptly (SIGKILL), as a crash would; graceful: SIGTERM, as a restart would.

        PITFALL: a radosgw killed abruptly leaves its watches on RGW's control objects for 30 s (the OSD's
        client watch timeout), and until they expire every request that changes RGW's metadata (the first
        request of a new user, a new container) waits for them; radosgw removes them when it stops on SIGTERM."""
        service = self._service(name)
        if service.popen is not None:
            _terminate([service.popen], grace=STOP_GRACE if graceful else 0)
            service.popen = None
            self._write_pids()

    def start_service(self, name: str) -> None:
        """Start a service again on the same port and wait until it answers."""
        service = self._service(name)
        if not service.running():
            self._launch(service)
        self._wait_until_answering(service, time.monotonic() + START_TIMEOUT)

    @contextmanager
    def service_down(self, name: str, graceful: bool = False):
        """The service stopped (see stop_service) for the duration of the block, then started again (even on error)."""
        self.stop_service(name, graceful)
        try:
            yield
        finally:
            self.start_service(name)

    @staticmethod
    def kill_leftovers(workdir: Path) -> list[int]:
        """SIGKILL every process a (crashed) LocalCloud left running for `workdir`."""
        workdir = Path(workdir).resolve()
        pids_file = workdir / "pids"
        listed = {int(line) for line in pids_file.read_text().split()} if pids_file.exists() else set()
        tagged = {pid for pid in listed | set(_pids_tagged_with(workdir)) if _is_tagged(pid, workdir)}
        # PostgreSQL's children overwrite their environment (process titles): found by parent instead.
        victims = sorted(tagged | _descendants(tagged))
        for pid in victims:
            _signal(pid, signal.SIGKILL)
        _wait_until(lambda: not any(_is_alive(pid) for pid in victims), timeout=10)
        pids_file.unlink(missing_ok=True)
        return victims

    def rbd(self, *args: str) -> str:
        """Run the `rbd` command line on the cloud's Ceph cluster (glance_store="rbd"); its output.
        E.g. rbd("clone", f"images/{image_id}@snap", "volumes/volume-1"), as Cinder makes a volume."""
        if self._ceph is None or self.glance_store != "rbd":
            raise RuntimeError("rbd() needs a LocalCloud started with glance_store='rbd'")
        result = subprocess.run(self._ceph.rbd_command(*args), capture_output=True, text=True,
                                env=self._child_env(), timeout=60)  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"rbd {shlex.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
        return result.stdout

    @property
    def ceph_conf(self) -> Path | None:
        """The Ceph cluster's ceph.conf (with RGW or Glance on RBD), else None."""
        return self._ceph.conf if self._ceph is not None else None

    @contextmanager
    def image_endpoints_at(self, url: str):
        """Glance's catalog endpoints (every interface) at `url` for the block, e.g. a proxy in front of
        Glance; back to Glance itself after it (even on error). Clients see it from their next token."""
        from keystoneclient.v3 import client as keystone_v3

        ks = keystone_v3.Client(session=self.admin_session(), interface="public")
        service = _first(ks.services.list(type="image"))
        endpoints = ks.endpoints.list(service=service, region=self.region)
        try:
            for endpoint in endpoints:
                ks.endpoints.update(endpoint, url=url)
            yield
        finally:
            for endpoint in endpoints:
                ks.endpoints.update(endpoint, url=endpoint.url)

    @property
    def object_store_service(self) -> str:
        """The name of the service answering the object-store API (for stop_service and service_down)."""
        if self.object_store is None:
            raise ValueError("this cloud has no object store")
        return OBJECT_STORE_ENDPOINT_SERVICE[self.object_store]

    # ------------------------------------------------------------------ sessions

    def admin_session(self) -> ks_session.Session:
        return _session(self.admin, self._verify())

    def sync_session(self) -> ks_session.Session:
        return _session(self.sync_identity, self._verify())

    def _verify(self) -> str | bool:
        """Requests' `verify`: the throw-away CA with tls, else the default (True)."""
        return str(self.ca_file) if self.ca_file is not None else True

    def pids(self) -> list[int]:
        """PIDs of the running service processes (each one leads its own process group)."""
        return list(self.process_groups().values())

    def process_groups(self) -> dict[str, int]:
        """Each running service's name and process group (its leader's PID)."""
        return {name: s.popen.pid for name, s in self._services.items() if s.popen is not None}

    # ------------------------------------------------------------------ bring-up

    def _bring_up_keystone(self, ceph: Future | None) -> None:
        conf = str(self.workdir / "keystone" / "keystone.conf")
        # What `keystone-manage fernet_setup` and `credential_setup` would make, without their ~2 s of CPU each.
        for repository in ("fernet-keys", "credential-keys"):
            _fernet_key_repository(self.workdir / "keystone" / repository)
        database = self.workdir / "keystone" / "keystone.db"
        new_database = not database.exists()
        if not (new_database and seeds.restore("keystone-schema", database)):
            self._run("keystone-manage", "--config-file", conf, "db_sync")
            if new_database:
                seeds.keep("keystone-schema", database)
        self._run(
            "keystone-manage", "--config-file", conf, "bootstrap",
            f"--bootstrap-password={self._passwords['admin']}",  # "=": a password may start with "-"
            "--bootstrap-region-id", self.region,
            "--bootstrap-admin-url", self.auth_url,
            "--bootstrap-internal-url", internal_url(self.auth_url),
            "--bootstrap-public-url", self.auth_url,
        )  # fmt: skip
        self._start_and_wait("keystone")
        self.admin = self._credentials("admin", "admin")
        self._register_in_keystone()

    def _bring_up_glance(self, ceph: Future | None) -> None:
        made = self._bring_up_postgres()
        if made != "seeded":
            self._run("glance-manage", "--config-file", str(self.workdir / "glance" / "glance-api.conf"), "db_sync")
        if made == "initdb" and seeds.wanted("glance-database"):  # kept while the server is stopped
            self.stop_service("postgres", graceful=True)
            seeds.keep("glance-database", *self._postgres_files())
            self.start_service("postgres")
        if self.glance_store == "rbd" and ceph is not None:
            ceph.result()  # its pools made
        self._start_and_wait("glance")

    def _bring_up_swift(self, ceph: Future | None) -> None:
        rings = [f"{kind}={self._services['swift-' + kind].port}" for kind in SWIFT_BACKENDS]
        self._run(sys.executable, "-c", _RING_SCRIPT, str(self.workdir / "swift"), *rings)
        for name in ("swift-account", "swift-container", "swift-object", "swift-proxy"):
            self._launch(self._services[name])
        for name in ("swift-account", "swift-container", "swift-object", "swift-proxy"):
            self._wait_until_answering(self._services[name], time.monotonic() + START_TIMEOUT)

    def _bring_up_ceph(self) -> None:
        for command in self._ceph.monitor_setup_commands():
            self._run(*command)
        self._start_and_wait("ceph-mon")
        for command in self._ceph.osd_setup_commands():
            self._run(*command)
        self._start_and_wait("ceph-osd")

    def _bring_up_rgw(self, ceph: Future | None) -> None:
        assert ceph is not None, "RGW runs on the cloud's Ceph cluster"
        ceph.result()  # PITFALL: started before the OSD is up, radosgw waits 5 s for it
        self._start_and_wait("rgw")

    def _keystone_for_rgw(self) -> rgw.KeystoneForRgw:
        return rgw.KeystoneForRgw(
            url=self.auth_url.removesuffix("/v3"),
            user="swift",
            password=self._passwords["swift"],
            project=SERVICES_PROJECT,
            domain=DOMAIN,
        )

    def _bring_up_postgres(self) -> str:
        """Start Glance's database server; how its data came: "initdb", "seeded" (a copy of a first
        cloud's, Glance's schema in it: tests/localcloud/seeds.py) or "kept" (a reused workdir)."""
        pg = self.workdir / "postgres"
        made = "kept" if (pg / "data" / "PG_VERSION").exists() else "initdb"
        if made == "initdb":  # a new workdir, or a data dir left half-made by an interrupted initdb
            shutil.rmtree(pg / "data")
            (pg / "data").mkdir()
            if seeds.restore("glance-database", *self._postgres_files()):
                made = "seeded"
        self._own_postgres_dirs()
        if made == "initdb":
            self._run(
                str(_postgres_bin_dir() / "initdb"), "-D", f"{DIR_FD}/data", "--username", POSTGRES_SUPERUSER,
                f"--pwfile={DIR_FD}/superuser-password", "--auth", "scram-sha-256",
                "--encoding", "UTF8", "--locale", "C", "--no-sync", "--no-instructions",
                dir_fd=pg, run_as=_postgres_run_as(),
            )  # fmt: skip
        self._start_and_wait("postgres")
        with closing(self._postgres_connection()) as conn, conn.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (GLANCE_DB,))
            verb = "ALTER" if cursor.fetchone() else "CREATE"  # a reused workdir: new password each start
            cursor.execute(f"{verb} ROLE {GLANCE_DB} LOGIN PASSWORD %s", (self._passwords["glance-db"],))
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (GLANCE_DB,))
            if not cursor.fetchone():
                cursor.execute(f"CREATE DATABASE {GLANCE_DB} OWNER {GLANCE_DB}")
        return made

    def _postgres_files(self) -> tuple[Path, Path]:
        """The data directory and the superuser's password file that initdb was given."""
        pg = self.workdir / "postgres"
        return pg / "data", pg / "superuser-password"

    def _own_postgres_dirs(self) -> None:
        """workdir/postgres and what is in it belong to the user that runs PostgreSQL, mode 0700."""
        pg = self.workdir / "postgres"
        password_file = pg / "superuser-password"
        if not password_file.exists():
            password_file.write_text(secrets.token_urlsafe(16) + "\n")
        run_as = _postgres_run_as()
        for path in (pg, pg / "data", pg / "run", password_file):
            if run_as:
                os.chown(path, run_as["user"], run_as["group"])
            path.chmod(0o600 if path.is_file() else 0o700)

    def set_image_updated_at(self, image_id: str, updated_at: datetime.datetime) -> None:
        """Move an image's updated_at in Glance's database: time passes for it as the test decides."""
        with closing(self._postgres_connection(GLANCE_DB)) as conn, conn.cursor() as cursor:
            naive_utc = updated_at.astimezone(datetime.timezone.utc).replace(tzinfo=None)
            cursor.execute("UPDATE images SET updated_at = %s WHERE id = %s", (naive_utc, image_id))
            if cursor.rowcount != 1:
                raise AssertionError(f"Glance's database has no image {image_id}")

    def _postgres_connection(self, dbname: str = "postgres", timeout: float = 5):
        """An autocommit connection as the superuser; the caller closes it."""
        import psycopg2

        password = (self.workdir / "postgres" / "superuser-password").read_text().strip()
        conn = psycopg2.connect(host=HOST, port=self._services["postgres"].port, user=POSTGRES_SUPERUSER,
                                password=password, dbname=dbname, connect_timeout=max(1, int(timeout)))  # fmt: skip
        conn.autocommit = True
        return conn

    def _start_and_wait(self, name: str) -> None:
        self._launch(self._services[name])
        self._wait_until_answering(self._services[name], time.monotonic() + START_TIMEOUT)

    # ------------------------------------------------------------------ keystone

    def _register_in_keystone(self) -> None:
        from keystoneclient.v3 import client as keystone_v3

        ks = keystone_v3.Client(session=self.admin_session(), interface="public")
        project = _first(ks.projects.list(name=SERVICES_PROJECT, domain="default")) or ks.projects.create(
            SERVICES_PROJECT, domain="default", description="Service users"
        )
        admin_role = _first(ks.roles.list(name="admin"))
        service_role = _first(ks.roles.list(name="service")) or ks.roles.create("service")
        for user, roles in (("glance", [admin_role, service_role]), ("swift", [admin_role, service_role]),
                            (SYNC_USER, [admin_role])):  # fmt: skip
            user_id = self._ensure_user(ks, user, project)
            for role in roles:
                ks.roles.grant(role, user=user_id, project=project)
        self._ensure_endpoints(ks, "image", "glance", self.glance_url)
        self.services_project_id = project.id
        if self.object_store is not None:
            if self.object_store == "rgw":
                object_store_url = self._ceph.swift_url_template()
            else:
                object_store_url = f"{self._services['swift-proxy'].url}/v1/AUTH_%(project_id)s"
            self._ensure_endpoints(ks, "object-store", "swift", object_store_url)
            self.swift_url = re.sub(r"[$%]\(project_id\)s", project.id, object_store_url)  # Keystone takes either form
        self.sync_identity = self._credentials(SYNC_USER, SERVICES_PROJECT)

    def _ensure_user(self, ks, name: str, project) -> str:
        password = self._passwords[name]
        user = _first(ks.users.list(name=name, domain="default"))
        if user is None:
            user = ks.users.create(name, domain="default", password=password, default_project=project)
        else:  # a reused workdir: every start() picks new passwords
            ks.users.update(user, password=password, default_project=project, enabled=True)
        return user.id

    def _ensure_endpoints(self, ks, service_type: str, name: str, url: str) -> None:
        """Public and admin endpoints at 127.0.0.1; internal ones at localhost (the same servers), so a
        test can tell which interface a client used."""
        service = _first(ks.services.list(type=service_type)) or ks.services.create(name, type=service_type)
        for interface in ("public", "internal", "admin"):
            interface_url = internal_url(url) if interface == "internal" else url
            endpoint = _first(ks.endpoints.list(service=service, interface=interface, region=self.region))
            if endpoint is None:
                ks.endpoints.create(service, interface_url, interface=interface, region=self.region)
            elif endpoint.url != interface_url:
                ks.endpoints.update(endpoint, url=interface_url)

    def _credentials(self, username: str, project_name: str) -> dict:
        return {
            "auth_url": self.auth_url,
            "username": username,
            "password": self._passwords[username],
            "project_name": project_name,
            "user_domain_name": DOMAIN,
            "project_domain_name": DOMAIN,
            "region": self.region,
        }

    # ------------------------------------------------------------------- configs

    def _make_dirs(self) -> None:
        for sub in ("logs", "keystone", "glance/images", "glance/staging", "glance/tasks", "glance/locks",
                    "postgres/data", "postgres/run"):  # fmt: skip
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)

    def _write_configs(self) -> None:
        keystone_dir, glance_dir, swift_dir = (self.workdir / d for d in ("keystone", "glance", "swift"))
        _write_ini(keystone_dir / "keystone.conf", self._keystone_conf())
        (keystone_dir / "keystone_shim.py").write_text(_KEYSTONE_SHIM)
        _write_ini(glance_dir / "glance-api.conf", self._glance_conf())
        shutil.copyfile(_glance_paste_ini(), glance_dir / "glance-api-paste.ini")
        if self._ceph is not None:
            self._ceph.write_config()
        if self.object_store != "swift":
            return
        (swift_dir / "devices" / "d1").mkdir(parents=True, exist_ok=True)
        _write_ini(swift_dir / "swift.conf", _swift_conf())
        for kind in SWIFT_BACKENDS:
            _write_ini(swift_dir / f"{kind}-server.conf", self._swift_backend_conf(kind))
        _write_ini(swift_dir / "proxy-server.conf", self._swift_proxy_conf())

    def _keystone_conf(self) -> dict:
        keystone = self.workdir / "keystone"
        return {
            "DEFAULT": {"use_stderr": "true"},
            "database": {"connection": f"sqlite:///{keystone}/keystone.db"},
            "token": {
                "provider": "fernet",
                **({"expiration": str(self.token_lifetime)} if self.token_lifetime else {}),
            },
            "fernet_tokens": {"key_repository": f"{keystone}/fernet-keys"},
            "fernet_receipts": {"key_repository": f"{keystone}/fernet-keys"},
            "credential": {"key_repository": f"{keystone}/credential-keys"},
            # bcrypt's default cost makes every password check slow; this is a test cloud.
            # (max_password_length=72, bcrypt's limit, only silences a warning on every login.)
            "identity": {"password_hash_rounds": "4", "max_password_length": "72"},
            "oslo_policy": {"enforce_new_defaults": "true", "enforce_scope": "true"},
        }

    def _glance_conf(self) -> dict:
        glance = self.workdir / "glance"
        plugins = "[image_conversion]" if self.image_conversion else "[]"
        conf = {
            "DEFAULT": {
                "use_stderr": "true",
                "enabled_backends": "local:file",
                "enabled_import_methods": "[glance-direct,web-download]",
                "worker_self_reference_url": self.glance_url,
                **{name: str(value) for name, value in self.glance_options.items()},
            },
            # PITFALL: not sqlite: concurrent uploads/updates got 500 "database is locked" there.
            "database": {
                "connection": f"postgresql+psycopg2://{GLANCE_DB}:{self._passwords['glance-db']}"
                f"@{HOST}:{self._services['postgres'].port}/{GLANCE_DB}"
            },
            "glance_store": {"default_backend": "local"},
            "local": {"filesystem_store_datadir": f"{glance}/images"},
            "os_glance_staging_store": {"filesystem_store_datadir": f"{glance}/staging"},
            "os_glance_tasks_store": {"filesystem_store_datadir": f"{glance}/tasks"},
            "image_import_opts": {"image_import_plugins": plugins},
            # PITFALL: web-download refuses loopback hosts and ports other than 80/443 by default.
            "import_filtering_opts": {"allowed_hosts": f"[{HOST},localhost]", "allowed_ports": "[]"},
            "paste_deploy": {"flavor": "keystone", "config_file": f"{glance}/glance-api-paste.ini"},
            "keystone_authtoken": self._authtoken_conf("glance"),
            "oslo_concurrency": {"lock_path": f"{glance}/locks"},
        }
        if self.image_conversion:  # needs qemu-img on PATH; only imports are converted, not uploads
            conf["image_conversion"] = {"output_format": "raw"}
        if self.glance_store == "rbd":
            self._glance_on_rbd(conf)
        return conf

    def _glance_on_rbd(self, conf: dict) -> None:
        """Images in the Ceph pool `images`, as the glance charm sets Glance up when related to ceph-mon
        (no cephx here: the `admin` user needs no keyring). The staging and tasks stores stay on files."""
        del conf["local"]
        conf["DEFAULT"] = {
            **conf["DEFAULT"],
            "enabled_backends": "ceph:rbd",
            "show_image_direct_url": "True",  # the charm's expose-image-locations: what lets Cinder/Nova clone
            **{name: str(value) for name, value in self.glance_options.items()},
        }
        conf["glance_store"] = {"default_backend": "ceph"}
        conf["ceph"] = {
            "rbd_store_pool": rgw.IMAGES_POOL,
            "rbd_store_ceph_conf": str(self._ceph.conf),
            "rbd_store_user": "admin",
            "rbd_store_chunk_size": "8",
        }

    def _authtoken_conf(self, user: str) -> dict:
        conf = {
            "www_authenticate_uri": self.auth_url,
            "auth_url": self.auth_url,
            "auth_type": "password",
            "username": user,
            "password": self._passwords[user],
            "project_name": SERVICES_PROJECT,
            "user_domain_name": DOMAIN,
            "project_domain_name": DOMAIN,
        }
        if self.ca_file is not None:  # keystonemiddleware checks tokens with keystone over HTTPS
            conf["cafile"] = str(self.ca_file)
        return conf

    def _swift_server_defaults(self, port: int) -> dict:
        swift = self.workdir / "swift"
        return {
            "bind_ip": HOST,
            "bind_port": str(port),
            "workers": "0",
            "user": getpass.getuser(),
            "swift_dir": str(swift),  # also where swift.conf is read from (default /etc/swift)
            "devices": f"{swift}/devices",
            "mount_check": "false",
            "disable_fallocate": "true",
        }

    def _swift_backend_conf(self, kind: str) -> dict:
        return {
            "DEFAULT": self._swift_server_defaults(self._services[f"swift-{kind}"].port),
            "pipeline:main": {"pipeline": f"{kind}-server"},
            f"app:{kind}-server": {"use": f"egg:swift#{kind}"},
        }

    def _swift_proxy_conf(self) -> dict:
        pipeline = ("catch_errors gatekeeper healthcheck proxy-logging listing_formats authtoken keystoneauth "
                    "copy dlo slo versioned_writes proxy-logging proxy-server")  # fmt: skip
        authtoken = {"paste.filter_factory": "keystonemiddleware.auth_token:filter_factory",
                     "delay_auth_decision": "true", **self._authtoken_conf("swift")}  # fmt: skip
        filters = ("catch_errors", "gatekeeper", "healthcheck", "proxy-logging", "listing_formats",
                   "copy", "dlo", "slo", "versioned_writes")  # fmt: skip
        defaults = self._swift_server_defaults(self._services["swift-proxy"].port)
        if self._tls_files is not None:
            # swift's own (eventlet) TLS: "should only be enabled for testing purposes", which this is.
            defaults.update(cert_file=str(self._tls_files.cert), key_file=str(self._tls_files.key))
        return {
            "DEFAULT": defaults,
            "pipeline:main": {"pipeline": pipeline},
            "app:proxy-server": {"use": "egg:swift#proxy", "account_autocreate": "true"},
            "filter:authtoken": authtoken,
            "filter:keystoneauth": {"use": "egg:swift#keystoneauth", "operator_roles": "admin, member"},
            **{f"filter:{name}": {"use": f"egg:swift#{name.replace('-', '_')}"} for name in filters},
        }

    def _define_commands(self) -> None:
        def gunicorn(name: str, app: str, *extra: str) -> list[str]:
            if self._tls_files is not None:
                extra = (*extra, "--certfile", str(self._tls_files.cert), "--keyfile", str(self._tls_files.key))
            return [
                str(BIN_DIR / "gunicorn"), app, "--bind", f"{HOST}:{self._services[name].port}",
                "--workers", "1", "-k", "gthread", "--threads", "4", "--timeout", "300",
                "--graceful-timeout", "1",  # else a gthread worker lingers ~2 s on SIGTERM
                "--access-logfile", "-",
                "--no-control-socket",  # PITFALL: gunicorn 27 shares one control socket per user otherwise
                *extra,
            ]  # fmt: skip

        swift = self.workdir / "swift"
        postgres = self._services["postgres"]
        postgres.argv = [
            str(_postgres_bin_dir() / "postgres"), "-D", f"{DIR_FD}/data",
            "-c", f"listen_addresses={HOST}", "-c", f"port={postgres.port}",
            "-c", f"unix_socket_directories={DIR_FD}/run",  # not /var/run/postgresql
            # A throw-away test database: no fsync. Commits still reach the page cache before they
            # return (synchronous_commit stays on), so a killed postgres keeps them, as a crash would.
            "-c", "fsync=off", "-c", "full_page_writes=off",
        ]  # fmt: skip
        postgres.stop_signal = signal.SIGINT  # "fast" shutdown; SIGTERM would wait for Glance to disconnect
        postgres.dir_fd = self.workdir / "postgres"
        postgres.run_as = _postgres_run_as()
        self._services["keystone"].argv = gunicorn(
            "keystone", "keystone_shim:application", "--pythonpath", str(self.workdir / "keystone")
        )
        self._services["glance"].argv = gunicorn("glance", "glance.wsgi.api:application")
        if self.glance_store == "rbd":
            modules = rgw.python_modules_dir(self.workdir / "glance" / "ceph-python")
            self._services["glance"].env = {"PYTHONPATH": str(modules), "PYTHONUNBUFFERED": "1"}
        if self._ceph is not None:
            ready_checks = self._ceph.ready_checks(self._child_env())
            for name, argv in self._ceph.argv().items():
                service = self._services[name]
                service.argv, service.ready = argv, ready_checks.get(name)
                service.stop_signal = signal.SIGKILL  # throw-away data; an OSD whose monitor left lingers 5 s
        if self.object_store != "swift":
            return
        for kind in (*SWIFT_BACKENDS, "proxy"):
            binary = BIN_DIR / f"swift-{kind}-server"
            self._services[f"swift-{kind}"].argv = [str(binary), str(swift / f"{kind}-server.conf"), "-v"]

    # ----------------------------------------------------------------- processes

    def _child_env(self) -> dict:
        env = dict(os.environ)
        env.update({
            WORKDIR_ENV: str(self.workdir),
            # PITFALL: gunicorn retitles its processes with setproctitle, which by default
            # overwrites /proc/PID/environ and so the WORKDIR_ENV tag; this keeps environ intact.
            "SPT_NOENV": "1",
            "OS_KEYSTONE_CONFIG_DIR": str(self.workdir / "keystone"),
            "OS_GLANCE_CONFIG_DIR": str(self.workdir / "glance"),
            "PATH": f"{BIN_DIR}{os.pathsep}{env.get('PATH', '')}",
            "no_proxy": f"{HOST},localhost",
            "NO_PROXY": f"{HOST},localhost",
        })  # fmt: skip
        return env

    def _run(self, *argv: str, dir_fd: Path | None = None, run_as: dict | None = None) -> None:
        """Run a set-up command to completion; its output goes to logs/setup.log."""
        program = argv[0] if "/" in argv[0] else str(BIN_DIR / argv[0])
        log_path = self.logs / "setup.log"
        with open(log_path, "ab") as log, _dir_fd_argv([program, *argv[1:]], dir_fd) as (command, fds):
            result = subprocess.run(
                command, check=False, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=self._child_env(), cwd=_cwd_for(run_as, self.workdir), start_new_session=True,
                timeout=START_TIMEOUT, pass_fds=fds, **(run_as or {}),
            )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"{shlex.join(argv[:4])} failed ({result.returncode}):\n{_tail(log_path)}")

    def _launch(self, service: _Service) -> None:
        if service.name == "postgres":
            self._remove_stale_postmaster_pid()
        log_path = self.logs / f"{service.name}.log"
        with open(log_path, "ab") as log, _dir_fd_argv(service.argv, service.dir_fd) as (argv, fds):
            # Own session = own process group, so gunicorn's workers die with their master.
            # (PostgreSQL's children make their own sessions: _terminate() finds them by parent.)
            service.popen = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env={**self._child_env(), **service.env}, cwd=_cwd_for(service.run_as, self.workdir),
                start_new_session=True, pass_fds=fds, **service.run_as,
            )  # fmt: skip
        self._write_pids()

    def _remove_stale_postmaster_pid(self) -> None:
        """PITFALL: a killed postmaster's orphaned zombie may never be reaped (this machine's init does not),
        and postgres refuses to start while the PID in postmaster.pid exists, zombie or not. It takes a
        lock file naming its parent (us) for a stale one, and then still checks that no process of the old
        server is attached to its shared memory, so that is what a dead or zombie PID is replaced with."""
        lock_file = self.workdir / "postgres" / "data" / "postmaster.pid"
        try:
            lines = lock_file.read_text().split("\n")
            pid = int(lines[0])
        except (OSError, ValueError):
            return
        if not _is_alive(pid):
            lock_file.write_text("\n".join([str(os.getpid()), *lines[1:]]))

    def _wait_until_answering(self, service: _Service, deadline: float) -> None:
        while True:
            if not service.running():
                log = _tail(self.logs / f"{service.name}.log")
                raise RuntimeError(f"{service.name} is not running (exit code {service.popen.poll()}):\n{log}")
            try:
                if service.ready is not None:
                    if not service.ready():
                        raise ConnectionError(f"{service.name} does not serve yet")
                elif service.ready_path is None:
                    self._postgres_connection(timeout=5).close()
                else:
                    verify = self._verify() if service.scheme == "https" else True
                    requests.get(service.url + service.ready_path, timeout=5, verify=verify)
                return
            except (requests.RequestException, ConnectionError, _postgres_errors()):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{service.name} did not answer on {service.url} in time") from None
                time.sleep(0.1)

    def _write_pids(self) -> None:
        with self._pids_lock:
            text = "".join(f"{pid}\n" for pid in self.pids())
            (self.workdir / "pids").write_text(text)

    def _service(self, name: str) -> _Service:
        if name not in self._services:
            raise ValueError(f"unknown service {name!r}; known: {', '.join(self._services) or 'none (not started)'}")
        return self._services[name]


# ---------------------------------------------------------------------- helpers


def _session(credentials: dict | None, verify: str | bool = True) -> ks_session.Session:
    if credentials is None:
        raise RuntimeError("the cloud is not started")
    auth_args = {key: value for key, value in credentials.items() if key != "region"}
    return ks_session.Session(auth=ks_identity.Password(**auth_args), verify=verify)


@dataclass(frozen=True)
class TlsFiles:
    ca: Path  # the CA certificate (PEM): what clients trust
    cert: Path  # the server certificate (PEM), signed by the CA
    key: Path  # the server certificate's private key (PEM, unencrypted, mode 0600)


def make_tls_files(
    directory: Path, name: str = "LocalCloud", hosts: tuple[str, ...] = (HOST, "localhost"), days: int = 2
) -> TlsFiles:
    """A throw-away CA and a server certificate for `hosts` (IP addresses and DNS names) signed by it,
    written to directory/ca.pem, server.pem and server-key.pem (replacing what is there)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    not_before, not_after = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=days)

    def key_usage(**usages: bool) -> x509.KeyUsage:
        names = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
                 "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")  # fmt: skip
        return x509.KeyUsage(**{usage: usages.get(usage, False) for usage in names})

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} throw-away CA {secrets.token_hex(4)}")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(not_before).not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip

    server_key = ec.generate_private_key(ec.SECP256R1())
    alt_names = []
    for host in hosts:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt_names.append(x509.DNSName(host))
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name).public_key(server_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(not_before).not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(key_usage(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(server_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip

    files = TlsFiles(ca=directory / "ca.pem", cert=directory / "server.pem", key=directory / "server-key.pem")
    files.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    key_pem = server_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption())  # fmt: skip
    fd = os.open(files.key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as key_file:
        os.fchmod(key_file.fileno(), 0o600)
        key_file.write(key_pem)
    return files


def _fernet_key_repository(path: Path) -> None:
    """A key repository as keystone-manage fernet_setup leaves it: key 0 (staged) and 1 (primary),
    readable only by us. One that has a key 0 already is kept (tokens stay valid across restarts)."""
    path.mkdir(mode=0o700, exist_ok=True)
    if (path / "0").exists():
        return
    for name in ("1", "0"):  # 0 last: it marks the repository as initialised
        fd = os.open(path / f"{name}.tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as key_file:
            key_file.write(base64.urlsafe_b64encode(os.urandom(32)))  # a Fernet key
        os.replace(path / f"{name}.tmp", path / name)


def internal_url(url: str) -> str:
    """A public URL of the local cloud as its catalog lists it for the internal interface: the same
    server, at localhost."""
    return url.replace(f"://{HOST}:", "://localhost:")


def _first(items):
    return items[0] if items else None


def _free_ports(count: int) -> list[int]:
    """Ports the kernel considers free now. All sockets are held open together so they differ."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((HOST, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _write_ini(path: Path, sections: dict[str, dict[str, str]]) -> None:
    lines = []
    for section, options in sections.items():
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {value}" for key, value in options.items())
        lines.append("")
    path.write_text("\n".join(lines))


def _swift_conf() -> dict:
    # The hash prefix/suffix must stay the same for a workdir: they place objects on disk.
    return {
        "swift-hash": {"swift_hash_path_suffix": "localcloud", "swift_hash_path_prefix": "localcloud"},
        "storage-policy:0": {"name": "Policy-0", "default": "yes"},
    }


def _glance_paste_ini() -> Path:
    """glance-api-paste.ini is installed as data under <prefix>/etc/glance."""
    candidate = Path(sys.prefix) / "etc" / "glance" / "glance-api-paste.ini"
    if candidate.exists():
        return candidate
    for file in importlib.metadata.files("glance") or []:
        if file.name == "glance-api-paste.ini":
            return Path(file.locate())
    raise FileNotFoundError("glance-api-paste.ini not found in this Python environment")


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _signal(pid: int, sig: int) -> None:
    with suppress(ProcessLookupError):
        os.kill(pid, sig)


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent, process group) of a process, None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[1]), int(fields[2])


def _all_procs() -> dict[int, tuple[str, int, int]]:
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _proc_stat(int(entry.name))) is not None:
            stats[int(entry.name)] = stat
    return stats


def _is_alive(pid: int) -> bool:
    stat = _proc_stat(pid)
    return stat is not None and stat[0] != "Z"  # a zombie holds no ports nor files


def _live_groups() -> set[int]:
    return {pgid for state, _, pgid in _all_procs().values() if state != "Z"}


def _descendants(pids: set[int]) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, (_, ppid, _) in _all_procs().items():
        children.setdefault(ppid, []).append(pid)
    found, todo = set(), list(pids)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found and child not in pids:
                found.add(child)
                todo.append(child)
    return found


def _is_tagged(pid: int, workdir: Path) -> bool:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False
    return f"{WORKDIR_ENV}={workdir}".encode() in environ.split(b"\0")


def _pids_tagged_with(workdir: Path) -> list[int]:
    return [int(e.name) for e in Path("/proc").iterdir() if e.name.isdigit() and _is_tagged(int(e.name), workdir)]


def _wait_until(condition, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _terminate(popens: list[subprocess.Popen], grace: float, signals: list[int] | None = None) -> None:
    """Signal each process group (`signals`, default SIGTERM; SIGKILL if grace is 0), SIGKILL what is
    left after `grace` seconds, reap. What is left includes the groups of descendants that made their
    own session (PostgreSQL's children), which outlive a SIGKILLed parent for a moment."""
    leaders = {popen.pid for popen in popens}
    procs = _all_procs()
    groups = leaders | {procs[pid][2] for pid in _descendants(leaders) if pid in procs}

    def all_gone() -> bool:
        for popen in popens:
            popen.poll()  # reap the leader, or it stays a zombie
        return not (groups & _live_groups())

    for popen, sig in zip(popens, signals or [signal.SIGTERM] * len(popens), strict=False):
        _signal_group(popen.pid, sig if grace > 0 else signal.SIGKILL)
    if not _wait_until(all_gone, timeout=grace):
        for pgid in groups:
            _signal_group(pgid, signal.SIGKILL)
        if not _wait_until(all_gone, timeout=10):
            raise RuntimeError(f"processes still alive after SIGKILL: {[p.pid for p in popens]}")
    for popen in popens:
        popen.wait()


def _postgres_bin_dir() -> Path:
    """The newest PostgreSQL's bin directory (Debian layout), else wherever initdb is on PATH."""
    versions = []
    for initdb in POSTGRES_ROOT.glob("*/bin/initdb"):
        try:
            versions.append((tuple(int(part) for part in initdb.parents[1].name.split(".")), initdb.parent))
        except ValueError:
            continue
    if versions:
        return max(versions)[1]
    if on_path := shutil.which("initdb"):
        return Path(on_path).parent
    raise FileNotFoundError(f"PostgreSQL not found (no {POSTGRES_ROOT}/*/bin/initdb): install the Debian package "
                            "postgresql (scripts/bootstrap does)")  # fmt: skip


def _postgres_run_as() -> dict:
    """Popen arguments that drop root for the `postgres` user: initdb and postgres refuse to run as root."""
    if os.geteuid() != 0:
        return {}
    try:
        account = pwd.getpwnam(POSTGRES_SYSTEM_USER)
    except KeyError:
        raise RuntimeError(f"running as root, but there is no {POSTGRES_SYSTEM_USER!r} user to run PostgreSQL "
                           "(the Debian package postgresql creates it)") from None  # fmt: skip
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


def _postgres_errors() -> type[Exception]:
    import psycopg2

    return psycopg2.OperationalError


def _cwd_for(run_as: dict | None, workdir: Path) -> Path:
    """The workdir, unless the process runs as another user that may not enter it (postgres only logs
    "could not change directory" then, each time it looks for its own executable)."""
    return Path("/") if run_as else workdir


@contextmanager
def _dir_fd_argv(argv: list[str], directory: Path | None):
    """(argv with DIR_FD replaced, descriptors to pass), the descriptor open for the block's length."""
    if directory is None:
        yield argv, ()
        return
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield [arg.replace(DIR_FD, f"/proc/self/fd/{fd}") for arg in argv], (fd,)
    finally:
        os.close(fd)


def _signal_group(pgid: int, sig: int) -> None:
    with suppress(ProcessLookupError):
        os.killpg(pgid, sig)


# -------------------------------------------------------------------------- CLI


def _exports(credentials: dict) -> str:
    names = {
        "OS_AUTH_URL": "auth_url",
        "OS_USERNAME": "username",
        "OS_PASSWORD": "password",
        "OS_PROJECT_NAME": "project_name",
        "OS_USER_DOMAIN_NAME": "user_domain_name",
        "OS_PROJECT_DOMAIN_NAME": "project_domain_name",
        "OS_REGION_NAME": "region",
    }
    lines = [f"export {var}={shlex.quote(credentials[key])}" for var, key in names.items()]
    return "\n".join([*lines, "export OS_IDENTITY_API_VERSION=3"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run Keystone, Glance and Swift on 127.0.0.1 until interrupted.")
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--region", default="RegionOne")
    parser.add_argument("--image-conversion", action="store_true", help="enable Glance's image_conversion plugin")
    parser.add_argument("--tls", action="store_true", help="Keystone, Glance and Swift over HTTPS (throw-away CA)")
    parser.add_argument(
        "--glance-store", choices=GLANCE_STORES, default="file", help="Glance's file store, or Ceph RBD"
    )
    parser.add_argument(
        "--object-store",
        choices=["swift", "rgw", "none"],
        default="swift",
        help="OpenStack Swift, a Ceph RGW serving the Swift API, or none",
    )
    args = parser.parse_args(argv)

    stop_requested = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop_requested.set())
    cloud = LocalCloud(
        args.workdir,
        region=args.region,
        image_conversion=args.image_conversion,
        tls=args.tls,
        object_store=None if args.object_store == "none" else args.object_store,
        glance_store=args.glance_store,
    )
    try:
        cloud.start()
        print(f"# started in {cloud.startup_seconds:.1f} s; glance {cloud.glance_url}; "
              f"{cloud.object_store} {cloud.swift_url}; "
              f"glance's database: postgres on {HOST}:{cloud.postgres_port}")  # fmt: skip
        if cloud.ca_file is not None:
            print(f"# TLS: trust {cloud.ca_file}\nexport OS_CACERT={shlex.quote(str(cloud.ca_file))}")
        print(f"# admin\n{_exports(cloud.admin)}")
        print(f"# sync identity ({SYNC_USER})\n{_exports(cloud.sync_identity)}", flush=True)
        while not stop_requested.wait(1):
            pass
    finally:
        cloud.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
