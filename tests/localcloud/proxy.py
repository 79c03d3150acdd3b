"""A plain HTTP forward proxy on 127.0.0.1 that logs every request it forwards, in its own process.

    python -m tests.localcloud.proxy --port-file F --log F

Enough of a proxy for the tests: absolute-URI requests over plain HTTP (GET, HEAD, PUT, POST, DELETE
with a Content-Length body), responses streamed back. `--route HOST=127.0.0.1:PORT` sends requests for
HOST to that address instead (a public host, such as cloud-images.ubuntu.com, served locally). Each
request appends a JSON line to the log: {"method", "url", "status"}. `HttpProxy` starts and stops it by PID.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

CHUNK = 1 << 20
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
}


class ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self._forward()

    do_HEAD = do_PUT = do_POST = do_DELETE = do_GET  # noqa: N815 (BaseHTTPRequestHandler's names)

    def log_message(self, format, *args):
        pass

    def _forward(self):
        target = urlsplit(self.path)
        status = 502
        try:
            host, port = self.server.routes.get(target.hostname, (target.hostname, target.port or 80))
            upstream = http.client.HTTPConnection(host, port, timeout=300)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            path = target.path + (f"?{target.query}" if target.query else "")
            upstream.request(self.command, path or "/", body=body, headers=headers)
            response = upstream.getresponse()
            status = response.status
            self._relay(response)
        except OSError as error:
            self.send_error(502, f"proxy: {error}")
        finally:
            self.server.log(self.command, self.path, status)

    def _relay(self, response):
        self.send_response(response.status, response.reason)
        for key, value in response.getheaders():
            if key.lower() not in HOP_BY_HOP:
                self.send_header(key, value)
        chunked = response.getheader("Content-Length") is None and self.command != "HEAD"
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        while self.command != "HEAD":
            data = response.read(CHUNK)
            if not data:
                break
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")


class ProxyServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, log_path: Path, routes: dict[str, tuple[str, int]]):
        super().__init__(("127.0.0.1", port), ProxyHandler)
        self.log_path = log_path
        self.routes = routes
        self._lock = threading.Lock()

    def log(self, method: str, url: str, status: int) -> None:
        with self._lock, open(self.log_path, "a") as log:
            log.write(json.dumps({"method": method, "url": url, "status": status}) + "\n")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", type=Path, required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--route", action="append", default=[], metavar="HOST=ADDRESS:PORT")
    args = parser.parse_args(argv)
    routes = {}
    for route in args.route:
        host, _, address = route.partition("=")
        routes[host] = (address.rpartition(":")[0], int(address.rpartition(":")[2]))
    server = ProxyServer(args.port, args.log, routes)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    args.port_file.write_text(str(server.server_address[1]))
    server.serve_forever()


class HttpProxy:
    """Runs the proxy in a child process; `url`, `requests()`, `stop()` by PID. `routes` maps a host name
    to the local "127.0.0.1:PORT" that serves it."""

    def __init__(self, workdir: Path, routes: dict[str, str] | None = None):
        self.workdir = workdir
        self.routes = routes or {}
        self.port_file = workdir / "proxy.port"
        self.log_file = workdir / "proxy.jsonl"
        self.process: subprocess.Popen | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> HttpProxy:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port_file.unlink(missing_ok=True)
        self.log_file.write_text("")
        root = Path(__file__).resolve().parents[2]
        env = {**os.environ, "PYTHONPATH": str(root)}
        routes = [f"--route={host}={address}" for host, address in self.routes.items()]
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.localcloud.proxy",
                "--port-file",
                str(self.port_file),
                "--log",
                str(self.log_file),
                *routes,
            ],
            env=env,
        )
        deadline = time.monotonic() + 10
        while not self.port_file.exists() or not self.port_file.read_text():
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise RuntimeError("the test proxy did not start")
            time.sleep(0.05)
        self.port = int(self.port_file.read_text())
        return self

    def requests(self) -> list[dict]:
        return [json.loads(line) for line in self.log_file.read_text().splitlines() if line]

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> HttpProxy:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


if __name__ == "__main__":
    main()
