"""Run a Python program and write where its time went: its imports and every HTTP request it made.

    python -m bench.trace REPORT.json -m module args...     # as `python -m module args...`
    python -m bench.trace REPORT.json script args...        # as `python script args...` (a console script)

REPORT gets {"spawned", "started", "ended", "imports", "requests"} in seconds since the epoch:
`spawned` from $BENCH_SPAWNED (set by whoever started this process, just before), `started` once this
module runs, `imports` the time spent loading modules (outermost imports only, in any thread), and per
request {"thread", "method", "host", "path", "start", "end"}. Every HTTP client in Python (urllib,
requests/urllib3, keystoneauth, glanceclient) sends through http.client: requests are timed from
`putrequest()` (which every one of them calls) to the end of `getresponse()`. A request made over file:// is not seen.
"""

from __future__ import annotations

import http.client
import importlib._bootstrap as bootstrap
import json
import os
import runpy
import sys
import threading
import time

STARTED = time.time()
_local = threading.local()
_imports = [0.0]
_requests: list[dict] = []


def _timed_import(original):
    def find_and_load(name, import_):
        if getattr(_local, "depth", 0):
            return original(name, import_)
        _local.depth = 1
        started = time.perf_counter()
        try:
            return original(name, import_)
        finally:
            _imports[0] += time.perf_counter() - started
            _local.depth = 0

    return find_and_load


def _timed_requests() -> None:
    putrequest, getresponse = http.client.HTTPConnection.putrequest, http.client.HTTPConnection.getresponse

    def timed_putrequest(self, method, url, *args, **kwargs):
        self._bench_entry = {
            "thread": threading.current_thread().name,
            "method": method,
            "host": f"{self.host}:{self.port}",
            "path": url.split("?", 1)[0] if "://" not in url else url,
            "start": time.time(),
        }
        return putrequest(self, method, url, *args, **kwargs)

    def timed_getresponse(self):
        try:
            return getresponse(self)
        finally:
            entry = getattr(self, "_bench_entry", None)
            if entry is not None:
                entry["end"] = time.time()
                _requests.append(entry)
                self._bench_entry = None

    http.client.HTTPConnection.putrequest = timed_putrequest  # type: ignore[method-assign]
    http.client.HTTPConnection.getresponse = timed_getresponse  # type: ignore[method-assign]


def _report(path: str) -> None:
    with open(path, "w") as out:
        json.dump(
            {
                "spawned": float(os.environ.get("BENCH_SPAWNED", STARTED)),
                "started": STARTED,
                "ended": time.time(),
                "imports": _imports[0],
                "requests": sorted(_requests, key=lambda entry: entry["start"]),
            },
            out,
        )


def main() -> int:
    report, *argv = sys.argv[1:]
    bootstrap._find_and_load = _timed_import(bootstrap._find_and_load)  # type: ignore[attr-defined]
    _timed_requests()
    code = 0
    try:
        if argv[0] == "-m":
            sys.argv = [argv[1], *argv[2:]]
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        else:
            sys.argv = argv
            runpy.run_path(argv[0], run_name="__main__")
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    finally:
        _report(report)
    return code


if __name__ == "__main__":
    sys.exit(main())
