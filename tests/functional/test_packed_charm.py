"""The packed charm, driven as a Juju agent drives it.

`scripts/pack` builds the `.charm` with charmcraft; `JujuMachine` (tests/juju_agent) unpacks it and runs
its `dispatch` for each hook and action with Juju's environment and hook tools, in a private mount
namespace (the host's /etc, /usr, /var and /root stay untouched). Keystone, Glance and Swift are the
real local cloud, over TLS with a throw-away CA that reaches the charm as vault's CA on `certificates`.
"""

from __future__ import annotations

import base64
import json
import re
import shlex
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import requests
import yaml

from tests.functional.conftest import PACKED_BASE, keystone_answer, our_images, published_image_ids
from tests.juju_agent.agent import JujuMachine
from tests.localcloud.cloud import LocalCloud, make_tls_files
from tests.localcloud.prometheus import Prometheus, binary
from tests.localcloud.web_server import NginxServer, free_port

pytestmark = pytest.mark.functional

ROOT = Path(__file__).resolve().parents[2]
UNIT = "glance-simplestreams-sync/0"
CONFIG_DIR = "/etc/glance-simplestreams-sync"
STATE_DIR = "/var/lib/glance-simplestreams-sync"
CRON_FILE = "/etc/cron.d/glance-simplestreams-sync"
LOG_FILE = "/var/log/glance-simplestreams-sync.log"
SYNC_USER = "glance-simplestreams-sync"  # the system user the charm creates; its group has the same name
SYNC_READABLE = ("640", "root", SYNC_USER)  # what the sync reads: root's, readable by its group only
CONTENT_ID_TEMPLATE = "packed.test.{region}"
ARCHITECTURES = {"amd64": "x86_64", "arm64": "aarch64"}  # charmcraft architecture -> manylinux wheel tag
# Each base's Python and C library: a wheel must be for that Python and need no newer glibc.
BASES = {"22.04": ("3.10", 35), "24.04": ("3.12", 39)}
# What update-ca-certificates (--fresh) regenerates from the system's CA list, with its hooks (Java's
# keystore) and the dpkg trigger it raises: rebuilt by the system's tool, not left by the charm.
TRUST_STORE_OUTPUTS = ("/etc/ssl/certs/", "/var/lib/ca-certificates-java/", "/var/lib/dpkg/triggers/")
NGINX_SITE = "/etc/nginx/sites-available/glance-simplestreams-sync"
NGINX_SITES_ENABLED = "/etc/nginx/sites-enabled"  # Ubuntu's nginx.conf includes every site linked here
SERVED_DIR = f"{STATE_DIR}/metadata"
METRICS_SERVICE = "glance-simplestreams-sync-metrics"
METRICS_UNIT = f"/etc/systemd/system/{METRICS_SERVICE}.service"


def base_python() -> str:
    """The interpreter that is the packed base's /usr/bin/python3 on the test machine."""
    return subprocess.run(
        [str(ROOT / "scripts" / "base-python"), PACKED_BASE], capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture
def machine(tmp_path, packed_charm):
    juju_machine = JujuMachine(tmp_path / "machine", packed_charm, UNIT, python3=base_python())
    with juju_machine:
        yield juju_machine
    assert juju_machine.processes() == []


def lead_with_config(machine, source, test_key, region: str, content_id_template: str, **options) -> None:
    """Make the unit the leader, configured to mirror `source` (disk images, signed with `test_key`) into
    private images of its own content id, plus `options`."""
    machine.set_leader(True)
    machine.set_config(
        mirror_list=yaml.safe_dump([{"url": source.url, "item_filters": ["ftype~(disk1.img|disk.img)"]}]),
        custom_keyring=base64.b64encode(test_key.keyring.read_bytes()).decode(),
        region=region,
        content_id_template=content_id_template,
        visibility="private",
        **options,
    )


def test_every_pin_has_a_wheel_for_every_declared_platform(tmp_path):
    platforms = yaml.safe_load((ROOT / "charmcraft.yaml").read_text())["platforms"]
    declared = [platform.removeprefix("ubuntu@").split(":") for platform in platforms]
    assert {base for base, _ in declared} == set(BASES)
    assert {arch for _, arch in declared} <= set(ARCHITECTURES), f"no wheel check for {declared}"
    for base, platform in declared:
        python, glibc_minor = BASES[base]
        arch = ARCHITECTURES[platform]
        tags = [f"--platform=manylinux_2_{minor}_{arch}" for minor in range(17, glibc_minor + 1)]
        process = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "--only-binary=:all:",
                f"--python-version={python}",
                "--implementation=cp",
                *tags,
                "-d",
                str(tmp_path / f"{base}-{platform}"),
                *lock_pins(base),
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert process.returncode == 0, f"ubuntu@{base}:{platform}: {process.stderr[-2000:]}"


def lock_pins(base: str) -> list[str]:
    """`name==version` of each line of a base's lock (its marker names that base's Python)."""
    lines = (ROOT / f"requirements-charm-{base}.txt").read_text().splitlines()
    return [line.split(";")[0].strip() for line in lines if "==" in line]


def test_the_packed_venv_holds_exactly_the_pins_and_passes_pip_check(tmp_path, packed_charm):
    with zipfile.ZipFile(packed_charm) as charm:
        charm.extractall(tmp_path)
    (site,) = (tmp_path / "venv").glob("lib/python3.*/site-packages")
    installed = dict(
        canonical_pin(path.name.removesuffix(".dist-info").rsplit("-", 1)) for path in site.glob("*.dist-info")
    )
    pins = dict(canonical_pin(pin.split("==")) for pin in lock_pins(PACKED_BASE))
    assert installed == pins
    assert site.parent.name == f"python{BASES[PACKED_BASE][0]}"
    python = tmp_path / "venv" / "bin" / "python"
    python.parent.mkdir(exist_ok=True)
    python.symlink_to(base_python())  # as the charm's dispatch does on the machine, with its python3
    check = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "check"], capture_output=True, text=True, timeout=120
    )
    assert check.returncode == 0, check.stdout + check.stderr


