"""A plain HTTP forward proxy on 127.0.0.1 that logs every request it forwards, in its own process.

    python -m tests.localcloud.proxy --port-file F --log F

Enough of a proxy for the tests: absolute-URI requests over plain HTTP (GET, HEAD, PUT, POST, PATCH,
DELETE with a Content-Length or chunked body), responses streamed back. `--route HOST=127.0.0.1:PORT`
sends requests for HOST to that address instead (a public host, such as cloud-images.ubuntu.com, served
locally). With `--upstream 127.0.0.1:PORT` it is also a reverse proxy: requests for a path go there (put
its URL in Keystone's catalog in place of a service's). `--reset "METHOD[ PATH*]=N"` drops the connection
of the first N requests with that method (and a path that starts so), once their body is read, without
forwarding them (a reset, as from a restarting server or a broken network): a fault the test controls.
`--reset-after "METHOD[ PATH]=N"` forwards the first N such requests (with that path, when one is given)
and resets the connection once the upstream has answered, before the answer reaches the client: a change
applied whose answer is lost. `--garbage METHOD=N` answers the first N requests with that method `200 OK`
and a body that is no JSON (a load balancer's error page), unforwarded. Each request appends a JSON line
to the log: {"method", "url", "status"} (status "reset" for a dropped one, "reset after 200" for one whose
answer was dropped, "garbage" for one answered so). `HttpProxy` starts and stops it by PID.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

CHUNK = 1 << 20
GARBAGE = b"<html><body>502 Bad Gateway, served as 200</body></html>"
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

    do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = do_GET  # noqa: N815 (BaseHTTPRequestHandler's names)

    def log_message(self, format, *args):
        pass

    def _forward(self):
        target = urlsplit(self.path)
        status: int | str = 502
        try:
            if self.server.take_reset(self.command, target.path):
                status = "reset"
                self._drop_connection()
                return
            if self.server.take_garbage(self.command):
                status = "garbage"
                self._answer_garbage()
                return
            if target.hostname is None and self.server.upstream is not None:
                host, port = self.server.upstream
            else:
                host, port = self.server.routes.get(target.hostname, (target.hostname, target.port or 80))
            upstream = http.client.HTTPConnection(host, port, timeout=300)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            path = target.path + (f"?{target.query}" if target.query else "")
            self._send_request(upstream, path or "/", headers)
            response = upstream.getresponse()
            status = response.status
            if self.server.take_reset_after(self.command, target.path):
                response.read()
                status = f"reset after {status}"
                self._reset()
                return
            self._relay(response)
        except OSError as error:
            self.send_error(502, f"proxy: {error}")
        finally:
            self.server.log(self.command, self.path, status)

    def _chunked(self) -> bool:
        return self.headers.get("Transfer-Encoding", "").lower() == "chunked"

    def _send_request(self, upstream: http.client.HTTPConnection, path: str, headers: dict) -> None:
        if not self._chunked():
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            upstream.request(self.command, path, body=body, headers=headers)
            return
        upstream.putrequest(self.command, path, skip_host="host" in {k.lower() for k in headers},
                            skip_accept_encoding=True)  # fmt: skip
        for key, value in {**headers, "Transfer-Encoding": "chunked"}.items():
            upstream.putheader(key, value)
        upstream.endheaders()
        for chunk in self._body_chunks():
            upstream.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        upstream.send(b"0\r\n\r\n")

    def _body_chunks(self):
        """The request's chunked body, chunk by chunk (trailers skipped)."""
        while True:
            size = int(self.rfile.readline().split(b";")[0], 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return
            chunk = self.rfile.read(size)
            self.rfile.readline()
            yield chunk

    def _skip_body(self) -> None:
        if self._chunked():
            for _ in self._body_chunks():
                pass
        elif length := int(self.headers.get("Content-Length") or 0):
            self.rfile.read(length)

    def _answer_garbage(self) -> None:
        """Read the request's body, then answer 200 with a page that is no JSON."""
        self._skip_body()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(GARBAGE)))
        self.end_headers()
        self.wfile.write(GARBAGE)

    def _drop_connection(self) -> None:
        """Read the request's body, then close with a reset (SO_LINGER 0): no answer ever comes."""
        self._skip_body()
        self._reset()

    def _reset(self) -> None:
        """Close the client's connection with a reset (SO_LINGER 0)."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()

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

    def __init__(
        self,
        port: int,
        log_path: Path,
        routes: dict[str, tuple[str, int]],
        upstream: tuple[str, int] | None = None,
        resets: dict[str, int] | None = None,
        resets_after: dict[str, int] | None = None,
        garbage: dict[str, int] | None = None,
    ):
        super().__init__(("127.0.0.1", port), ProxyHandler)
        self.log_path = log_path
        self.routes = routes
        self.upstream = upstream
        self.resets = dict(resets or {})  # "METHOD" or "METHOD PATH-PREFIX*": how many requests still to drop
        self.resets_after = dict(resets_after or {})  # "METHOD" or "METHOD PATH": answers still to drop
        self.garbage = dict(garbage or {})  # method: how many of its requests still to answer with garbage
        self._lock = threading.Lock()

    def take_reset(self, method: str, path: str) -> bool:
        """True if this request is to be dropped (one fewer left to drop)."""
        with self._lock:
            for key in [method, *(key for key in self.resets if _matches(key, method, path))]:
                if self.resets.get(key, 0) > 0:
                    self.resets[key] -= 1
                    return True
            return False

    def take_reset_after(self, method: str, path: str) -> bool:
        """True if this request's answer is to be dropped (one fewer left to drop)."""
        with self._lock:
            for key in (f"{method} {path}", method):
                if self.resets_after.get(key, 0) > 0:
                    self.resets_after[key] -= 1
                    return True
            return False

    def take_garbage(self, method: str) -> bool:
        """True if this request is to be answered with garbage (one fewer left)."""
        with self._lock:
            if self.garbage.get(method, 0) > 0:
                self.garbage[method] -= 1
                return True
            return False

    def log(self, method: str, url: str, status: int | str) -> None:
        with self._lock, open(self.log_path, "a") as log:
            log.write(json.dumps({"method": method, "url": url, "status": status}) + "\n")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", type=Path, required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--route", action="append", default=[], metavar="HOST=ADDRESS:PORT")
    parser.add_argument("--upstream", metavar="ADDRESS:PORT", help="where requests for a path (not a URL) go")
    parser.add_argument("--reset", action="append", default=[], metavar="METHOD[ PATH*]=COUNT")
    parser.add_argument("--reset-after", action="append", default=[], metavar="METHOD[ PATH]=COUNT")
    parser.add_argument("--garbage", action="append", default=[], metavar="METHOD=COUNT")
    args = parser.parse_args(argv)
    routes = {}
    for route in args.route:
        host, _, address = route.partition("=")
        routes[host] = _address(address)
    resets = {key: int(count) for key, _, count in (reset.rpartition("=") for reset in args.reset)}
    resets_after = {key: int(count) for key, _, count in (reset.rpartition("=") for reset in args.reset_after)}
    garbage = {method: int(count) for method, _, count in (option.partition("=") for option in args.garbage)}
    upstream = _address(args.upstream) if args.upstream else None
    server = ProxyServer(args.port, args.log, routes, upstream, resets, resets_after, garbage)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    args.port_file.write_text(str(server.server_address[1]))
    server.serve_forever()


