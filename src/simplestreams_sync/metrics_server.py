"""The sync's Prometheus metrics over HTTP, for the COS agent (or any Prometheus) to scrape.

`python -m simplestreams_sync.metrics_server --state-dir DIR --port PORT [--frequency F] [--standby]`
serves `GET /metrics` on 127.0.0.1: the agent that scrapes it runs on the same machine. Every scrape
reads `last-sync.json` and `progress.json` afresh (state.py), so the numbers are the sync's own and
the server keeps nothing between scrapes; it reads no config file and holds no secret. A unit that
does not sync (`--standby`) says so and serves no sync figures. Standard library only.
"""

from __future__ import annotations

import argparse
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from .retry import PERIODS, parse_time
from .state import DEFAULT_STATE_DIR, Progress, SyncResult, read_progress, read_result

PREFIX = "glance_simplestreams_sync_"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DEFAULT_PORT = 9731
LISTEN_ADDRESS = "127.0.0.1"
IMAGE_STATES = ("active", "kept", "needs_decision")


class Exposition:
    """Metric families in Prometheus' text format, each with its HELP and TYPE lines."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.names: list[str] = []

    def gauge(self, name: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        """`samples`: (label set, e.g. '{state="kept"}' or '', value)."""
        full = PREFIX + name
        self.names.append(full)
        self.lines += [f"# HELP {full} {help_text}", f"# TYPE {full} gauge"]
        self.lines += [f"{full}{labels} {_number(value)}" for labels, value in samples]

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def exposition(state_dir: str | Path, frequency: str | None, standby: bool) -> Exposition:
    """What a scrape answers: the state the sync left in `state_dir`, as of now."""
    metrics = Exposition()
    metrics.gauge("standby", "1 on a unit that does not sync (not the leader), else 0.", [("", standby)])
    if standby:
        return metrics
    if frequency is not None:
        period = PERIODS[frequency].total_seconds()
        metrics.gauge("expected_period_seconds", "Seconds between scheduled syncs (option frequency).", [("", period)])
    _running(metrics, read_progress(state_dir))
    result = read_result(state_dir)
    if result is not None and not result.dry_run:
        _last_run(metrics, result)
    return metrics


def _running(metrics: Exposition, progress: Progress | None) -> None:
    metrics.gauge("sync_running", "1 while a sync runs, else 0.", [("", progress is not None)])
    if progress is not None and progress.started:
        started = _epoch(progress.started)
        metrics.gauge("running_since_timestamp_seconds", "When the running sync started (Unix time).", [("", started)])


def _last_run(metrics: Exposition, result: SyncResult) -> None:
    gauges: list[tuple[str, str, float]] = [
        ("last_run_timestamp_seconds", "When the last sync finished (Unix time).", _epoch(result.finished)),
        ("last_run_success", "1 if the last sync had no failure, else 0.", result.ok),
        ("last_run_duration_seconds", "How long the last sync took.", result.duration_seconds),
        ("last_run_quick_check", "1 if the last sync ended at the quick check (nothing changed).", result.quick_check),
        ("last_run_bytes_transferred", "Image bytes the last sync uploaded to Glance.", result.bytes_transferred),
        ("last_run_images_created", "Images the last sync created.", len(result.created)),
        ("last_run_images_deleted", "Images the last sync deleted.", len(result.deleted)),
        ("last_run_images_failed", "Images that failed in the last sync.", len(result.failed)),
        ("last_run_errors", "Mirror, cloud or publish errors of the last sync.", len(result.errors)),
        ("failures_in_a_row", "Failed syncs since the last success, the last one included.", result.failures_in_a_row),
        (
            "next_try_timestamp_seconds",
            "When the retry of a failed sync is due (Unix time; 0: none).",
            _epoch(result.next_try),
        ),
    ]
    for name, help_text, value in gauges:
        metrics.gauge(name, help_text, [("", value)])
    if result.last_success:
        metrics.gauge(
            "last_success_timestamp_seconds",
            "When the last sync without any failure finished (Unix time).",
            [("", _epoch(result.last_success))],
        )
    counts = {"active": result.images_active, "kept": len(result.kept), "needs_decision": len(result.needs_decision)}
    samples: list[tuple[str, float]] = [(f'{{state="{state}"}}', counts[state]) for state in IMAGE_STATES]
    metrics.gauge("images", "Our images in Glance by state, as the last sync left them.", samples)


def _epoch(timestamp: str) -> float:
    return parse_time(timestamp).timestamp() if timestamp else 0


def _number(value: float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return repr(float(value)) if isinstance(value, float) and not value.is_integer() else str(int(value))


def handler_for(state_dir: str, frequency: str | None, standby: bool) -> type[BaseHTTPRequestHandler]:
    class MetricsHandler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] != "/metrics":
                self.send_error(404, "only /metrics is served")
                return
            body = exposition(state_dir, frequency, standby).text().encode()
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # a scrape every few seconds would flood the journal

    return MetricsHandler


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="simplestreams_sync.metrics_server", description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", default=DEFAULT_STATE_DIR, help="where the sync writes its state")
    parser.add_argument("--address", default=LISTEN_ADDRESS, help="the address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="the port to listen on (default: %(default)s)")
    parser.add_argument("--frequency", choices=sorted(PERIODS), help="the schedule's (none: no scheduled syncs)")
    parser.add_argument("--standby", action="store_true", help="this unit does not sync")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        server = ThreadingHTTPServer(
            (args.address, args.port), handler_for(args.state_dir, args.frequency, args.standby)
        )
    except OSError as error:
        print(f"error: cannot listen on {args.address}:{args.port}: {error}", file=sys.stderr)
        return 1
    print(f"serving metrics at http://{args.address}:{server.server_address[1]}/metrics", flush=True)
    with server:
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