def canonical_pin(name_and_version: list[str]) -> tuple[str, str]:
    name, version = name_and_version
    return re.sub(r"[-_.]+", "-", name).lower(), version


def test_the_packed_charm_from_install_to_remove(machine, tls_cloud, source, test_key, glance_over_tls):
    statuses = []

    def step(run, expected_status: str, message: str | re.Pattern = ""):
        assert run.returncode == 0, run.output[-3000:]
        status, text = machine.unit_status
        statuses.append((run.calls[0]["hook"] if run.calls else "?", status, text))
        assert status == expected_status, text
        assert message.search(text) if isinstance(message, re.Pattern) else message in text, text
        return run

    source.add_image(release="noble", version="24.04", serial="20261101", seed=301)
    source.write()
    region = tls_cloud.sync_identity["region"]
    content_id = CONTENT_ID_TEMPLATE.format(region=region)

    # install: the packages are asked of apt (intercepted), nothing else can happen yet
    run = step(machine.hook("install"), "blocked", "Missing relation: juju integrate glance-simplestreams-sync")
    installs = [args[-1].split("=")[0] for args in run.called("apt-get") if "install" in args]
    assert sorted(installs) == ["ca-certificates", "cron", "gpgv", "sudo", "ubuntu-cloudimage-keyring"]

    machine.set_leader(True)
    step(machine.hook("leader-elected"), "blocked", "Missing relation")

    machine.set_config(
        mirror_list=yaml.safe_dump(
            [
                {
                    "url": source.url,
                    "path": "streams/v1/index.sjson",
                    "max": 1,
                    "item_filters": ["arch~(x86_64|amd64)", "ftype~(disk1.img|disk.img)"],
                }
            ]
        ),
        custom_keyring=base64.b64encode(test_key.keyring.read_bytes()).decode(),
        region=region,
        content_id_template=CONTENT_ID_TEMPLATE,
        visibility="private",
    )
    step(machine.hook("config-changed"), "blocked", "Missing relation")
    # the sync's own system user, created by the charm; the files the sync reads, and its state dir
    _name, _, uid, gid, _, home, shell = machine.run(["getent", "passwd", SYNC_USER]).stdout.strip().split(":")
    assert 0 < int(uid) < 1000 and (home, shell) == (STATE_DIR, "/usr/sbin/nologin")
    assert machine.run(["getent", "group", gid]).stdout.split(":")[0] == SYNC_USER
    assert machine.stat(f"{CONFIG_DIR}/mirrors.yaml") == SYNC_READABLE
    assert machine.stat(LOG_FILE) == SYNC_READABLE
    assert machine.stat(STATE_DIR) == ("755", SYNC_USER, SYNC_USER)

    # keystone: the request on our unit data, then its answer with our credentials
    keystone = machine.add_relation("identity-service", "keystone")
    run = step(machine.relation_hook(keystone, "joined", "keystone/0"), "waiting", "Waiting for keystone")
    request = machine.local_unit_data(keystone)
    assert request["service"] == "image-stream" and request["region"] == region
    assert run.called("relation-set")
    machine.set_remote_unit_data(keystone, "keystone/0", keystone_answer(tls_cloud))
    step(machine.relation_hook(keystone, "changed", "keystone/0"), "active", "no sync yet: set run=true")
    assert machine.stat(f"{CONFIG_DIR}/identity.yaml") == SYNC_READABLE

    # vault: a certificate request, then its CA: trusted by the machine and given to the sync
    vault = machine.add_relation("certificates", "vault")
    step(machine.relation_hook(vault, "joined", "vault/0"), "waiting", "Waiting for vault to send its CA")
    assert json.loads(machine.local_unit_data(vault)["cert_requests"])
    machine.set_remote_unit_data(vault, "vault/0", {"ca": tls_cloud.ca_file.read_text()})
    step(machine.relation_hook(vault, "changed", "vault/0"), "active", "Unit is ready")
    trusted = machine.read_text("/usr/local/share/ca-certificates/glance-simplestreams-sync-0.crt")
    assert trusted == tls_cloud.ca_file.read_text()
    assert trusted in machine.read_text("/etc/ssl/certs/ca-certificates.crt")
    assert machine.stat(f"{CONFIG_DIR}/ca-bundle.pem") == SYNC_READABLE

    # with keystone trusted, that hook published empty metadata (or started to, in the background, when it
    # takes longer than a hook waits: then the next hook applies it): the endpoint serves a valid index
    if machine.exists(f"{STATE_DIR}/charm-publish-only.pid"):
        wait_for_exit(int(machine.read_text(f"{STATE_DIR}/charm-publish-only.pid")))
        step(machine.hook("update-status"), "active", "Unit is ready")
    endpoint = machine.local_unit_data(keystone)["public_url"]
    assert endpoint == f"{tls_cloud.swift_url}/simplestreams/data"
    index = anonymous_get_over_tls(tls_cloud, f"{endpoint}/streams/v1/index.json")
    assert index["index"][content_id]["products"] == []
    assert not machine.exists(f"{STATE_DIR}/last-sync.json")  # no sync has run

    # run=true: the cron entry, and a first sync in the background right away
    machine.set_config(run=True)
    step(machine.hook("config-changed"), "active", re.compile(r"first sync pending|Sync"))
    job, retry_job = machine.cron_jobs(CRON_FILE)
    # root's shell opens the log; the sync runs as its user
    assert machine.stat(CRON_FILE) == ("644", "root", "root") and job.user == "root"
    retry_command = job.command.replace(" -- ", " --retry -- ", 1).replace(" >> ", " --retry >> ")
    assert (retry_job.schedule, retry_job.command) == ("* * * * *", retry_command)
    # cron asks Juju whether the unit is the leader (sync_charm.leadership, as root) before the sync runs
    guard, sync_command = job.command.split(" -- ", 1)
    assert guard.endswith(f" -m sync_charm.leadership --unit {UNIT} --state-dir {STATE_DIR}")
    assert sync_command.startswith(f"setpriv --reuid={SYNC_USER} --regid={SYNC_USER} --init-groups env -i ")
    first_sync = json.loads(machine.read_text(f"{STATE_DIR}/charm-first-sync.json"))["pid"]
    wait_for_exit(first_sync)
    (first,) = our_images(glance_over_tls, content_id)
    assert_written_by_the_sync_user(machine)
    step(machine.hook("update-status"), "active", re.compile(r"Unit is ready \(last sync .*: 1 created, 0 failed\)"))
    assert machine.local_unit_data(keystone)["public_url"] == f"{tls_cloud.swift_url}/simplestreams/data"

    # the action syncs a newer image from the packed venv
    source.add_image(release="noble", version="24.04", serial="20261102", seed=302)
    source.write()
    run, action = machine.action("sync-images")
    assert run.returncode == 0 and action["failed"] is None, run.output[-3000:]
    newer = [image for image in our_images(glance_over_tls, content_id) if image["id"] != first["id"]]
    assert [image["status"] for image in newer] == ["active"]
    assert action["results"]["created-count"] == "1"
    assert action["results"]["created"] == f"created {newer[0]['id']}: {newer[0]['name']}"
    assert newer[0]["name"] == "auto-sync/ubuntu-noble-24.04-amd64-server-20261102-disk1.img"
    assert_written_by_the_sync_user(machine)
    step(machine.hook("update-status"), "active", re.compile(r"last sync .*: 1 created, 0 failed"))

    # the cron job, exactly as cron runs it, finds nothing new
    log_before = machine.read_text(LOG_FILE)
    cron = machine.run_cron_job(job)
    assert cron.returncode == 0, cron.stderr
    last = json.loads(machine.read_text(f"{STATE_DIR}/last-sync.json"))
    assert (last["created"], last["failed"], last["errors"]) == ([], [], [])
    assert "unchanged since the sync of" in machine.read_text(LOG_FILE).removeprefix(log_before)
    assert_written_by_the_sync_user(machine)
    assert machine.stat(LOG_FILE) == SYNC_READABLE
    # the every-minute retry line, after a success: nothing to do, nothing said
    log_before = machine.read_text(LOG_FILE)
    assert machine.run_cron_job(retry_job).returncode == 0
    assert machine.read_text(LOG_FILE) == log_before

    # a sync that fails is never "ready": when, why (whole), what next
    with tls_cloud.service_down("keystone"):
        run, action = machine.action("sync-images", **{"full-check": True})
    assert "Connection refused" in action["failed"]
    step(
        machine.hook("update-status"),
        "blocked",
        re.compile(r"^Last sync failed .*Connection refused.*; next try in [1-5] min \(retry 1\), or run sync-images$"),
    )

    # an invalid option: Blocked naming it, the machine left as it was
    cron_before = machine.read_text(CRON_FILE)
    machine.set_config(frequency="fortnightly")
    step(machine.hook("config-changed"), "blocked", "Invalid config: frequency")
    assert machine.read_text(CRON_FILE) == cron_before

    # the published metadata names exactly the active images
    assert published_image_ids(published_products_over_tls(tls_cloud, content_id)) == {
        image["id"] for image in our_images(glance_over_tls, content_id) if image["status"] == "active"
    }

    # remove: only the sync log (root's, with the sync's group) and the system user are left, and no link
    # in the trust store dangles
    step(machine.hook("stop"), "blocked", "")
    assert machine.hook("remove").returncode == 0
    left = [path for path in machine.changed_paths() if not path.startswith(TRUST_STORE_OUTPUTS)]
    assert [path for path in left if path not in USER_DATABASE] == [LOG_FILE]
    assert machine.stat(LOG_FILE) == SYNC_READABLE
    for database in ("/etc/passwd", "/etc/group"):
        added = set(machine.read_text(database).splitlines()) - set(Path(database).read_text().splitlines())
        assert [line.split(":")[0] for line in added] == [SYNC_USER], database
    assert machine.run(["find", "/etc/ssl/certs", "-xtype", "l"]).stdout == ""
    assert trusted not in machine.read_text("/etc/ssl/certs/ca-certificates.crt")


