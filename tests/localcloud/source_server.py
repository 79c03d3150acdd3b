"""Serve a simplestreams source tree over HTTP on 127.0.0.1, in its own process, with faults.

Run by SourceServer (below), or by hand:

    python -m tests.localcloud.source_server --root DIR --port 0 --port-file F --log F --faults F

Files are served with an ETag, Last-Modified and `Accept-Ranges: bytes`; a single `Range: bytes=N-` or
`bytes=N-M` is answered 206 (416 when N is past the end), unless an `If-Range` that is not the current
ETag or Last-Modified asks for the whole file (200). Any fault may say `"etag": false`: that file is
then served without an ETag, as some servers do.

Every request appends one JSON line to the log:
    {"method", "path", "user_agent", "status", "bytes_sent", "fault", "range", "if_range"}
The faults file (JSON, re-read whenever it changes) maps a URL path to one fault:
    {"kind": "truncate", "after": N}       full Content-Length, then close at file offset N
    {"kind": "drop", "at": [N, ...], "ranges": true, "new_etag_after_drop": false}
                                           close the connection once at each file offset N: the first
                                           response that would send byte N ends just before it. With
                                           "ranges": false, Range headers are ignored (always 200);
                                           with "new_etag_after_drop", each drop gives the file a new
                                           ETag and Last-Modified (as if it changed meanwhile)
    {"kind": "stall", "at": N, "seconds": S}
                                           once: send up to file offset N, then nothing for S seconds
                                           (or until the client gives up), then close
    {"kind": "short", "bytes": N}          honest Content-Length N, the first N bytes
    {"kind": "replace", "with": "<file>"}  serve that file's bytes instead
    {"kind": "slow", "bytes_per_second": N} serve the file at about that rate (to fault mid-transfer)
    {"kind": "hold", "after": N, "until": "<file>"}
                                           send N body bytes, then the rest once that file exists
                                           (a test decides when the transfer may end)
    {"kind": "status", "code": 503, "times": 2}
                                           answer `code` to the first `times` requests (every
                                           request if times is absent), then serve normally
Counters of status faults, and which drops and stalls happened, restart whenever the faults file
changes.
"""

from __future__ import annotations

import argparse
import contextlib
import email.utils
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SENDFILE_CHUNK = 16 << 20


# --- the server process ---------------------------------------------------------------------


class FaultTable:
    """The faults file, reloaded when its (inode, mtime, size) changes."""

    def __init__(self, path: Path | None):
        self.path = path
        self._stamp: tuple | None = None
        self._faults: dict[str, dict] = {}
        self._status_answered: dict[str, int] = {}
        self._offsets_done: dict[str, set[int]] = {}  # drop and stall offsets already applied
        self._generation: dict[str, int] = {}  # how often the file "changed" (new_etag_after_drop)
        self._lock = threading.Lock()

    def fault_for(self, url_path: str) -> dict | None:
        """The fault to apply to this request; counts it if it is a `status` fault."""
        with self._lock:
            self._reload_if_changed()
            fault = self._faults.get(url_path)
            if fault is None or fault["kind"] != "status":
                return fault
            answered = self._status_answered.get(url_path, 0)
            if fault.get("times") is not None and answered >= fault["times"]:
                return None
            self._status_answered[url_path] = answered + 1
            return fault

    def take_offset(self, url_path: str, fault: dict, start: int, end: int) -> int | None:
        """The first not yet applied drop or stall offset in [start, end), now marked applied."""
        offsets = fault["at"] if fault["kind"] == "drop" else [fault["at"]]
        with self._lock:
            done = self._offsets_done.setdefault(url_path, set())
            offset = min((o for o in offsets if start <= o < end and o not in done), default=None)
            if offset is not None:
                done.add(offset)
                if fault.get("new_etag_after_drop"):
                    self._generation[url_path] = self._generation.get(url_path, 0) + 1
            return offset

    def generation(self, url_path: str) -> int:
        with self._lock:
            return self._generation.get(url_path, 0)

    def _reload_if_changed(self) -> None:
        stamp = file_stamp(self.path) if self.path else None
        if stamp == self._stamp:
            return
        try:
            faults = json.loads(self.path.read_text()) if stamp else {}
        except (OSError, ValueError) as e:
            print(f"ignoring unreadable faults file {self.path}: {e}", file=sys.stderr)
            return
        self._stamp = stamp
        self._faults = {normalize_url_path(p): f for p, f in faults.items()}
        self._status_answered = {}
        self._offsets_done = {}
        self._generation = {}


def file_stamp(path: Path) -> tuple | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def normalize_url_path(path: str) -> str:
    return "/" + urllib.parse.unquote(urllib.parse.urlsplit(path).path).lstrip("/")


class RequestLog:
    def __init__(self, path: Path | None):
        self._file = open(path, "a", encoding="utf-8") if path else None  # noqa: SIM115 (open for the server's life)
        self._lock = threading.Lock()

    def append(self, entry: dict) -> None:
        if self._file is None:
            return
        with self._lock:
            self._file.write(json.dumps(entry) + "\n")
            self._file.flush()


