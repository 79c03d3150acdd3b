"""Least privilege: the sync (action, first background sync, cron, publish-only) runs as its own system
user; the files it reads are root's with its group, mode 0640; the state dir is its own."""

import json
import os
import pwd
import subprocess
import sys
import time

import pytest
from ops import testing

from sync_charm import host

AS_ROOT = os.geteuid() == 0


@pytest.fixture
def state(keystone) -> testing.State:
    return testing.State(leader=True, config={"run": True}, relations=[keystone])


def assert_ran_as_the_sync_user(run: dict) -> None:
    account = pwd.getpwnam(host.SYNC_USER)
    assert (run["uid"], run["gid"], run["home"]) == (account.pw_uid, account.pw_gid, account.pw_dir)
    assert run["mirrors_readable"] and run["identity_readable"]
    if AS_ROOT:
        assert run["uid"] != 0


def test_the_action_runs_the_sync_as_its_user(ctx, state, fake_engine):
    engine = fake_engine(stdout=["nothing to do"])

    ctx.run(ctx.on.action("sync-images"), state)

    (run,) = engine.calls
    assert_ran_as_the_sync_user(run)


def test_the_first_sync_runs_in_the_background_as_its_user(ctx, keystone, state, machine, fake_engine, monkeypatch):
    from sync_charm import sync_process

    monkeypatch.setattr(sync_process, "start_background_sync", machine.real_start_background_sync)
    engine = fake_engine(stdout=["created 1234: auto-sync/ubuntu-24.04"], result={"created": [{"id": "1234"}]})

    ctx.run(ctx.on.relation_changed(keystone, remote_unit=0), state)

    deadline = time.monotonic() + 60  # a bound on a process we started, not a measure
    while not engine.calls or "created 1234" not in machine.paths.log_file.read_text():
        assert time.monotonic() < deadline, "the background sync did not run"
        time.sleep(0.05)
    (run,) = engine.calls
    assert_ran_as_the_sync_user(run)
    assert machine.sync_readable(machine.paths.log_file)


