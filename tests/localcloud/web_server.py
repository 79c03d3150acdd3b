"""The real nginx (Debian's package) serving a site config the charm wrote, started by a test.

Not the system service: the test's own master process, with its pid file, logs and temp dirs in the
test's directory, stopped by PID. The main config is the smallest that holds a site (`include` of the
charm's file, unchanged); the ports are the ones that site says (the test sets them through the charm's
options to free ports on 127.0.0.1).

    with NginxServer(tmp_path / "nginx", site_file, user="www-data") as server:
        requests.get(f"{url}/streams/v1/index.json")

`prefix` runs nginx through another command, e.g. nsenter into the packed charm's machine, where the
site's paths exist.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from contextlib import closing, suppress
from pathlib import Path

START_TIMEOUT = 30.0

MAIN_CONFIG = """\
# A test's own nginx: everything it writes stays in {workdir}.
user {user};
worker_processes 1;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log;
events {{
    worker_connections 64;
}}
http {{
    access_log {workdir}/access.log;
    client_body_temp_path {workdir}/temp/body;
    proxy_temp_path {workdir}/temp/proxy;
    fastcgi_temp_path {workdir}/temp/fastcgi;
    uwsgi_temp_path {workdir}/temp/uwsgi;
    scgi_temp_path {workdir}/temp/scgi;
    include {site};
}}
"""


def nginx_binary() -> str:
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin") or "/usr/sbin/nginx"


def free_port() -> int:
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class NginxServer:
    def __init__(self, workdir: Path, site: str | Path, port: int, user: str = "root", prefix: list[str] | None = None):
        self.workdir = Path(workdir)
        self.site = str(site)
        self.port = port  # where the site listens on 127.0.0.1: the server is up once it answers there
        self.user = user  # the workers' user (the master runs as the test's)
        self.prefix = prefix or []
        self.process: subprocess.Popen | None = None

    @property
    def config_file(self) -> Path:
        return self.workdir / "nginx.conf"

    def start(self) -> NginxServer:
        (self.workdir / "temp").mkdir(parents=True, exist_ok=True)
        self.workdir.chmod(0o755)  # the workers (user) write their temp files here
        self.config_file.write_text(MAIN_CONFIG.format(workdir=self.workdir, user=self.user, site=self.site))
        argv = [*self.prefix, nginx_binary(), "-c", str(self.config_file), "-e", str(self.workdir / "error.log")]
        argv += ["-g", "daemon off; master_process on;"]
        log = open(self.workdir / "stderr.log", "wb")  # noqa: SIM115 (the server keeps it)
        with log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while not self._answering():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"nginx did not start: {self.errors()}")
            time.sleep(0.05)
        return self

    def _answering(self) -> bool:
        try:
            with closing(socket.create_connection(("127.0.0.1", self.port), timeout=1)):
                return True
        except OSError:
            return False

    def errors(self) -> str:
        texts = []
        for name in ("stderr.log", "error.log"):
            path = self.workdir / name
            if path.exists():
                texts.append(path.read_text(errors="replace")[-2000:])
        return "\n".join(texts)

    def stop(self) -> None:
        """TERM the master (it stops its workers), then KILL its process group if it lingers."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # a worker left behind
        self.process = None

    def __enter__(self) -> NginxServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
