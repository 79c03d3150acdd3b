"""COS against Debian's Prometheus: promtool checks the shipped alert rules and proves when each alert
fires and when it stays quiet; a real Prometheus scrapes the unit's metrics server with exactly the
scrape job the charm publishes on cos-agent, and evaluates the rules as the charm sends them."""

from __future__ import annotations

import json
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from ops import testing

from simplestreams_sync.state import SyncResult, write_result
from tests.charm.conftest import machine, shared_dir  # noqa: F401 (the charm tests' fake machine)
from tests.localcloud.prometheus import Prometheus, binary
from tests.localcloud.web_server import free_port

pytestmark = pytest.mark.functional

SRC = Path(__file__).resolve().parents[2] / "src"
RULES = SRC / "prometheus_alert_rules" / "glance_simplestreams_sync.rules"
JOB = "glance-simplestreams-sync_0_glance_simplestreams_sync_exporter"
UNIT = {"juju_unit": "glance-simplestreams-sync/0", "instance": "127.0.0.1:9731", "job": JOB}
# the state below: three failures in a row, the last success days ago (daily schedule)
EXPECTED_FIRING = {"GlanceSimplestreamsSyncKeepsFailing", "GlanceSimplestreamsSyncNoRecentSuccess"}


def tool(name: str) -> str:
    path = binary(name)
    if path is None:
        pytest.skip(f"{name} is not installed (scripts/bootstrap installs Debian's prometheus)")
    return path


def annotations(alert: str, value: str, labels: dict[str, str]) -> dict[str, str]:
    """The alert's annotations as Prometheus renders them, for the few template forms the rules use."""
    rules = [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]
    rule = next(rule for rule in rules if rule["alert"] == alert)
    rendered = {}
    for key, text in rule["annotations"].items():
        for name, label in labels.items():
            text = text.replace(f"{{{{ $labels.{name} }}}}", label)
        text = text.replace("{{ $value | humanizeDuration }}", value).replace("{{ $value }}", value)
        assert "{{" not in text, text
        rendered[key] = text
    return rendered


def series(name: str, values: str, **labels: str) -> dict:
    label_text = ",".join(f'{key}="{value}"' for key, value in {**UNIT, **labels}.items())
    return {"series": f"glance_simplestreams_sync_{name}{{{label_text}}}", "values": values}


def fired(alert: str, severity: str, value: str, shown: str | None = None, **labels: str) -> dict:
    every = {**UNIT, **labels}
    return {
        "exp_labels": {**every, "severity": severity},
        "exp_annotations": annotations(alert, shown or value, every),
    }


def promtool_test(tmp_path: Path, tests: list[dict]) -> subprocess.CompletedProcess:
    test_file = tmp_path / "rules-test.yaml"
    test_file.write_text(yaml.safe_dump({"rule_files": [str(RULES)], "evaluation_interval": "1m", "tests": tests}))
    return subprocess.run([tool("promtool"), "test", "rules", str(test_file)], capture_output=True, text=True)


def test_promtool_checks_the_shipped_rules():
    check = subprocess.run([tool("promtool"), "check", "rules", str(RULES)], capture_output=True, text=True)

    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS: 5 rules found" in check.stdout


def test_promtool_checks_the_rules_as_the_charm_sends_them(tmp_path, unit_data):
    sent = tmp_path / "sent.rules"
    sent.write_text(yaml.safe_dump(unit_data["metrics_alert_rules"]))

    check = subprocess.run([tool("promtool"), "check", "rules", str(sent)], capture_output=True, text=True)

    assert check.returncode == 0, check.stdout + check.stderr


def test_failing_retries_alert_from_the_third_failure_in_a_row(tmp_path):
    alert = "GlanceSimplestreamsSyncKeepsFailing"
    run = promtool_test(
        tmp_path,
        [
            {
                "interval": "1m",
                "input_series": [series("failures_in_a_row", "0 1 2 3")],
                "alert_rule_test": [
                    {"eval_time": "2m", "alertname": alert, "exp_alerts": []},
                    {"eval_time": "3m", "alertname": alert, "exp_alerts": [fired(alert, "critical", "3")]},
                ],
            }
        ],
    )

    assert run.returncode == 0, run.stdout + run.stderr