# What useradd writes for the system user (and the backups it keeps), which remove leaves.
USER_DATABASE = tuple(
    f"/etc/{name}{suffix}" for name in ("passwd", "group", "shadow", "gshadow") for suffix in ("", "-")
)


def assert_written_by_the_sync_user(machine: JujuMachine) -> None:
    """The files the sync has just (re)written are its user's: it ran as that user, not as root (the
    charm gives the state dir's entries to the user only once, when the dir is not yet the user's)."""
    for name in ("last-sync.json", "glance_simplestreams_sync.prom"):
        assert machine.stat(f"{STATE_DIR}/{name}") == ("644", SYNC_USER, SYNC_USER), name
    assert machine.stat(f"{STATE_DIR}/sync.lock")[1:] == (SYNC_USER, SYNC_USER)
    uid = int(machine.run(["id", "-u", SYNC_USER]).stdout)
    assert uid != 0
    assert machine.run(["stat", "-c", "%u", f"{STATE_DIR}/last-sync.json"]).stdout.strip() == str(uid)


def anonymous_get_over_tls(cloud: LocalCloud, url: str) -> dict:
    import requests

    response = requests.get(url, timeout=30, verify=str(cloud.ca_file))
    response.raise_for_status()
    return response.json()


@pytest.fixture
def glance_over_tls(tls_cloud):
    import glanceclient

    return glanceclient.Client("2", session=tls_cloud.admin_session())


