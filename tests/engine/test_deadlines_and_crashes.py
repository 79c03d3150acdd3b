"""Deadlines, crashes, the watchdog, file modes and the invalid-config retry, without a cloud: the
deadlines each request gets, a server on 127.0.0.1 that accepts and never answers, a crash in a phase of
the command line, a run that stops making progress."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from contextlib import suppress
from pathlib import Path
from types import SimpleNamespace

import pytest
from keystoneauth1 import exceptions as ks_exceptions
from keystoneauth1.identity import v3

from simplestreams_sync import EXIT_CRASHED, openstack, raw_http, timeouts
from simplestreams_sync import __main__ as cli
from simplestreams_sync.state import PROGRESS_FILE, ProgressFile, SyncResult, make_dirs, read_result, write_result
from simplestreams_sync.watchdog import no_progress_limit
from tests.localcloud.engine_cli import engine_argv, engine_env

IDENTITY = "auth_url: http://127.0.0.1:9/v3\nusername: u\npassword: p\nproject_name: p\n"


# --- the deadlines ------------------------------------------------------------------------------------


def test_the_defaults_are_the_deadlines_of_every_api_and_source_request():
    assert timeouts.DEFAULTS == {
        "CONNECT": 10.0,
        "READ": 60.0,
        "UPLOAD_ANSWER": 240.0,
        "SOURCE_READ": 60.0,
        "NO_PROGRESS": 3600.0,
    }
    assert "SIMPLESTREAMS_SYNC_TIMEOUT_READ" not in os.environ
    assert (timeouts.api(), timeouts.source(), timeouts.UPLOAD_ANSWER) == ((10.0, 60.0), (10.0, 60.0), 240.0)


def test_a_keystone_session_gives_every_request_the_api_deadlines():
    auth = v3.Password(auth_url="http://127.0.0.1:9/v3", username="u", password="p", project_name="p")

    session = openstack._keystone_session(auth, True, proxies={})

    assert session.timeout == (10.0, 60.0)


def test_the_environment_overrides_each_deadline():
    script = (
        "from simplestreams_sync import timeouts; print(timeouts.api(), timeouts.UPLOAD_ANSWER, timeouts.NO_PROGRESS)"
    )
    env = {**engine_env(), "SIMPLESTREAMS_SYNC_TIMEOUT_READ": "2", "SIMPLESTREAMS_SYNC_TIMEOUT_NO_PROGRESS": "5.5"}

    printed = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)

    assert printed.stdout == "(10.0, 2.0) 240.0 5.5\n"


class SilentServer:
    """Accepts connections on 127.0.0.1 and never answers; `reads`: whether it takes what is sent."""

    def __init__(self, reads: bool):
        self.reads = reads
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> SilentServer:
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        with suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self.thread.join()
        for connection in self.connections:
            connection.close()

    def _serve(self) -> None:
        readers = []
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                break
            self.connections.append(connection)
            if self.reads:
                readers.append(threading.Thread(target=_read_all, args=(connection,), daemon=True))
                readers[-1].start()
        for connection in self.connections:
            with suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        for reader in readers:
            reader.join()


def _read_all(connection: socket.socket) -> None:
    with suppress(OSError):
        while connection.recv(1 << 16):
            pass


def test_a_service_that_missed_a_deadline_is_not_waited_for_again_in_the_run(monkeypatch):
    monkeypatch.setattr(timeouts, "READ", 0.3)
    auth = v3.Password(auth_url="http://127.0.0.1:9/v3", username="u", password="p", project_name="p")
    session = openstack._keystone_session(auth, True, proxies={})
    with SilentServer(reads=True) as server:
        url = f"http://127.0.0.1:{server.port}/v2/images"
        errors = []
        for _ in range(3):
            with pytest.raises(ks_exceptions.ConnectTimeout) as raised:
                session.get(url, authenticated=False)
            errors.append(openstack.describe(raised.value))
        connections = len(server.connections)

    assert errors == [f"{url}: no answer within 0.3 s"] * 3
    assert connections == 1


def test_an_upload_without_an_answer_after_its_last_byte_ends_at_upload_answer(monkeypatch):
    monkeypatch.setattr(timeouts, "UPLOAD_ANSWER", 0.3)
    with SilentServer(reads=True) as server:
        url = f"http://127.0.0.1:{server.port}/v2/images/x/file"
        with pytest.raises(raw_http.NoAnswer) as raised:
            raw_http.chunked_put(url, [b"x" * 1000], {}, verify=True)

    assert str(raised.value) == f"{url}: no answer within 0.3 s after the last byte"


def test_an_upload_the_server_stops_taking_ends_at_read(monkeypatch):
    monkeypatch.setattr(timeouts, "READ", 0.3)
    monkeypatch.setattr(timeouts, "UPLOAD_ANSWER", 600.0)  # never reached: the body stops first
    with SilentServer(reads=False) as server:
        url = f"http://127.0.0.1:{server.port}/v2/images/x/file"
        with pytest.raises(raw_http.NoAnswer) as raised:
            raw_http.chunked_put(url, (b"x" * (1 << 20) for _ in range(256)), {}, verify=True)

    assert str(raised.value) == f"{url}: no answer within 0.3 s (it took no more of the body)"


# --- file modes -----------------------------------------------------------------------------------------


@pytest.fixture
def umask_027():
    previous = os.umask(0o027)
    yield
    os.umask(previous)


def test_under_umask_027_the_result_and_progress_stay_readable_by_monitoring(tmp_path, umask_027):
    state_dir = tmp_path / "new" / "state"
    write_result(state_dir, SyncResult(started="2026-11-24T10:00:00Z"))
    ProgressFile(state_dir)

    modes = {
        path.name: oct(path.stat().st_mode & 0o777) for path in [state_dir.parent, state_dir, *state_dir.iterdir()]
    }
    assert modes == {"new": "0o755", "state": "0o755", "last-sync.json": "0o644", PROGRESS_FILE: "0o644"}


def test_make_dirs_leaves_existing_directories_alone(tmp_path, umask_027):
    tmp_path.chmod(0o700)
    make_dirs(tmp_path / "a" / "b")

    assert [oct(path.stat().st_mode & 0o777) for path in (tmp_path, tmp_path / "a", tmp_path / "a" / "b")] == [
        "0o700",
        "0o755",
        "0o755",
    ]


def test_make_dirs_leaves_directories_that_inherit_the_set_group_id_bit_as_created(tmp_path, umask_027):
    tmp_path.chmod(0o2750)
    make_dirs(tmp_path / "streams" / "v1")

    modes = [oct(path.stat().st_mode & 0o7777) for path in (tmp_path / "streams", tmp_path / "streams" / "v1")]
    assert modes == ["0o2750", "0o2750"]  # the group (the web server's) reads; a chmod could drop the bit


# --- a crash is a result -------------------------------------------------------------------------------


@pytest.fixture
def config(tmp_path):
    state_dir = tmp_path / "state"
    mirrors = tmp_path / "mirrors.yaml"
    mirrors.write_text(f"mirror_list: [{{url: 'http://127.0.0.1:9/'}}]\nstate_dir: {state_dir}\nfrequency: hourly\n")
    identity = tmp_path / "identity.yaml"
    identity.write_text(IDENTITY)
    return mirrors, identity, state_dir


def test_a_crash_in_the_quick_check_leaves_a_result_saying_so_and_schedules_the_retry(config, monkeypatch, capsys):
    mirrors, identity, state_dir = config

    def crash(state_dir):
        raise KeyError("items")

    monkeypatch.setattr("simplestreams_sync.quick_check.still_current", crash)

    code = cli.main(["--mirrors", str(mirrors), "--identity", str(identity)])

    result = read_result(state_dir)
    assert code == EXIT_CRASHED == 4
    assert (result.crashed, result.errors) == (
        "KeyError: 'items'",
        ["the sync crashed: KeyError: 'items' (the traceback is in the sync log)"],
    )
    assert (result.ok, result.failures_in_a_row, bool(result.next_try)) == (False, 1, True)
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):\n")
    assert err.endswith("KeyError: 'items'\nerror: the sync crashed: KeyError: 'items'\n")
    assert not (state_dir / PROGRESS_FILE).exists()


def test_a_crashed_dry_run_exits_4_and_records_nothing(config, monkeypatch, capsys):
    mirrors, identity, state_dir = config

    def crash(self):
        raise KeyError("items")

    monkeypatch.setattr("simplestreams_sync.engine.SyncRun.run", crash)

    code = cli.main(["--mirrors", str(mirrors), "--identity", str(identity), "--dry-run"])

    assert code == EXIT_CRASHED
    assert capsys.readouterr().err.endswith("error: the sync crashed: KeyError: 'items'\n")
    assert not state_dir.exists()


# --- the watchdog -----------------------------------------------------------------------------------------

WATCHED_RUN = """
import sys, threading
from simplestreams_sync import outcomes
from simplestreams_sync.state import ProgressFile
from simplestreams_sync.watchdog import Watchdog
state_dir = sys.argv[1]
progress = ProgressFile(state_dir)
progress.update(force=True, phase="uploading", item="ubuntu-x disk1.img", item_index=2, item_count=3)
def on_stall(message):
    progress.close()
    outcomes.record_failure(state_dir, progress.data["started"], message, "daily")