def test_no_success_alerts_after_two_periods_of_the_schedule(tmp_path):
    alert = "GlanceSimplestreamsSyncNoRecentSuccess"
    run = promtool_test(
        tmp_path,
        [
            {
                "interval": "1m",
                "input_series": [
                    series("last_success_timestamp_seconds", "0x130"),  # the last success: at time 0
                    series("expected_period_seconds", "3600x130"),  # hourly
                ],
                "alert_rule_test": [
                    {"eval_time": "120m", "alertname": alert, "exp_alerts": []},
                    {
                        "eval_time": "121m",
                        "alertname": alert,
                        "exp_alerts": [fired(alert, "critical", "7260", shown="2h 1m 0s")],
                    },
                ],
            }
        ],
    )

    assert run.returncode == 0, run.stdout + run.stderr


def test_no_success_stays_quiet_without_a_schedule(tmp_path):
    alert = "GlanceSimplestreamsSyncNoRecentSuccess"
    run = promtool_test(
        tmp_path,
        [
            {
                "interval": "1m",
                "input_series": [series("last_success_timestamp_seconds", "0x300")],
                "alert_rule_test": [{"eval_time": "300m", "alertname": alert, "exp_alerts": []}],
            }
        ],
    )

    assert run.returncode == 0, run.stdout + run.stderr


def test_images_needing_a_decision_alert_after_fifteen_minutes(tmp_path):
    alert = "GlanceSimplestreamsSyncImagesNeedDecision"
    run = promtool_test(
        tmp_path,
        [
            {
                "interval": "1m",
                "input_series": [
                    series("images", "0 2x30", state="needs_decision"),
                    series("images", "5x30", state="kept"),
                ],
                "alert_rule_test": [
                    {"eval_time": "15m", "alertname": alert, "exp_alerts": []},
                    {
                        "eval_time": "16m",
                        "alertname": alert,
                        "exp_alerts": [fired(alert, "warning", "2", state="needs_decision")],
                    },
                ],
            }
        ],
    )

    assert run.returncode == 0, run.stdout + run.stderr


def test_a_sync_running_past_its_period_alerts(tmp_path):
    alert = "GlanceSimplestreamsSyncRunningTooLong"
    run = promtool_test(
        tmp_path,
        [
            {
                "interval": "1m",
                "input_series": [
                    series("running_since_timestamp_seconds", "0x70"),
                    series("expected_period_seconds", "3600x70"),
                ],
                "alert_rule_test": [
                    {"eval_time": "60m", "alertname": alert, "exp_alerts": []},
                    {
                        "eval_time": "61m",
                        "alertname": alert,
                        "exp_alerts": [fired(alert, "warning", "3660", shown="1h 1m 0s")],
                    },
                ],
            }
        ],
    )

    assert run.returncode == 0, run.stdout + run.stderr


def test_the_endpoint_down_alerts_for_our_job_only(tmp_path):
    alert = "GlanceSimplestreamsSyncMetricsDown"
    down = {**UNIT}
    run = promtool_test(
        tmp_path,
        [
            {
                "interval": "1m",
                "input_series": [
                    {"series": "up{" + ",".join(f'{k}="{v}"' for k, v in down.items()) + "}", "values": "1 0x10"},
                    {"series": 'up{job="node",instance="127.0.0.1:9100"}', "values": "0x10"},
                ],
                "alert_rule_test": [
                    {"eval_time": "5m", "alertname": alert, "exp_alerts": []},
                    {
                        "eval_time": "6m",
                        "alertname": alert,
                        "exp_alerts": [
                            {
                                "exp_labels": {**down, "severity": "warning"},
                                "exp_annotations": annotations(alert, "0", down),
                            }
                        ],
                    },
                ],
            }
        ],
    )

    assert run.returncode == 0, run.stdout + run.stderr