def published_products_over_tls(cloud: LocalCloud, content_id: str) -> dict:
    return anonymous_get_over_tls(cloud, f"{cloud.swift_url}/simplestreams/data/streams/v1/{content_id}.json")


def wait_for_exit(pid: int, timeout: float = 600) -> None:
    """Until a process (the charm's background sync) has exited: a bound, not a measure."""
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not Path(f"/proc/{pid}").exists(), f"the background sync {pid} still runs after {timeout}s"


def test_the_packed_charm_serves_the_metadata_itself(machine, bare_cloud, source, test_key, tmp_path):
    """serve_metadata on a cloud without an object store: the charm writes nginx's site and asks systemd
    for nginx (recorded); the test runs the real nginx with exactly that site, as systemd would (workers
    as www-data), on the ports the options name, on 127.0.0.1 (the unit's address here)."""
    source.add_image(release="noble", version="24.04", serial="20261101", seed=311)
    source.write()
    region = bare_cloud.sync_identity["region"]
    content_id = CONTENT_ID_TEMPLATE.format(region=region)
    http_port, https_port = free_port(), free_port()
    served_url = f"http://127.0.0.1:{http_port}/simplestreams/data"
    glance = glanceclient_for(bare_cloud)

    assert machine.hook("install").returncode == 0
    lead_with_config(
        machine,
        source,
        test_key,
        region,
        CONTENT_ID_TEMPLATE,
        serve_metadata=True,
        serve_metadata_http_port=http_port,
        serve_metadata_https_port=https_port,
    )
    run = machine.hook("config-changed")
    assert run.returncode == 0, run.output[-3000:]
    assert ["nginx"] in [[args[-1].split("=")[0]] for args in run.called("apt-get") if "install" in args]
    assert run.called("systemctl") == [["enable", "nginx"], ["reload-or-restart", "nginx"]]
    assert f"listen 127.0.0.1:{http_port};" in machine.read_text(NGINX_SITE)
    assert machine.stat(SERVED_DIR) == ("2750", SYNC_USER, "www-data")
    # the charm installed nginx (apt says it was missing): the package's default site is no longer enabled
    assert machine.run(["ls", NGINX_SITES_ENABLED]).stdout.split() == ["glance-simplestreams-sync"]

    enabled = f"{NGINX_SITES_ENABLED}/*"
    nginx = NginxServer(tmp_path / "nginx", enabled, http_port, user="www-data", prefix=machine.enter_argv())
    try:
        nginx.start()
        # keystone's credentials: empty metadata in the served directory, and keystone pointed at it
        keystone = machine.add_relation("identity-service", "keystone")
        machine.set_remote_unit_data(keystone, "keystone/0", keystone_answer(bare_cloud))
        run = machine.relation_hook(keystone, "changed", "keystone/0")
        assert run.returncode == 0, run.output[-3000:]
        request = machine.local_unit_data(keystone)
        assert request["public_url"] == request["internal_url"] == request["admin_url"] == served_url
        if machine.exists(f"{STATE_DIR}/charm-publish-only.pid"):  # longer than a hook waits: in the background
            wait_for_exit(int(machine.read_text(f"{STATE_DIR}/charm-publish-only.pid")))
        assert anonymous_get(f"{served_url}/streams/v1/index.json")["index"][content_id]["products"] == []

        # a sync: the image in Glance, the metadata served, found as Juju finds it
        run, action = machine.action("sync-images")
        assert run.returncode == 0 and action["failed"] is None, run.output[-3000:]
        assert action["results"]["created-count"] == "1"
        active = {image["id"] for image in our_images(glance, content_id) if image["status"] == "active"}
        assert len(active) == 1
        assert juju_image_lookup(served_url, region, bare_cloud.auth_url, verify=True) == active
        for name in ("streams/v1/index.json", f"streams/v1/{content_id}.json"):
            assert machine.stat(f"{SERVED_DIR}/{name}") == ("640", SYNC_USER, "www-data")
            response = requests.get(f"{served_url}/{name}", timeout=10)
            assert (response.status_code, response.headers["Content-Type"]) == (200, "application/json")
        assert requests.get(f"{served_url}/streams/v1/", timeout=10).status_code == 403

        # vault issues the certificate asked for the served address: HTTPS only, verified with vault's CA
        vault_files = make_tls_files(tmp_path / "vault", "vault", hosts=("127.0.0.1",))
        vault = machine.add_relation("certificates", "vault")
        assert machine.relation_hook(vault, "joined", "vault/0").returncode == 0
        (common_name,) = json.loads(machine.local_unit_data(vault)["cert_requests"])
        assert json.loads(machine.local_unit_data(vault)["cert_requests"])[common_name] == {"sans": ["127.0.0.1"]}
        issued = {common_name: {"cert": vault_files.cert.read_text(), "key": vault_files.key.read_text()}}
        answer = {
            "ca": vault_files.ca.read_text(),
            "glance-simplestreams-sync_0.processed_requests": json.dumps(issued),
        }
        machine.set_remote_unit_data(vault, "vault/0", answer)
        run = machine.relation_hook(vault, "changed", "vault/0")
        assert run.returncode == 0, run.output[-3000:]
        assert run.called("systemctl") == [["enable", "nginx"], ["reload-or-restart", "nginx"]]
        assert f"listen 127.0.0.1:{https_port} ssl;" in machine.read_text(NGINX_SITE)
        served_url = f"https://127.0.0.1:{https_port}/simplestreams/data"
        assert machine.local_unit_data(keystone)["public_url"] == served_url
        nginx.stop()
        nginx = NginxServer(tmp_path / "nginx-tls", enabled, https_port, user="www-data", prefix=machine.enter_argv())
        nginx.start()
        run, action = machine.action("sync-images", **{"full-check": True})  # reads back over HTTPS
        assert run.returncode == 0 and action["failed"] is None, run.output[-3000:]
        assert juju_image_lookup(served_url, region, bare_cloud.auth_url, verify=str(vault_files.ca)) == active
        last = json.loads(machine.read_text(f"{STATE_DIR}/last-sync.json"))
        assert (last["published"], last["metadata_url"], last["errors"]) == (True, served_url, [])
    finally:
        nginx.stop()

    # remove: nginx asked to stop, its site and the served files gone
    run = machine.hook("remove")
    assert run.returncode == 0, run.output[-3000:]
    assert run.called("systemctl") == [["disable", "--now", "nginx"]]
    assert not machine.exists(NGINX_SITE) and not machine.exists(SERVED_DIR)
    assert machine.run(["ls", NGINX_SITES_ENABLED]).stdout.split() == ["default"]  # as the package has it


