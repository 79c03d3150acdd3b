"""The alert rules and the dashboard shipped for COS name only series the metrics server serves (or
Prometheus' own `up`), and the dashboard takes its data sources as variables."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from simplestreams_sync.metrics_server import exposition
from simplestreams_sync.state import ProgressFile, SyncResult, write_result

SRC = Path(__file__).resolve().parents[2] / "src"
RULES = SRC / "prometheus_alert_rules" / "glance_simplestreams_sync.rules"
DASHBOARD = SRC / "grafana_dashboards" / "glance-simplestreams-sync.json"
METRIC = re.compile(r"\bglance_simplestreams_sync_[a-z_]+\b")


def served_names(state_dir: Path) -> set[str]:
    """Every family the server serves: after a run, with a sync running."""
    write_result(state_dir, SyncResult(started="2026-11-20T10:00:00Z", finished="2026-11-20T10:01:00Z"), "daily")
    progress = ProgressFile(state_dir)
    try:
        return set(exposition(state_dir, "daily", standby=False).names)
    finally:
        progress.close()


def dashboard_queries(dashboard: dict) -> list[str]:
    queries = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    return queries + [variable["query"] for variable in dashboard["templating"]["list"] if variable["type"] == "query"]


def test_the_rules_name_only_served_series_and_up(tmp_path):
    exprs = [rule["expr"] for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]
    named = {name for expr in exprs for name in METRIC.findall(re.sub(r"\bup\{[^}]*\}", "up", expr))}

    assert named <= served_names(tmp_path)
    assert named == {
        "glance_simplestreams_sync_failures_in_a_row",
        "glance_simplestreams_sync_last_success_timestamp_seconds",
        "glance_simplestreams_sync_expected_period_seconds",
        "glance_simplestreams_sync_images",
        "glance_simplestreams_sync_running_since_timestamp_seconds",
    }
    assert [expr for expr in exprs if expr.startswith("up{")] == [
        'up{job=~".*glance_simplestreams_sync_exporter.*"} == 0'
    ]


def test_the_dashboard_loads_and_names_only_served_metrics(tmp_path):
    dashboard = json.loads(DASHBOARD.read_text())

    named = {name for query in dashboard_queries(dashboard) for name in METRIC.findall(query)}
    assert named <= served_names(tmp_path)
    assert named >= {
        "glance_simplestreams_sync_last_run_timestamp_seconds",
        "glance_simplestreams_sync_last_run_success",
        "glance_simplestreams_sync_last_run_duration_seconds",
        "glance_simplestreams_sync_images",
        "glance_simplestreams_sync_last_run_bytes_transferred",
        "glance_simplestreams_sync_failures_in_a_row",
        "glance_simplestreams_sync_next_try_timestamp_seconds",
        "glance_simplestreams_sync_sync_running",
    }


def test_the_dashboard_takes_prometheus_and_loki_as_variables():
    dashboard = json.loads(DASHBOARD.read_text())

    sources = {v["name"]: v["query"] for v in dashboard["templating"]["list"] if v["type"] == "datasource"}
    assert sources == {"prometheusds": "prometheus", "lokids": "loki"}
    for panel in dashboard["panels"]:
        expected = "${lokids}" if panel["type"] == "logs" else "${prometheusds}"
        assert panel["datasource"]["uid"] == expected
        assert {target["datasource"]["uid"] for target in panel["targets"]} == {expected}


def test_the_dashboard_shows_the_sync_log():
    dashboard = json.loads(DASHBOARD.read_text())

    logs = [panel for panel in dashboard["panels"] if panel["type"] == "logs"]
    assert [panel["targets"][0]["expr"].split(",")[0] for panel in logs] == [
        '{filename="/var/log/glance-simplestreams-sync.log"'
    ]
