"""Shared fixtures for the charm's state-transition tests.

In those tests every machine path of `host` is redirected under a temporary directory,
update-ca-certificates, useradd and the sync engine are replaced by small fake programs, and package
installation and the background sync are recorded instead of run: the tests never touch the real /etc.
The sync's user is an existing one: as root, nobody (so the sync really drops root, and the machine's
directory and the fake engine sit where nobody can reach them, run by the system python3); as a normal
user, that user.
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import pwd
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

import pytest
from ops import testing

from simplestreams_sync import state
from simplestreams_sync.state import ProgressFile, SyncResult, publish_only_lines, utc_now, write_result
from sync_charm import host, sync_process
from tests.charm.relation_data import CA_PEM, CHAIN_PEM, KEYSTONE_V3, PRODUCT_STREAMS_URLS

FAKE_ENGINE = r"""
import json, os, sys, time
spec = json.load(open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "fake-engine.json")))
args = sys.argv[1:]
with open(spec["calls"], "a") as calls:
    calls.write(json.dumps({"argv": args, "pythonpath": os.environ.get("PYTHONPATH"), "uid": os.getuid(),
                            "gid": os.getgid(), "home": os.environ.get("HOME"),
                            "mirrors_readable": os.access(args[args.index("--mirrors") + 1], os.R_OK),
                            "identity_readable": os.access(args[args.index("--identity") + 1], os.R_OK)}) + "\n")
if "--publish-only" in args:
    while spec["publish_hold"] and not os.path.exists(spec["publish_hold"]):
        time.sleep(0.05)  # held until the test releases it
    print("\n".join(spec["publish_only"])) if spec["publish_only"] else sys.stderr.write("error: swift is down\n")
    sys.exit(0 if spec["publish_only"] else 1)
state_dir = spec["state_dir"]
if spec["hold"]:  # until the test releases it (bounded, so that a broken test fails instead of hanging)
    deadline = time.monotonic() + 60
    while not os.path.exists(spec["hold"]) and time.monotonic() < deadline:
        time.sleep(0.01)
if spec["result"] is not None:  # with the engine's own writer
    sys.path.insert(0, spec["engine_src"])
    from simplestreams_sync.state import SyncResult, utc_now, write_result
    now = utc_now()
    fields = {"started": now, "finished": now, "dry_run": "--dry-run" in args, **spec["result"]}
    os.makedirs(state_dir, exist_ok=True)
    write_result(state_dir, SyncResult(**fields))
for line in spec["stdout"]:
    print(line, flush=True)
sys.stderr.write(spec["stderr"])
if os.path.exists(os.path.join(state_dir, "progress.json")):
    os.remove(os.path.join(state_dir, "progress.json"))
sys.exit(spec["exit"])
"""


@dataclass
class Machine:
    """The fake machine: where the charm's files go and what it ran."""

    root: Path
    paths: host.Paths
    ca_updates: Path
    installed: list = field(default_factory=list)
    background_syncs: list = field(default_factory=list)
    real_start_background_sync: object = None

    def ca_update_calls(self) -> list[str]:
        """The arguments of each update-ca-certificates run."""
        return self.ca_updates.read_text().splitlines() if self.ca_updates.exists() else []

    def ca_update_count(self) -> int:
        return len(self.ca_update_calls())

    def write_result(self, frequency: str | None = None, **result) -> None:
        """last-sync.json, written by the engine's own writer, with these fields (a failed run's retry
        fields are the writer's, for a run scheduled at `frequency`, or without a schedule)."""
        data = SyncResult(
            **{"started": "2026-11-24T09:40:00Z", "finished": "2026-11-24T10:02:41Z", "published": True, **result}
        )
        self.paths.state_dir.mkdir(parents=True, exist_ok=True)
        write_result(self.paths.state_dir, data, frequency)

    def write_progress(self, updated: str | None = None, **progress) -> None:
        """progress.json, written by the engine's own progress writer, with these fields; `updated`: the
        writer's clock when it wrote (a sync that last made progress then)."""
        self.paths.state_dir.mkdir(parents=True, exist_ok=True)
        with mock.patch.object(state, "utc_now", lambda: updated) if updated else contextlib.nullcontext():
            ProgressFile(self.paths.state_dir).update(
                force=True, **{"started": utc_now(), "phase": "transfer", **progress}
            )

    def owners(self, path: Path) -> tuple[str, str, str]:
        """(octal mode, owner, group) of a file, as `stat -c '%a %U %G'` says."""
        status = path.stat()
        return f"{status.st_mode & 0o777:o}", pwd.getpwuid(status.st_uid).pw_name, grp.getgrgid(status.st_gid).gr_name

    @property
    def charm_user(self) -> str:
        """Who runs the charm here (root on a real machine)."""
        return pwd.getpwuid(os.geteuid()).pw_name

    @property
    def charm_group(self) -> str:
        return grp.getgrgid(os.getegid()).gr_name

    @property
    def sync_user(self) -> str:
        return host.SYNC_USER

    @property
    def sync_group(self) -> str:
        return grp.getgrgid(pwd.getpwnam(host.SYNC_USER).pw_gid).gr_name

    def sync_readable(self, path: Path) -> bool:
        """Mode 0640, the charm's, with the sync's group: what the sync reads and must not change."""
        return self.owners(path) == ("640", self.charm_user, self.sync_group)

    def snapshot(self) -> dict[str, bytes]:
        """Every file under the machine root and its content."""
        return {
            str(path.relative_to(self.root)): path.read_bytes()
            for path in sorted(self.root.rglob("*"))
            if path.is_file()
        }