MODIFIER = """#!/bin/sh
set -e
echo "$(id -u) $HOME $release $(basename "$IMAGE_PATH")" >> {record}
printf 'modified by root' >> "$IMAGE_PATH"
"""


def test_the_packed_charm_runs_the_image_modifier_as_root(machine, bare_cloud, source, test_key, tmp_path):
    """The image-modifier subordinate's script runs as root (as the classic charm ran it) on the verified
    copy, with the image's fields in its environment, while the sync runs as its own user: the charm's
    sudoers rule, in the machine's own /etc, is what real sudo reads."""
    item = source.add_image(release="noble", version="24.04", serial="20261102", seed=312)
    source.write()
    original = (source.builder.root / item.path).read_bytes()
    region = bare_cloud.sync_identity["region"]
    template = "packed.modifier.{region}"  # apart from the other tests' images in the same cloud
    content_id = template.format(region=region)
    record = tmp_path / "modifier.record"
    script = tmp_path / "modify-image"
    script.write_text(MODIFIER.format(record=record))
    script.chmod(0o755)

    assert machine.hook("install").returncode == 0
    lead_with_config(
        machine,
        source,
        test_key,
        region,
        template,
        use_swift=False,
    )
    assert machine.hook("config-changed").returncode == 0
    keystone = machine.add_relation("identity-service", "keystone")
    machine.set_remote_unit_data(keystone, "keystone/0", keystone_answer(bare_cloud))
    assert machine.relation_hook(keystone, "changed", "keystone/0").returncode == 0
    modifier = machine.add_relation("image-modifier", "modifier")
    machine.set_remote_unit_data(modifier, "modifier/0", {"script-path": str(script)})
    run = machine.relation_hook(modifier, "changed", "modifier/0")
    assert run.returncode == 0, run.output[-3000:]
    assert machine.stat("/etc/sudoers.d/glance-simplestreams-sync") == ("440", "root", "root")

    run, action = machine.action("sync-images")

    assert run.returncode == 0 and action["failed"] is None, run.output[-3000:]
    assert record.read_text() == "0 /root noble image\n"
    (image,) = [image for image in our_images(glanceclient_for(bare_cloud), content_id) if image["status"] == "active"]
    assert image["size"] == len(original) + len(b"modified by root")
    run = machine.relation_hook(modifier, "broken")
    assert run.returncode == 0 and not machine.exists("/etc/sudoers.d/glance-simplestreams-sync")