with Watchdog(progress, on_stall, exit_code=1, limit=float(sys.argv[2])):
    threading.Event().wait()  # a run stuck for good: only the watchdog ends it
"""


def test_the_watchdog_ends_a_run_without_progress_and_records_why(tmp_path):
    state_dir = tmp_path / "state"

    ended = subprocess.run(
        [sys.executable, "-c", WATCHED_RUN, str(state_dir), "0.5"], env=engine_env(), timeout=120, capture_output=True
    )

    result = read_result(state_dir)
    assert ended.returncode == 1
    assert result.errors == [
        "no progress for 0.5 s (phase uploading, item ubuntu-x disk1.img 2 of 3): the watchdog ended the run"
    ]
    assert (result.ok, result.failures_in_a_row, bool(result.next_try)) == (False, 1, True)
    assert not (state_dir / PROGRESS_FILE).exists()


@pytest.mark.parametrize(
    "conversion, import_timeout, modify_hook, limit",
    [
        (False, 1800, None, 3600.0),
        (True, 1800, None, 3600.0),
        (True, 7200, None, 7260.0),
        (False, 7200, "/usr/local/bin/modify", 3660.0),
    ],
)
def test_the_watchdog_waits_longer_than_the_waits_the_config_makes_long(conversion, import_timeout, modify_hook, limit):
    config = SimpleNamespace(image_import_conversion=conversion, import_timeout=import_timeout, modify_hook=modify_hook)

    assert no_progress_limit(config) == limit


# --- an invalid config, said once per change ---------------------------------------------------------------


def retry_run(mirrors: Path, identity: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        engine_argv(mirrors, identity, "--retry"), capture_output=True, text=True, env=engine_env(), timeout=120
    )


def test_the_retry_line_says_an_invalid_config_once_per_change_of_the_files(config):
    mirrors, identity, state_dir = config
    mirrors.write_text(f"mirror_list: [{{url: 'http://127.0.0.1:9/', max: 0}}]\nstate_dir: {state_dir}\n")
    said = f"error: {mirrors}: mirror_list.0.max: Input should be greater than or equal to 1\n"

    runs = [retry_run(mirrors, identity), retry_run(mirrors, identity)]
    mirrors.write_text(f"mirror_list: [{{url: 'http://127.0.0.1:9/', max: -1}}]\nstate_dir: {state_dir}\n")
    runs.append(retry_run(mirrors, identity))

    assert [(run.returncode, run.stderr) for run in runs] == [(2, said), (2, ""), (2, said)]
    assert json.loads((state_dir / "config-error.json").read_text())["error"] == said.removeprefix("error: ").strip()