def test_a_healthy_sync_raises_no_alert(tmp_path):
    run = promtool_test(
        tmp_path,
        [
            {
                "interval": "1m",
                "input_series": [
                    series("failures_in_a_row", "0x200"),
                    series("last_success_timestamp_seconds", "0+60x200"),  # a success every minute
                    series("expected_period_seconds", "3600x200"),
                    series("images", "0x200", state="needs_decision"),
                    series("images", "6x200", state="active"),
                    {"series": "up{" + ",".join(f'{k}="{v}"' for k, v in UNIT.items()) + "}", "values": "1x200"},
                ],
                "alert_rule_test": [
                    {"eval_time": "200m", "alertname": name, "exp_alerts": []}
                    for name in (
                        "GlanceSimplestreamsSyncKeepsFailing",
                        "GlanceSimplestreamsSyncNoRecentSuccess",
                        "GlanceSimplestreamsSyncImagesNeedDecision",
                        "GlanceSimplestreamsSyncRunningTooLong",
                        "GlanceSimplestreamsSyncMetricsDown",
                    )
                ],
            }
        ],
    )

    assert run.returncode == 0, run.stdout + run.stderr


# --- a real Prometheus scraping the unit ---------------------------------------------------------


@pytest.fixture
def metrics_port() -> int:
    return free_port()


@pytest.fixture
def unit_data(metrics_port, monkeypatch) -> dict:
    """The `config` our unit sends on cos-agent, as the charm writes it (port: metrics_port), on the
    charm tests' fake machine, an autouse fixture here (nothing written outside the test's tmp dir)."""
    from charm import GlanceSimplestreamsSyncCharm
    from sync_charm import metrics_service

    monkeypatch.setattr(metrics_service, "SYSTEMCTL", ["true"])
    agent = testing.Relation("cos-agent", remote_app_name="grafana-agent")
    ctx = testing.Context(GlanceSimplestreamsSyncCharm)
    state = testing.State(leader=True, config={"metrics_port": metrics_port}, relations=[agent])
    out = ctx.run(ctx.on.relation_joined(agent), state)
    return json.loads(out.get_relation(agent.id).local_unit_data["config"])


@contextmanager
def running(argv: list[str], **popen_args):
    process = subprocess.Popen(argv, **popen_args)
    try:
        yield process
    finally:
        process.kill()
        process.wait()


def test_prometheus_scrapes_the_unit_with_the_published_job_and_evaluates_the_sent_rules(
    tmp_path, unit_data, metrics_port
):
    state_dir = tmp_path / "state"
    write_result(state_dir, SyncResult(started="2026-11-20T10:00:00Z", finished="2026-11-20T10:01:00Z"), "daily")
    for day in (21, 22, 23):  # the sync and two retries fail
        failed = SyncResult(started=f"2026-11-{day}T10:00:00Z", finished=f"2026-11-{day}T10:01:00Z", errors=["down"])
        write_result(state_dir, failed, "daily")
    rules = tmp_path / "sent.rules"
    rules.write_text(yaml.safe_dump(unit_data["metrics_alert_rules"]))
    tool("prometheus")
    server = [sys.executable, "-m", "simplestreams_sync.metrics_server", "--state-dir", str(state_dir)]
    server += ["--port", str(metrics_port), "--frequency", "daily"]
    with Prometheus(tmp_path / "prometheus", unit_data["metrics_scrape_jobs"], [rules]) as prometheus:
        with running(server, env={"PYTHONPATH": str(SRC)}, stdout=subprocess.DEVNULL):
            targets = prometheus.until(prometheus.up_targets, "the target up")
            failures = prometheus.until(
                lambda: prometheus.query("glance_simplestreams_sync_failures_in_a_row"), "the failures in a row"
            )
            firing = prometheus.until(
                lambda: prometheus.firing() >= EXPECTED_FIRING and prometheus.firing(), "the alerts"
            )
        # the server stopped: its `up` drops to 0 and the endpoint-down alert is pending (5 minutes)
        prometheus.until(lambda: prometheus.pending() >= {"GlanceSimplestreamsSyncMetricsDown"}, "the alert")
        up = prometheus.query("up")

    assert [(t["labels"]["job"], t["scrapeUrl"]) for t in targets] == [
        (JOB, f"http://127.0.0.1:{metrics_port}/metrics")
    ]
    assert [sample["value"][1] for sample in failures] == ["3"]
    assert firing == EXPECTED_FIRING
    assert [(sample["metric"]["job"], sample["value"][1]) for sample in up] == [(JOB, "0")]