def test_the_packed_charm_reports_a_real_sync_to_prometheus_over_cos_agent(
    machine, bare_cloud, source, test_key, tmp_path
):
    """cos-agent: the charm writes the metrics server's systemd unit (systemctl recorded); the test runs
    exactly its ExecStart in the machine, as its User, after a real sync; Debian's Prometheus scrapes it
    with the job the charm sent."""
    if binary("prometheus") is None:
        pytest.skip("prometheus is not installed (scripts/bootstrap installs Debian's prometheus)")
    source.add_image(release="noble", version="24.04", serial="20261101", seed=321)
    source.write()
    region = bare_cloud.sync_identity["region"]
    metrics_port = free_port()
    assert machine.hook("install").returncode == 0
    cos_template = "packed.cos.{region}"  # apart from the other tests' images in the same cloud
    lead_with_config(machine, source, test_key, region, cos_template, use_swift=False, metrics_port=metrics_port)
    assert machine.hook("config-changed").returncode == 0
    keystone = machine.add_relation("identity-service", "keystone")
    machine.set_remote_unit_data(keystone, "keystone/0", keystone_answer(bare_cloud))
    assert machine.relation_hook(keystone, "changed", "keystone/0").returncode == 0
    run, action = machine.action("sync-images")
    assert run.returncode == 0 and action["failed"] is None, run.output[-3000:]
    last = json.loads(machine.read_text(f"{STATE_DIR}/last-sync.json"))

    agent = machine.add_relation("cos-agent", "grafana-agent")
    machine.set_remote_unit_data(agent, "grafana-agent/0", {})
    run = machine.relation_hook(agent, "joined", "grafana-agent/0")
    assert run.returncode == 0, run.output[-3000:]
    assert run.called("systemctl") == [["daemon-reload"], ["enable", METRICS_SERVICE], ["restart", METRICS_SERVICE]]
    unit = dict(line.split("=", 1) for line in machine.read_text(METRICS_UNIT).splitlines() if "=" in line)
    assert (unit["User"], unit["Group"]) == (SYNC_USER, SYNC_USER)
    sent = json.loads(machine.local_unit_data(agent)["config"])

    as_systemd_would = [*machine.enter_argv(), "setpriv", f"--reuid={SYNC_USER}", f"--regid={SYNC_USER}"]
    as_systemd_would += ["--init-groups", "env", "-i", unit["Environment"], *shlex.split(unit["ExecStart"])]
    server = subprocess.Popen(as_systemd_would, stdout=subprocess.DEVNULL, start_new_session=True)
    try:
        with Prometheus(tmp_path / "prometheus", sent["metrics_scrape_jobs"], []) as prometheus:
            prometheus.until(prometheus.up_targets, "the unit's metrics server up")
            served = prometheus.until(
                lambda: {
                    sample["metric"]["__name__"] + sample["metric"].get("state", ""): sample["value"][1]
                    for sample in prometheus.query('{__name__=~"glance_simplestreams_sync_.+"}')
                },
                "the sync's metrics",
            )
    finally:
        server.kill()
        server.wait()

    assert served["glance_simplestreams_sync_standby"] == "0"
    assert served["glance_simplestreams_sync_last_run_success"] == "1"
    assert served["glance_simplestreams_sync_last_run_images_created"] == "1"
    assert served["glance_simplestreams_sync_imagesactive"] == "1"
    assert served["glance_simplestreams_sync_last_run_bytes_transferred"] == str(last["bytes_transferred"])
    assert int(last["bytes_transferred"]) > 0
    assert "glance_simplestreams_sync_expected_period_seconds" not in served  # run=false: no schedule

    run = machine.hook("remove")
    assert run.returncode == 0, run.output[-3000:]
    assert ["disable", "--now", METRICS_SERVICE] in run.called("systemctl")
    assert not machine.exists(METRICS_UNIT)