def _matches(key: str, method: str, path: str) -> bool:
    """Whether a reset's key "METHOD PATH-PREFIX*" names this request."""
    key_method, _, prefix = key.partition(" ")
    return key_method == method and prefix.endswith("*") and path.startswith(prefix[:-1])


def _address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


class HttpProxy:
    """Runs the proxy in a child process; `url`, `requests()`, `stop()` by PID. `routes` maps a host name
    to the local "127.0.0.1:PORT" that serves it; `upstream` ("127.0.0.1:PORT") makes it a reverse proxy
    too; `resets` ({"DELETE": 1}, {"GET /v2/images/*": 1}) drops the first requests of those methods (and
    paths); `resets_after` ({"PATCH /v2/images/ID": 1}) forwards such requests and drops their answers;
    `garbage` ({"GET": 1}) answers the first requests of those methods with a 200 that is no JSON."""

    def __init__(
        self,
        workdir: Path,
        routes: dict[str, str] | None = None,
        upstream: str | None = None,
        resets: dict[str, int] | None = None,
        resets_after: dict[str, int] | None = None,
        garbage: dict[str, int] | None = None,
    ):
        self.workdir = workdir
        self.routes = routes or {}
        self.upstream = upstream
        self.resets = resets or {}
        self.resets_after = resets_after or {}
        self.garbage = garbage or {}
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
        options = [f"--route={host}={address}" for host, address in self.routes.items()]
        options += [f"--upstream={self.upstream}"] if self.upstream else []
        options += [f"--reset={method}={count}" for method, count in self.resets.items()]
        options += [f"--reset-after={key}={count}" for key, count in self.resets_after.items()]
        options += [f"--garbage={method}={count}" for method, count in self.garbage.items()]
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.localcloud.proxy",
                "--port-file",
                str(self.port_file),
                "--log",
                str(self.log_file),
                *options,
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
