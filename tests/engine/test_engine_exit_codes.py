"""The engine's command line without a cloud: exit 2 on an invalid config file, 3 while another sync
holds the lock, and in both cases nothing changed in the state dir."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from simplestreams_sync.sync_lock import SyncLock
from tests.localcloud.engine_cli import engine_argv, engine_env

EXIT_CONFIG, EXIT_LOCKED = 2, 3
IDENTITY = "auth_url: http://127.0.0.1:5000/v3\nusername: u\npassword: p\nproject_name: p\n"


@pytest.fixture
def files(tmp_path):
    """A valid mirrors.yaml and identity.yaml (for a cloud that is not there), and a state dir holding
    the result of an earlier run."""
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    (state_dir / "last-sync.json").write_text(json.dumps({"started": "2026-11-20T10:00:00Z", "ok": True}))
    mirrors = tmp_path / "mirrors.yaml"
    mirrors.write_text(f"mirror_list: [{{url: 'http://127.0.0.1:9/'}}]\nstate_dir: {state_dir}\n")
    identity = tmp_path / "identity.yaml"
    identity.write_text(IDENTITY)
    return mirrors, identity, state_dir


def run(mirrors, identity, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        engine_argv(mirrors, identity, *extra), capture_output=True, text=True, env=engine_env(), timeout=120
    )


def state_files(state_dir) -> dict[str, str]:
    return {path.name: path.read_text() for path in sorted(state_dir.iterdir()) if path.name != "sync.lock"}


INVALID = [
    pytest.param(
        "mirrors.yaml",
        "mirror_list: [{url: 'http://127.0.0.1:9/', max: 0}]\nstate_dir: STATE_DIR\n",
        "mirror_list.0.max: Input should be greater than or equal to 1",
        id="invalid-option",
    ),
    pytest.param(
        "identity.yaml",
        "auth_url: http://127.0.0.1:5000/v3\n",
        "username: Field required; password: Field required; project_name: Field required",
        id="incomplete-identity",
    ),
]


@pytest.mark.parametrize("extra", [[], ["--publish-only"], ["--full-check"]], ids=["sync", "publish-only", "full"])
@pytest.mark.parametrize("name, text, problem", INVALID)
def test_an_invalid_config_file_exits_2_naming_the_file_and_the_problem_and_changes_nothing(
    files, extra, name, text, problem
):
    mirrors, identity, state_dir = files
    invalid = {"mirrors.yaml": mirrors, "identity.yaml": identity}[name]
    invalid.write_text(text.replace("STATE_DIR", str(state_dir)))
    before = state_files(state_dir)

    result = run(mirrors, identity, *extra)

    assert (result.returncode, result.stdout) == (EXIT_CONFIG, "")
    assert result.stderr == f"error: {invalid}: {problem}\n"
    assert state_files(state_dir) == before


def test_a_mirrors_file_that_is_not_yaml_exits_2(files):
    mirrors, identity, state_dir = files
    mirrors.write_text("[1, 2")
    before = state_files(state_dir)

    result = run(mirrors, identity)

    assert (result.returncode, result.stdout) == (EXIT_CONFIG, "")
    assert result.stderr.startswith(f"error: {mirrors}: not valid YAML: while parsing a flow sequence\n")
    assert state_files(state_dir) == before


@pytest.mark.parametrize("extra", [[], ["--publish-only"], ["--full-check"]], ids=["sync", "publish-only", "full"])
def test_while_another_sync_holds_the_lock_it_exits_3_and_changes_nothing(files, extra):
    mirrors, identity, state_dir = files
    before = state_files(state_dir)

    with SyncLock(state_dir):
        result = run(mirrors, identity, *extra)

    assert (result.returncode, result.stdout) == (EXIT_LOCKED, "")
    assert result.stderr == f"error: another sync is already running (pid {os.getpid()})\n"
    assert state_files(state_dir) == before


def test_a_dry_run_writes_no_result_so_the_status_keeps_the_last_real_runs(files):
    """docs/reference/status-messages.md: a dry run leaves last-sync.json (what `juju status` reports) as it was."""
    mirrors, identity, state_dir = files
    before = state_files(state_dir)

    result = run(mirrors, identity, "--dry-run", "--assume-empty-glance")

    assert result.stdout.splitlines()[-1] == "dry run: 0 would be created, 1 errors"
    assert state_files(state_dir) == before