def glanceclient_for(cloud: LocalCloud):
    import glanceclient

    return glanceclient.Client("2", session=cloud.admin_session())


def anonymous_get(url: str, verify: str | bool = True) -> dict:
    response = requests.get(url, timeout=30, verify=verify)
    response.raise_for_status()
    return response.json()


def juju_image_lookup(metadata_url: str, region: str, endpoint: str, verify: str | bool) -> set[str]:
    """The image ids Juju finds for this cloud, as its simplestreams image lookup does: the index's
    image-ids entries for the cloud (region and keystone endpoint), then their products files' items
    for that cloud; anonymously."""
    index = anonymous_get(f"{metadata_url}/streams/v1/index.json", verify)
    found = set()
    for entry in index["index"].values():
        clouds = [(cloud["region"], cloud["endpoint"].rstrip("/")) for cloud in entry.get("clouds", [])]
        if entry.get("datatype") != "image-ids" or (region, endpoint.rstrip("/")) not in clouds:
            continue
        products = anonymous_get(f"{metadata_url}/{entry['path']}", verify)
        for product_id in entry["products"]:
            for version in products["products"][product_id]["versions"].values():
                for item in version["items"].values():
                    if (item["region"], item["endpoint"].rstrip("/")) == (region, endpoint.rstrip("/")):
                        found.add(item["id"])
    return found


CLASSIC_CHARM = ROOT / "tests" / "data" / "classic-charm"
CLASSIC_CRON_FILES = ("/etc/cron.daily/glance_simplestreams_sync", "/etc/cron.d/glance_simplestreams_sync_fastpoll")


def leave_the_classic_charms_unit(machine: JujuMachine) -> None:
    """The machine as the classic charm leaves it with run=true, frequency=daily: its config files (root's,
    0640, its own format), its wrapper script, its cron files byte for byte, its log written as root."""
    script = "\n".join(
        [
            f"mkdir -p {CONFIG_DIR} /usr/share/glance-simplestreams-sync /etc/cron.daily /etc/cron.d",
            f"printf 'mirror_list: classic\\n' > {CONFIG_DIR}/mirrors.yaml",
            f"printf 'admin_user: classic\\n' > {CONFIG_DIR}/identity.yaml",
            f"chmod 640 {CONFIG_DIR}/mirrors.yaml {CONFIG_DIR}/identity.yaml",
            "printf '#!/bin/sh\\nexit 1\\n' > /usr/share/glance-simplestreams-sync/glance-simplestreams-sync.sh",
            f"cp -P {CLASSIC_CHARM}/etc/cron.daily/glance_simplestreams_sync /etc/cron.daily/",
            f"cp {CLASSIC_CHARM}/etc/cron.d/glance_simplestreams_sync_fastpoll /etc/cron.d/",
            f"printf 'classic sync log\\n' > {LOG_FILE}",
        ]
    )
    assert machine.run(["/bin/sh", "-ec", script]).returncode == 0