AS_ROOT = os.geteuid() == 0
ENGINE_PACKAGE = Path(__file__).resolve().parents[2] / "src" / "simplestreams_sync"
# Runs the fake engine: as root, the system's python3 (the venv's may sit where nobody cannot reach it).
FAKE_ENGINE_PYTHON = "/usr/bin/python3" if AS_ROOT else sys.executable


@pytest.fixture
def shared_dir(tmp_path: Path):
    """A directory the sync's user can reach: tmp_path as a normal user; as root, a fresh one in /tmp
    (pytest's own is root's only), removed afterwards."""
    if not AS_ROOT:
        yield tmp_path
        return
    directory = Path(tempfile.mkdtemp(prefix="charm-test-"))
    directory.chmod(0o755)
    try:
        yield directory
    finally:
        shutil.rmtree(directory)


@pytest.fixture(autouse=True)
def machine(shared_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Machine:
    """A fake machine in a directory the sync's user can reach."""
    root = shared_dir / "machine"
    root.mkdir()
    paths = host.Paths.under(root)
    ca_updates = tmp_path / "update-ca-certificates.calls"
    fake = Machine(
        root=root, paths=paths, ca_updates=ca_updates, real_start_background_sync=sync_process.start_background_sync
    )
    monkeypatch.setattr(host, "PATHS", paths)
    monkeypatch.setattr(
        host,
        "UPDATE_CA_CERTIFICATES",
        [sys.executable, "-c", f"import sys; open({str(ca_updates)!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')"],
    )
    monkeypatch.setattr(host, "install_packages", lambda: fake.installed.append(list(host.PACKAGES)))
    monkeypatch.setattr(host, "SYNC_USER", "nobody" if AS_ROOT else pwd.getpwuid(os.geteuid()).pw_name)
    # the user exists: a useradd would be a bug (tests of the creation replace this)
    monkeypatch.setattr(host, "ADD_SYSTEM_USER", ["false"])

    def start_background_sync(charm_dir: Path) -> int:
        fake.background_syncs.append(sync_process.sync_argv())
        return 4242

    monkeypatch.setattr(sync_process, "start_background_sync", start_background_sync)
    # An engine that does not exist: a test that runs the sync must say what the engine does.
    monkeypatch.setattr(sync_process, "ENGINE", [sys.executable, str(tmp_path / "no-such-engine.py")])
    # Install compiles the engine in the charm dir; here, in a directory of the test's (empty unless filled).
    (tmp_path / "engine").mkdir()
    monkeypatch.setattr(sync_process, "ENGINE_PACKAGE", tmp_path / "engine")
    for variable in host.PROXY_VARIABLES.values():
        monkeypatch.delenv(variable, raising=False)
    return fake


@dataclass
class FakeEngine:
    calls_file: Path

    @property
    def runs(self) -> list[dict]:
        if not self.calls_file.exists():
            return []
        return [json.loads(line) for line in self.calls_file.read_text().splitlines()]

    @property
    def calls(self) -> list[dict]:
        """The syncs it ran."""
        return [run for run in self.runs if "--publish-only" not in run["argv"]]

    @property
    def publish_calls(self) -> list[dict]:
        """Its --publish-only runs."""
        return [run for run in self.runs if "--publish-only" in run["argv"]]


@pytest.fixture
def fake_engine(shared_dir: Path, machine: Machine, monkeypatch: pytest.MonkeyPatch):
    """Make a stand-in for the sync engine (arguments: stdout=[...], exit_code=0, stderr="", result={...},
    hold=None, metadata_url=None, publish_hold=None) that waits until the file `hold` exists (the test
    releases it), writes last-sync.json with the engine's own writer (if `result` is given), prints the
    lines, removes progress.json and exits with the code; with --publish-only it prints `metadata_url`
    and the product-streams URLs (`product_streams_urls`, default PRODUCT_STREAMS_URLS) as the engine
    does (once the file `publish_hold` exists, if given), or fails without a `metadata_url`. Each run
    records its arguments, uid, gid and HOME."""

    def make(
        stdout: list[str] = (),
        exit_code: int = 0,
        stderr: str = "",
        result: dict | None = None,
        hold: Path | None = None,
        metadata_url: str | None = None,
        product_streams_urls: dict[str, str] = PRODUCT_STREAMS_URLS,
        publish_hold: Path | None = None,
    ):
        directory = shared_dir / "engine"
        directory.mkdir(exist_ok=True)
        (directory / "fake_engine.py").write_text(FAKE_ENGINE)
        engine_src = directory / "src"  # where the sync's user can read the engine's state writer
        if not engine_src.exists():
            shutil.copytree(ENGINE_PACKAGE, engine_src / ENGINE_PACKAGE.name)
        engine = FakeEngine(calls_file=directory / "calls.jsonl")
        engine.calls_file.touch()
        engine.calls_file.chmod(0o666)  # the sync's user appends to it
        spec = {
            "stdout": list(stdout),
            "exit": exit_code,
            "stderr": stderr,
            "result": result,
            "hold": str(hold) if hold else None,
            "engine_src": str(engine_src),
            "calls": str(engine.calls_file),
            "publish_only": publish_only_lines(metadata_url, product_streams_urls) if metadata_url else [],
            "state_dir": str(machine.paths.state_dir),
            "publish_hold": str(publish_hold) if publish_hold else None,
        }
        (directory / "fake-engine.json").write_text(json.dumps(spec))
        monkeypatch.setattr(sync_process, "ENGINE", [FAKE_ENGINE_PYTHON, str(directory / "fake_engine.py")])
        return engine

    return make


@dataclass
class JujuExec:
    """A stand-in for `juju-exec UNIT is-leader` (the leadership guard's question to Juju): it prints the
    answer file's text (True, False, or nothing) and records its arguments."""

    bin_dir: Path

    def answer(self, text: str) -> None:
        (self.bin_dir / "answer").write_text(text)

    @property
    def calls(self) -> list[str]:
        calls = self.bin_dir / "calls"
        return calls.read_text().splitlines() if calls.exists() else []

    @property
    def path(self) -> str:
        """PATH for a cron line run as cron runs it, with this stand-in first."""
        return f"{self.bin_dir}:/usr/bin:/bin"


@pytest.fixture
def juju_exec(tmp_path: Path) -> JujuExec:
    bin_dir = tmp_path / "juju-bin"
    bin_dir.mkdir()
    script = bin_dir / "juju-exec"
    script.write_text(f'#!/bin/sh\necho "$*" >> {bin_dir}/calls\ncat {bin_dir}/answer\n')
    script.chmod(0o755)
    stand_in = JujuExec(bin_dir)
    stand_in.answer("True\n")
    return stand_in


@pytest.fixture
def ctx() -> testing.Context:
    """The charm with the repository's real charmcraft.yaml / metadata.yaml / config.yaml / actions.yaml."""
    from charm import GlanceSimplestreamsSyncCharm

    return testing.Context(GlanceSimplestreamsSyncCharm)


@pytest.fixture
def keystone() -> testing.Relation:
    """identity-service with keystone's complete (v3) answer."""
    return testing.Relation("identity-service", remote_app_name="keystone", remote_units_data={0: dict(KEYSTONE_V3)})


@pytest.fixture
def vault() -> testing.Relation:
    """Certificates with vault's answer: CA, chain and our processed request."""
    return testing.Relation(
        "certificates",
        remote_app_name="vault",
        remote_units_data={
            0: {
                "ca": CA_PEM,
                "chain": CHAIN_PEM,
                "glance-simplestreams-sync_0.processed_requests": json.dumps({"juju-0": {"cert": "x", "key": "y"}}),
            }
        },
    )