@dataclass
class LogEntry:
    method: str
    path: str
    user_agent: str | None
    status: int = 0
    bytes_sent: int = 0
    fault: str | None = None
    range: str | None = None  # the Range header, if any
    if_range: str | None = None  # the If-Range header, if any


class SourceHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path, port: int, faults: FaultTable, log: RequestLog):
        self.root = root.resolve()
        self.faults = faults
        self.log = log
        super().__init__(("127.0.0.1", port), SourceRequestHandler)

    def file_for(self, url_path: str) -> Path | None:
        file = (self.root / url_path.lstrip("/")).resolve()
        if file.is_relative_to(self.root) and file.is_file():
            return file
        return None


class SourceRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "LocalSimplestreamsSource/1.0"
    timeout = 120  # idle keep-alive connections
    server: SourceHTTPServer

    def do_GET(self) -> None:
        self._serve(send_body=True)

    def do_HEAD(self) -> None:
        self._serve(send_body=False)

    def log_message(self, format: str, *args) -> None:
        pass  # requests go to the JSON log instead

    def _serve(self, send_body: bool) -> None:
        url_path = normalize_url_path(self.path)
        entry = LogEntry(
            self.command,
            url_path,
            self.headers.get("User-Agent"),
            range=self.headers.get("Range"),
            if_range=self.headers.get("If-Range"),
        )
        try:
            fault = self.server.faults.fault_for(url_path)
            entry.fault = fault["kind"] if fault else None
            self._respond(url_path, fault, send_body, entry)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            self.server.log.append(asdict(entry))

    def _respond(self, url_path: str, fault: dict | None, send_body: bool, entry: LogEntry):
        kind = fault["kind"] if fault else None
        if kind == "status":
            return self._send_message(fault["code"], f"fault: status {fault['code']}", entry)
        file = Path(fault["with"]) if kind == "replace" else self.server.file_for(url_path)
        if file is None:
            return self._send_message(404, "not found", entry)
        size = file.stat().st_size
        etag, last_modified = self._validators(file, url_path)
        ranges_honoured = not (kind == "drop" and fault.get("ranges") is False)
        ranged = ranges_honoured and self._range_applies(etag, last_modified)
        start, end = self._requested_range(size) if ranged else (0, size)
        if start >= size and size > 0:
            return self._send_message(
                416, f"range not satisfiable: {self.headers.get('Range')}", entry, {"Content-Range": f"bytes */{size}"}
            )
        if kind == "short":
            start, end = 0, min(fault["bytes"], size)
        body_end = max(start, min(fault["after"], end)) if kind == "truncate" else end
        if kind in ("drop", "stall") and send_body:
            cut = self.server.faults.take_offset(url_path, fault, start, end)
            body_end = cut if cut is not None else end
        entry.status = 206 if ranged and kind != "short" else 200
        self.send_response(entry.status)
        self.send_header("Content-Type", content_type(file))
        self.send_header("Content-Length", str(end - start))
        if not (fault and fault.get("etag") is False):
            self.send_header("ETag", etag)
        self.send_header("Last-Modified", last_modified)
        if ranges_honoured:  # a server that ignores ranges usually just says nothing about them
            self.send_header("Accept-Ranges", "bytes")
        if entry.status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        self.end_headers()
        if send_body:
            with open(file, "rb") as f:
                if kind == "slow":
                    self._send_file_slowly(f, start, body_end, fault["bytes_per_second"], entry)
                elif kind == "hold":
                    self._send_file(f, start, max(start, min(fault["after"], body_end)), entry)
                    self._wait_for(Path(fault["until"]))
                    self._send_file(f, start, body_end, entry)
                else:
                    self._send_file(f, start, body_end, entry)
            if kind == "stall" and body_end < end:
                self._stall(fault["seconds"])
        if body_end < end:
            self.close_connection = True  # the client sees EOF before Content-Length

    def _validators(self, file: Path, url_path: str) -> tuple[str, str]:
        """ETag and Last-Modified of the file; both change with each simulated change of the file."""
        stat = file.stat()
        generation = self.server.faults.generation(url_path)
        etag = f'"{stat.st_size:x}-{stat.st_mtime_ns:x}-{generation}"'
        return etag, email.utils.formatdate(stat.st_mtime + generation, usegmt=True)

    def _range_applies(self, etag: str, last_modified: str) -> bool:
        """A single byte range was asked for, and If-Range (if any) names the current file."""
        header = self.headers.get("Range", "")
        if_range = self.headers.get("If-Range")
        return re.fullmatch(r"bytes=\d+-\d*", header) is not None and (
            if_range is None or if_range in (etag, last_modified)
        )

    def _requested_range(self, size: int) -> tuple[int, int]:
        """[start, end) of the file that the Range header asks for."""
        first, _, last = self.headers["Range"][len("bytes=") :].partition("-")
        return int(first), min(int(last) + 1, size) if last else size

    def _stall(self, seconds: float) -> None:
        """Send nothing for `seconds`, or until the client closes its side."""
        self.connection.settimeout(seconds)
        with contextlib.suppress(TimeoutError, OSError):
            self.connection.recv(1)

    def _send_file(self, f, start: int, end: int, entry: LogEntry) -> None:
        while start + entry.bytes_sent < end:
            chunk = min(SENDFILE_CHUNK, end - start - entry.bytes_sent)
            sent = self.connection.sendfile(f, start + entry.bytes_sent, chunk)
            if sent == 0:
                break
            entry.bytes_sent += sent

    def _send_file_slowly(self, f, start: int, end: int, bytes_per_second: int, entry: LogEntry) -> None:
        piece = max(1, bytes_per_second // 10)
        while start + entry.bytes_sent < end:
            sent = self.connection.sendfile(f, start + entry.bytes_sent, min(piece, end - start - entry.bytes_sent))
            if sent == 0:
                break
            entry.bytes_sent += sent
            time.sleep(0.1)

    @staticmethod
    def _wait_for(path: Path) -> None:
        while not path.exists():
            time.sleep(0.05)

    def _send_message(self, status: int, text: str, entry: LogEntry, headers: dict | None = None) -> None:
        body = (text + "\n").encode()
        entry.status = status
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
            entry.bytes_sent = len(body)


def content_type(file: Path) -> str:
    return "application/json" if file.suffix == ".json" else "application/octet-stream"


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", type=Path)
    parser.add_argument("--log", type=Path)
    parser.add_argument("--faults", type=Path)
    args = parser.parse_args(argv)

    server = SourceHTTPServer(args.root, args.port, FaultTable(args.faults), RequestLog(args.log))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    port = server.server_address[1]
    if args.port_file:
        write_atomically(args.port_file, f"{port}\n")
    try:
        server.serve_forever()
    finally:
        server.server_close()


# --- the wrapper used by tests and benchmarks -----------------------------------------------


class SourceServer:
    """Runs `python -m tests.localcloud.source_server` as a child process.

    Files in workdir: port, requests.jsonl (the request log), faults.json, server.stderr.
    """

    def __init__(self, root: Path, workdir: Path, port: int = 0):
        self.root = Path(root)
        self.workdir = Path(workdir)
        self.requested_port = port
        self.port_file = self.workdir / "port"
        self.log_file = self.workdir / "requests.jsonl"
        self.faults_file = self.workdir / "faults.json"
        self.stderr_file = self.workdir / "server.stderr"
        self.process: subprocess.Popen | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("SourceServer is not started")
        return f"http://127.0.0.1:{self.port}/"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self, timeout: float = 10.0) -> SourceServer:
        """Spawn the server (with a fresh request log) and wait until it listens."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port_file.unlink(missing_ok=True)
        self.log_file.write_text("")
        with open(self.stderr_file, "wb") as stderr:
            self.process = subprocess.Popen(
                self._command(),
                cwd=REPO_ROOT,
                env=self._environment(),
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
            )
        self.port = self._wait_for_port(timeout)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM by PID, then SIGKILL if it has not exited within timeout. Idempotent."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        self.port = None

    def requests(self) -> list[dict]:
        """The requests logged so far. A request is logged just after its response was sent,
        so a client may get its response a moment before the entry appears: see
        wait_for_requests."""
        if not self.log_file.exists():
            return []
        lines = self.log_file.read_text().splitlines()
        entries = []
        for line in lines:
            with contextlib.suppress(ValueError):  # a line being written right now
                entries.append(json.loads(line))
        return entries

    def wait_for_requests(self, count: int, timeout: float = 5.0, path: str | None = None) -> list[dict]:
        """The log (only the entries of `path`, if given) once it holds at least count entries (raises
        TimeoutError otherwise)."""
        deadline = time.monotonic() + timeout
        while len(entries := [e for e in self.requests() if path is None or e["path"] == path]) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(entries)} requests logged, expected {count}")
            time.sleep(0.01)
        return entries

    def clear_requests(self) -> None:
        self.log_file.write_text("")  # the server appends (O_APPEND), so truncating is safe

    def set_faults(self, faults: dict[str, dict]) -> None:
        """Replace all faults; also restarts the counts of `status` faults."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        write_atomically(self.faults_file, json.dumps(faults))

    def clear_faults(self) -> None:
        self.set_faults({})

    def __enter__(self) -> SourceServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "tests.localcloud.source_server",
            "--root",
            str(self.root.resolve()),
            "--port",
            str(self.requested_port),
            "--port-file",
            str(self.port_file),
            "--log",
            str(self.log_file),
            "--faults",
            str(self.faults_file),
        ]

    def _environment(self) -> dict[str, str]:
        python_path = [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
        return {**os.environ, "PYTHONPATH": os.pathsep.join(python_path)}

    def _wait_for_port(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while not self.port_file.exists():
            if self.process.poll() is not None:
                raise RuntimeError(f"source server exited: {self.stderr_file.read_text()}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"source server did not start within {timeout}s")
            time.sleep(0.02)
        return int(self.port_file.read_text())


if __name__ == "__main__":
    main()