def test_the_packed_charm_refreshes_a_unit_the_classic_charm_left(
    machine, tls_cloud, source, test_key, glance_over_tls
):
    """`juju refresh --path` from the classic charm on the same base: upgrade-charm, then config-changed,
    on a unit the classic charm set up (install never runs); options and relation data carry over."""
    source.add_image(release="noble", version="24.04", serial="20261101", seed=321)
    source.write()
    region = tls_cloud.sync_identity["region"]
    template = "packed.classic.{region}"  # its own images on the module's cloud
    content_id = template.format(region=region)
    leave_the_classic_charms_unit(machine)
    lead_with_config(
        machine,
        source,
        test_key,
        region,
        template,
        frequency="daily",  # what the operator had set on the classic charm
        run=True,
    )
    keystone = machine.add_relation("identity-service", "keystone")
    classic_url = "http://127.0.0.1"  # the classic charm's placeholder until its first sync
    machine.set_local_unit_data(
        keystone,
        {"service": "image-stream", "region": region, **{f"{kind}_url": classic_url for kind in INTERFACE_KINDS}},
    )
    machine.set_remote_unit_data(keystone, "keystone/0", keystone_answer(tls_cloud))
    vault = machine.add_relation("certificates", "vault")
    machine.set_remote_unit_data(vault, "vault/0", {"ca": tls_cloud.ca_file.read_text()})

    run = machine.hook("upgrade-charm")

    assert run.returncode == 0, run.output[-3000:]
    installs = [args[-1].split("=")[0] for args in run.called("apt-get") if "install" in args]
    assert sorted(installs) == ["ca-certificates", "cron", "gpgv", "sudo", "ubuntu-cloudimage-keyring"]
    assert [path for path in CLASSIC_CRON_FILES if machine.run(["test", "-L", path]).returncode == 0] == []
    assert [path for path in CLASSIC_CRON_FILES if machine.exists(path)] == []
    _name, _, uid, _gid, _, home, shell = machine.run(["getent", "passwd", SYNC_USER]).stdout.strip().split(":")
    assert 0 < int(uid) < 1000 and (home, shell) == (STATE_DIR, "/usr/sbin/nologin")
    for name in ("mirrors.yaml", "identity.yaml", "ca-bundle.pem"):
        assert machine.stat(f"{CONFIG_DIR}/{name}") == SYNC_READABLE, name
    for name in ("mirrors.yaml", "identity.yaml"):  # the classic charm's rewritten in this charm's format
        assert "written by the glance-simplestreams-sync charm" in machine.read_text(f"{CONFIG_DIR}/{name}")
    assert machine.stat(STATE_DIR) == ("755", SYNC_USER, SYNC_USER)
    assert machine.stat(LOG_FILE) == SYNC_READABLE
    assert machine.read_text(LOG_FILE).startswith("classic sync log\n")  # kept, appended to
    (job, _retry_job) = machine.cron_jobs(CRON_FILE)
    guard, sync_command = job.command.split(" -- ", 1)  # the leadership guard, then the sync as its user
    assert guard.endswith(f" -m sync_charm.leadership --unit {UNIT} --state-dir {STATE_DIR}")
    assert sync_command.startswith(f"setpriv --reuid={SYNC_USER} --regid={SYNC_USER} --init-groups env -i ")
    # the first sync started in the background, as after install; config-changed starts no second one
    first_sync = json.loads(machine.read_text(f"{STATE_DIR}/charm-first-sync.json"))["pid"]
    run = machine.hook("config-changed")
    assert run.returncode == 0, run.output[-3000:]
    assert json.loads(machine.read_text(f"{STATE_DIR}/charm-first-sync.json"))["pid"] == first_sync
    wait_for_exit(first_sync)

    (image,) = our_images(glance_over_tls, content_id)
    assert image["status"] == "active"
    assert_written_by_the_sync_user(machine)
    run = machine.hook("update-status")
    assert run.returncode == 0, run.output[-3000:]
    status, message = machine.unit_status
    assert status == "active" and re.search(r"^Unit is ready \(last sync .*: 1 created, 0 failed\)$", message), message
    urls = machine.local_unit_data(keystone)
    assert urls["public_url"] == f"{tls_cloud.swift_url}/simplestreams/data"
    assert classic_url not in {urls[f"{kind}_url"] for kind in INTERFACE_KINDS}
    assert published_image_ids(published_products_over_tls(tls_cloud, content_id)) == {image["id"]}


INTERFACE_KINDS = ("public", "internal", "admin")