def test_the_cron_job_runs_the_sync_as_its_user_and_roots_shell_opens_the_log(ctx, state, machine, fake_engine):
    engine = fake_engine(stdout=["unchanged since the sync of …"], result={})
    ctx.run(ctx.on.config_changed(), state)

    line = next(line for line in machine.paths.cron_file.read_text().splitlines() if " root " in line)
    command = line.split(" root ", 1)[1]
    if AS_ROOT:
        account = pwd.getpwnam(host.SYNC_USER)
        assert command.startswith(
            f"setpriv --reuid={host.SYNC_USER} --regid={machine.sync_group} --init-groups "
            f"env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "
            f"HOME={account.pw_dir} "
        )
    process = subprocess.run(
        ["/bin/sh", "-c", command.replace("\\%", "%")],
        env={"PATH": "/usr/bin:/bin"},
        cwd="/",
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert process.returncode == 0, process.stderr
    (run,) = engine.calls
    assert_ran_as_the_sync_user(run)
    assert "unchanged since the sync of …" in machine.paths.log_file.read_text()
    assert machine.sync_readable(machine.paths.log_file)


def test_files_the_sync_reads_are_roots_0640_with_its_group(ctx, state, machine, keystone):
    config = {"run": True, "custom_keyring": "mQENBGJpbmFyeS1ncGcta2V5cmluZw=="}
    ctx.run(ctx.on.config_changed(), testing.State(leader=True, config=config, relations=[keystone]))

    for path in (machine.paths.mirrors, machine.paths.identity, machine.paths.keyring, machine.paths.log_file):
        assert machine.sync_readable(path), (path, machine.owners(path))
    assert machine.owners(machine.paths.cron_file) == ("644", machine.charm_user, machine.charm_group)
    assert machine.owners(machine.paths.config_dir) == ("755", machine.charm_user, machine.charm_group)


def test_the_state_dir_is_the_sync_users_and_traversable(ctx, state, machine):
    machine.write_result()  # as if an older, root-run sync had left it
    (machine.paths.state_dir / "sync.lock").write_text("")
    machine.paths.state_dir.chmod(0o700)

    ctx.run(ctx.on.config_changed(), state)

    state_dir = machine.paths.state_dir
    assert machine.owners(state_dir) == ("755", machine.sync_user, machine.sync_group)
    for path in state_dir.iterdir():
        assert machine.owners(path)[1:] == (machine.sync_user, machine.sync_group), path
    assert machine.owners(state_dir / "last-sync.json")[0] == "644"  # NRPE's check reads it as nagios


def test_the_first_sync_marker_is_the_sync_users_from_the_start(ctx, state, machine):
    ctx.run(ctx.on.config_changed(), state)

    assert machine.owners(machine.paths.first_sync_marker)[1:] == (machine.sync_user, machine.sync_group)


def test_an_existing_log_gets_the_sync_group_and_0640(ctx, state, machine):
    machine.paths.log_file.parent.mkdir(parents=True)
    machine.paths.log_file.write_text("# from an older charm\n")
    machine.paths.log_file.chmod(0o644)

    ctx.run(ctx.on.config_changed(), state)

    assert machine.sync_readable(machine.paths.log_file)
    assert machine.paths.log_file.read_text().startswith("# from an older charm\n")


# --- the user itself ------------------------------------------------------------------------------


@pytest.fixture
def useradd(tmp_path, monkeypatch):
    """A useradd that records its arguments and exits with the code in `exit.txt`."""
    calls = tmp_path / "useradd.calls"
    code = tmp_path / "exit.txt"
    code.write_text("0")
    script = (
        f"import json, sys; open({str(calls)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n'); "
        f"sys.stderr.write('useradd: cannot lock /etc/passwd\\n'); sys.exit(int(open({str(code)!r}).read()))"
    )
    monkeypatch.setattr(host, "ADD_SYSTEM_USER", [sys.executable, "-c", script, "--system", "--user-group"])
    monkeypatch.setattr(host, "SYNC_USER", "gss-test-no-such-user")

    def read() -> list[list[str]]:
        return [json.loads(line) for line in calls.read_text().splitlines()] if calls.exists() else []

    read.fail = lambda: code.write_text("1")
    return read


def test_an_existing_user_is_not_created_again(machine, monkeypatch):
    monkeypatch.setattr(host, "ADD_SYSTEM_USER", ["false"])

    account = host.sync_account()

    assert account.uid == pwd.getpwnam(host.SYNC_USER).pw_uid


def test_a_missing_user_is_created_as_a_system_user_with_its_group(machine, useradd):
    with pytest.raises(RuntimeError) as raised:
        host.sync_account()  # the fake useradd adds no one

    assert useradd() == [
        ["--system", "--user-group", "--home-dir", str(machine.paths.state_dir), "gss-test-no-such-user"]
    ]
    assert "the system does not know the user gss-test-no-such-user" in str(raised.value)


def test_a_failed_useradd_says_which_user_and_why(machine, useradd):
    useradd.fail()

    with pytest.raises(RuntimeError) as raised:
        host.sync_account()

    message = str(raised.value)
    assert message.startswith("cannot create the system user gss-test-no-such-user the sync runs as: ")
    assert message.endswith("exited with 1: useradd: cannot lock /etc/passwd")


def test_remove_keeps_the_log_readable_by_the_sync_users_group(ctx, state, machine):
    """The system user stays (as Debian packages leave theirs), so the log keeps a named group."""
    ctx.run(ctx.on.config_changed(), state)

    ctx.run(ctx.on.remove(), state)

    assert machine.sync_readable(machine.paths.log_file)
    assert not machine.paths.state_dir.exists()


LOG_PROBE = """
import errno, json, os, sys
log, state_dir = sys.argv[1:3]
replacement = os.path.join(state_dir, "replacement.log")  # the sync's own directory
with open(replacement, "w") as stream:
    stream.write("a log of the sync's making")
print("appended by the sync")
outcome = {}
for what, attempt in (
    ("remove", lambda: os.unlink(log)),
    ("rename", lambda: os.rename(log, log + ".old")),
    ("replace", lambda: os.rename(replacement, log)),
    ("truncate", lambda: open(log, "w").close()),
    ("open for append", lambda: open(log, "a").close()),
):
    try:
        attempt()
        outcome[what] = "done"
    except OSError as error:
        outcome[what] = errno.errorcode[error.errno]
print(json.dumps(outcome, sort_keys=True))
"""


@pytest.mark.skipif(not AS_ROOT, reason="the sync's user must be another user than the log's owner, root")
def test_the_sync_appends_to_the_log_but_cannot_replace_or_remove_it(ctx, state, machine, shared_dir, monkeypatch):
    from sync_charm import sync_process

    probe = shared_dir / "log_probe.py"
    probe.write_text(LOG_PROBE)
    monkeypatch.setattr(
        sync_process,
        "ENGINE",
        ["/usr/bin/python3", str(probe), str(machine.paths.log_file), str(machine.paths.state_dir)],
    )
    ctx.run(ctx.on.config_changed(), state)
    line = next(line for line in machine.paths.cron_file.read_text().splitlines() if " root " in line)
    log = machine.paths.log_file
    log.write_text("# the log so far\n")

    process = subprocess.run(
        ["/bin/sh", "-c", line.split(" root ", 1)[1].replace("\\%", "%")],
        env={"PATH": "/usr/bin:/bin"},
        cwd="/",
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert process.returncode == 0, log.read_text()
    first, appended, outcome = log.read_text().splitlines()
    assert (first, appended) == ("# the log so far", "appended by the sync")
    assert json.loads(outcome) == {
        "remove": "EACCES",
        "rename": "EACCES",
        "replace": "EACCES",
        "truncate": "EACCES",
        "open for append": "EACCES",
    }
    assert machine.sync_readable(log)


def test_upgrade_charm_creates_the_missing_user_as_install_does(ctx, keystone, machine, useradd):
    """A unit refreshed from the classic charm (which ran the sync as root) has no sync user."""
    with pytest.raises(testing.errors.UncaughtCharmError, match="does not know the user gss-test-no-such-user"):
        ctx.run(ctx.on.upgrade_charm(), testing.State(leader=True, relations=[keystone]))

    (call,) = useradd()
    assert call[-1] == "gss-test-no-such-user" and "--system" in call
