"""A machine as a Juju agent presents it to a unit of a packed charm, on this host, leaving it untouched.

`JujuMachine` unpacks the `.charm` where the agent does (`/var/lib/juju/agents/unit-NAME-N/charm`, on the
machine's /var overlay, so that the charm's system user can read it as on a real machine), puts the hook
tools of `hooktools.py` first on the hook's PATH, and runs `dispatch` with the environment
Juju gives a hook or an action. The model it answers from (config, relations, leadership, statuses,
action results) is a JSON file; every hook tool call is logged.

Everything the charm and its subprocesses run happens in a private mount namespace in which /etc,
/usr, /var and /root are overlays: the charm writes to the real paths (/etc/cron.d, /var/lib/…) and
reads the real system, but what it writes lands in `<workdir>/overlay/*/upper`, and the host sees
none of it. A sleeping process holds the namespace; `stop()` kills every process in it by PID.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path

import yaml

HOOK_TOOLS = Path(__file__).resolve().parent / "hooktools.py"
OVERLAID = ("/etc", "/usr", "/var", "/root")
AGENT_DATA_DIR = "/var/lib/juju"  # the agent's, not what the charm leaves
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
JUJU_VERSION = "3.6.12"


@dataclass
class Dispatched:
    """One run of `dispatch`: its exit code and output, and the hook tool calls it made."""

    returncode: int
    output: str
    calls: list[dict]

    def called(self, tool: str) -> list[list[str]]:
        return [call["args"] for call in self.calls if call["tool"] == tool]


@dataclass
class CronJob:
    schedule: str
    user: str
    command: str
    variables: dict[str, str]


class JujuMachine:
    def __init__(
        self, workdir: Path, charm_file: Path, unit: str, address: str = "127.0.0.1", python3: str | None = None
    ):
        """`python3`: the interpreter the machine's /usr/bin/python3 is (its base's Python, e.g. pyenv's
        3.12 for ubuntu@24.04); by default this host's."""
        self.workdir = workdir
        self.python3 = python3
        self.charm_file = charm_file
        self.unit = unit
        self.app = unit.split("/")[0]
        self.address = address
        self.charm_dir = Path(AGENT_DATA_DIR) / "agents" / f"unit-{unit.replace('/', '-')}" / "charm"
        self.tools_dir = workdir / "tools"
        self.model_file = workdir / "model.json"
        self.calls_file = workdir / "calls.jsonl"
        self.model_uuid = str(uuid.uuid4())
        self._holder: subprocess.Popen | None = None
        self._next_relation_id = 1

    # --- lifecycle of the machine --------------------------------------------------------------

    def start(self) -> JujuMachine:
        charm_dir = self._upper(self.charm_dir)  # written before the overlay is mounted over /var
        charm_dir.mkdir(parents=True)
        with zipfile.ZipFile(self.charm_file) as charm:
            for info in charm.infolist():  # zipfile drops the modes: keep dispatch and charm.py executable
                path = Path(charm.extract(info, charm_dir))
                mode = info.external_attr >> 16 & 0o777
                if mode:
                    path.chmod(mode)
        if self.python3 is not None:
            system_python = self._upper(Path("/usr/bin/python3"))
            system_python.parent.mkdir(parents=True, exist_ok=True)
            system_python.symlink_to(self.python3)
        self.tools_dir.mkdir()
        for tool in _tool_names():
            (self.tools_dir / tool).symlink_to(HOOK_TOOLS)
        options = yaml.safe_load((charm_dir / "config.yaml").read_text())["options"]
        self._save(
            {
                "leader": False,
                "address": self.address,
                "relations": {},
                "state": {},
                "version": "",
                "config": {name: spec["default"] for name, spec in options.items() if "default" in spec},
                "status": {
                    "unit": {"status": "maintenance", "message": ""},
                    "app": {"status": "unknown", "message": ""},
                },
                "action": {"params": {}, "results": {}, "failed": None, "log": []},
                "packages": [],
            }
        )
        self.calls_file.touch()
        self._start_namespace()
        return self

    def _upper(self, path: Path) -> Path:
        """Where a path of the machine's overlaid directories is stored on the host."""
        directory = next(directory for directory in OVERLAID if path.is_relative_to(directory))
        return self.workdir / "overlay" / directory.strip("/") / "upper" / path.relative_to(directory)

    def _start_namespace(self) -> None:
        mounts = []
        for directory in OVERLAID:
            layer = self.workdir / "overlay" / directory.strip("/")
            (layer / "upper").mkdir(parents=True, exist_ok=True)
            (layer / "work").mkdir()
            mounts.append(
                f"mount -t overlay overlay -o lowerdir={directory},upperdir={layer / 'upper'},"
                f"workdir={layer / 'work'} {directory}"
            )
        script = " && ".join(mounts) + " && echo ready && exec sleep infinity"
        self._holder = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", script],
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        if self._holder.stdout.readline().strip() != "ready":
            self._holder.wait()
            raise RuntimeError("could not make the machine's private mount namespace (needs root)")

    def processes(self) -> list[int]:
        """PIDs of every process in the machine's mount namespace but its holder."""
        if self._holder is None:
            return []
        namespace = os.readlink(f"/proc/{self._holder.pid}/ns/mnt")
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) != self._holder.pid:
                try:
                    if os.readlink(entry / "ns" / "mnt") == namespace:
                        pids.append(int(entry.name))
                except OSError:
                    continue
        return pids

    def stop(self) -> None:
        for pid in self.processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self._holder is not None:
            self._holder.kill()
            self._holder.wait()
            self._holder.stdout.close()
            self._holder = None

    def __enter__(self) -> JujuMachine:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # --- running things on the machine ---------------------------------------------------------

    def enter_argv(self) -> list[str]:
        """The prefix that runs a command in the machine's mount namespace (e.g. a server a test starts
        there and stops by its PID, which is the command's own)."""
        assert self._holder is not None, "the machine is not started"
        return ["nsenter", f"--mount=/proc/{self._holder.pid}/ns/mnt", "--"]

    def run(
        self, argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 900
    ) -> subprocess.CompletedProcess:
        """Run a command inside the machine (its view of /etc, /usr, /var, /root), with exactly `env`."""
        assert self._holder is not None, "the machine is not started"
        environment = [f"{key}={value}" for key, value in (env or {"PATH": SYSTEM_PATH}).items()]
        # env changes the directory inside the namespace (nsenter's --wd opens it before entering)
        return subprocess.run(
            [
                *self.enter_argv(),
                "env",
                "-i",
                f"--chdir={cwd or '/'}",
                *environment,
                *argv,
            ],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd="/",
        )

    def dispatch(self, path: str, **juju_env: str) -> Dispatched:
        """Run the charm's `dispatch` for `hooks/NAME` or `actions/NAME` as the unit agent does."""
        env = {
            "PATH": f"{self.tools_dir}:{SYSTEM_PATH}",
            "HOME": "/root",
            "LANG": "C.UTF-8",
            "JUJU_DISPATCH_PATH": path,
            "JUJU_HOOK_NAME": path.split("/", 1)[1] if path.startswith("hooks/") else "",
            "JUJU_UNIT_NAME": self.unit,
            "JUJU_MODEL_NAME": "test",
            "JUJU_MODEL_UUID": self.model_uuid,
            "JUJU_MACHINE_ID": "1",
            "JUJU_AVAILABILITY_ZONE": "",
            "JUJU_VERSION": JUJU_VERSION,
            "JUJU_CHARM_DIR": str(self.charm_dir),
            "CHARM_DIR": str(self.charm_dir),
            "JUJU_CONTEXT_ID": f"{self.unit}-{path}-{uuid.uuid4().hex[:8]}",
            "JUJU_AGENT_MODEL": str(self.model_file),
            "JUJU_AGENT_CALLS": str(self.calls_file),
            **juju_env,
        }
        logged = self.calls_file.stat().st_size
        process = self.run(["./dispatch"], env=env, cwd=self.charm_dir)
        with self.calls_file.open() as calls:
            calls.seek(logged)
            new_calls = [json.loads(line) for line in calls]
        return Dispatched(process.returncode, process.stdout + process.stderr, new_calls)

    def hook(self, name: str) -> Dispatched:
        return self.dispatch(f"hooks/{name}")

    def relation_hook(self, rid: int, event: str, remote_unit: str | None = None) -> Dispatched:
        relation = self.model()["relations"][str(rid)]
        env = {
            "JUJU_RELATION": relation["endpoint"],
            "JUJU_RELATION_ID": f"{relation['endpoint']}:{rid}",
            "JUJU_REMOTE_APP": relation["app"],
        }
        if remote_unit:
            env["JUJU_REMOTE_UNIT"] = remote_unit
        if event == "departed":
            env["JUJU_DEPARTING_UNIT"] = remote_unit or ""
        return self.dispatch(f"hooks/{relation['endpoint']}-relation-{event}", **env)

    def action(self, name: str, **params) -> tuple[Dispatched, dict]:
        """Run an action; return the run and {results, failed, log}."""
        self._update(lambda model: model.update(action={"params": params, "results": {}, "failed": None, "log": []}))
        run = self.dispatch(f"actions/{name}", JUJU_ACTION_NAME=name, JUJU_ACTION_UUID=str(int(time.time())))
        return run, self.model()["action"]

    # --- the model -----------------------------------------------------------------------------

    def model(self) -> dict:
        return json.loads(self.model_file.read_text())

    def _save(self, model: dict) -> None:
        self.model_file.write_text(json.dumps(model, indent=1))

    def _update(self, change) -> None:
        model = self.model()
        change(model)
        self._save(model)

    def set_leader(self, leader: bool) -> None:
        self._update(lambda model: model.update(leader=leader))

    def set_config(self, **values) -> None:
        self._update(lambda model: model["config"].update(values))

    def add_relation(self, endpoint: str, app: str) -> int:
        rid = self._next_relation_id
        self._next_relation_id += 1
        self._update(
            lambda model: model["relations"].setdefault(
                str(rid),
                {"endpoint": endpoint, "app": app, "units": {}, "app_data": {}, "local_unit": {}, "local_app": {}},
            )
        )
        return rid

    def set_remote_unit_data(self, rid: int, unit: str, data: dict[str, str]) -> None:
        self._update(lambda model: model["relations"][str(rid)]["units"].setdefault(unit, {}).update(data))

    def set_local_unit_data(self, rid: int, data: dict[str, str]) -> None:
        """What an earlier charm (e.g. the classic one) left on our side of a relation."""
        self._update(lambda model: model["relations"][str(rid)]["local_unit"].update(data))

    def local_unit_data(self, rid: int) -> dict[str, str]:
        return self.model()["relations"][str(rid)]["local_unit"]

    def local_app_data(self, rid: int) -> dict[str, str]:
        return self.model()["relations"][str(rid)]["local_app"]

    @property
    def unit_status(self) -> tuple[str, str]:
        status = self.model()["status"]["unit"]
        return status["status"], status["message"]

    # --- what the charm left on the machine ----------------------------------------------------

    def read_text(self, path: str) -> str:
        process = self.run(["cat", path])
        if process.returncode:
            raise FileNotFoundError(path)
        return process.stdout

    def exists(self, path: str) -> bool:
        return self.run(["test", "-e", path]).returncode == 0

    def stat(self, path: str) -> tuple[str, str, str]:
        """(octal mode, owner, group) of a path on the machine."""
        mode, owner, group = self.run(["stat", "-c", "%a %U %G", path]).stdout.split()
        return mode, owner, group

    def changed_paths(self) -> list[str]:
        """Every file or link on the machine that differs from the host's: what the charm left (the
        agent's own directory, with the unpacked charm, aside)."""
        changed = []
        for directory in OVERLAID:
            upper = self.workdir / "overlay" / directory.strip("/") / "upper"
            for path in sorted(upper.rglob("*")):
                real = Path(directory) / path.relative_to(upper)
                if real.is_relative_to(AGENT_DATA_DIR) or (self.python3 and str(real) == "/usr/bin/python3"):
                    continue
                if path.is_dir() and not path.is_symlink():
                    if not real.is_dir():
                        changed.append(str(real))
                elif not _same_entry(path, real):
                    changed.append(str(real))
        return changed

    def cron_jobs(self, path: str) -> list[CronJob]:
        """The jobs of a cron.d file, with the variables it sets, as cron reads them."""
        variables, jobs = {}, []
        for line in self.read_text(path).splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, _, value = line.partition("=")
            if _ and " " not in name:
                variables[name] = value
                continue
            fields = line.split(None, 6)
            jobs.append(CronJob(" ".join(fields[:5]), fields[5], fields[6], dict(variables)))
        return jobs

    def run_cron_job(self, job: CronJob, timeout: float = 900) -> subprocess.CompletedProcess:
        """Run a job as cron does: its user, /bin/sh -c, cron's bare environment plus the file's variables."""
        assert "%" not in job.command.replace("\\%", ""), "unescaped % (cron would cut the command there)"
        home = self.run(["getent", "passwd", job.user]).stdout.split(":")[5]
        env = {
            "HOME": home,
            "LOGNAME": job.user,
            "USER": job.user,
            "SHELL": "/bin/sh",
            "PATH": "/usr/bin:/bin",
            **job.variables,
        }
        argv = [env["SHELL"], "-c", job.command.replace("\\%", "%")]
        if job.user != "root":
            argv = ["setpriv", f"--reuid={job.user}", f"--regid={job.user}", "--init-groups", *argv]
        return self.run(argv, env=env, cwd=Path("/"), timeout=timeout)


def _tool_names() -> list[str]:
    process = subprocess.run(
        ["/usr/bin/python3", "-c", "import hooktools; print(' '.join(hooktools.TOOLS))"],
        cwd=HOOK_TOOLS.parent,
        capture_output=True,
        text=True,
        check=True,
    )
    return process.stdout.split()


def _same_entry(upper: Path, real: Path) -> bool:
    if upper.is_symlink() or real.is_symlink():
        return upper.is_symlink() and real.is_symlink() and os.readlink(upper) == os.readlink(real)
    try:
        return (
            real.is_file() and upper.read_bytes() == real.read_bytes() and upper.stat().st_mode == real.stat().st_mode
        )
    except OSError:
        return False
