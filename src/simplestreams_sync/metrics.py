"""Prometheus text-format metrics of the last run, for node_exporter's textfile collector.

Written to `<state_dir>/glance_simplestreams_sync.prom` after every (non dry) run; point
node_exporter's `--collector.textfile.directory` at the state dir (or copy/symlink the file there).
"""

from __future__ import annotations

from pathlib import Path

from .state import SyncResult, parse_time, write_atomically

METRICS_FILE = "glance_simplestreams_sync.prom"


def render(result: SyncResult) -> str:
    metrics = [
        (
            "last_run_timestamp_seconds",
            "gauge",
            "When the last sync finished (Unix time).",
            _epoch_utc(result.finished),
        ),
        (
            "last_success_timestamp_seconds",
            "gauge",
            "When the last sync without any failure finished.",
            _epoch_utc(result.last_success),
        ),
        ("last_run_success", "gauge", "1 if the last sync had no failure, else 0.", 1 if result.ok else 0),
        ("last_run_duration_seconds", "gauge", "How long the last sync took.", result.duration_seconds),
        ("last_run_images_created", "gauge", "Images created by the last sync.", len(result.created)),
        ("last_run_images_deleted", "gauge", "Images deleted by the last sync.", len(result.deleted)),
        ("last_run_images_failed", "gauge", "Images that failed in the last sync.", len(result.failed)),
        ("last_run_errors", "gauge", "Mirror, cloud or publish errors in the last sync.", len(result.errors)),
        (
            "last_run_bytes_transferred",
            "gauge",
            "Image bytes uploaded to Glance by the last sync.",
            result.bytes_transferred,
        ),
        (
            "metadata_published",
            "gauge",
            "1 if the last sync published metadata to the object store.",
            1 if result.published else 0,
        ),
    ]
    lines = []
    for name, kind, help_text, value in metrics:
        full = f"glance_simplestreams_sync_{name}"
        lines += [f"# HELP {full} {help_text}", f"# TYPE {full} {kind}", f"{full} {value}"]
    return "\n".join(lines) + "\n"


def _epoch_utc(timestamp: str) -> int:
    if not timestamp:
        return 0
    return int(parse_time(timestamp).timestamp())


def write_metrics(state_dir: str | Path, result: SyncResult) -> None:
    write_atomically(Path(state_dir) / METRICS_FILE, render(result))
