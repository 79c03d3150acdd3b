"""The cos-agent endpoint (interface cos_agent v0, provider side): what the COS agent subordinate
(grafana-agent, opentelemetry-collector) needs to watch this unit.

The unit's data holds one key, `config`: a JSON object with the metrics endpoint to scrape
(`metrics_scrape_jobs`, Prometheus scrape_configs; each job named `<application>_<n>_<name>`), the
alert rules for Prometheus and Loki (`metrics_alert_rules`, `log_alert_rules`: rule groups named and
labelled with the Juju topology, as cosl's AlertRules makes them), the Grafana dashboards
(`dashboards`: each dashboard's JSON, LZMA-compressed and base64-encoded) and `log_slots` (snap slots:
none, the sync logs to a file under /var/log, which the agent reads itself).
"""

from __future__ import annotations

import json
from pathlib import Path

import ops
from cosl import JujuTopology
from cosl.rules import AlertRules
from cosl.utils import LZMABase64

from simplestreams_sync.metrics_server import LISTEN_ADDRESS

from . import metrics_service

ENDPOINT = "cos-agent"
DATA_KEY = "config"
JOB_NAME = "glance_simplestreams_sync_exporter"
METRICS_PATH = "/metrics"
SOURCE_DIR = Path(__file__).resolve().parents[1]
PROMETHEUS_RULES = SOURCE_DIR / "prometheus_alert_rules"
LOKI_RULES = SOURCE_DIR / "loki_alert_rules"
DASHBOARDS = SOURCE_DIR / "grafana_dashboards"


def scrape_jobs(app_name: str, port: int) -> list[dict]:
    """The one job: the unit's metrics server, on the machine the agent shares with it."""
    return [
        {
            "job_name": f"{app_name}_0_{JOB_NAME}",
            "metrics_path": METRICS_PATH,
            "static_configs": [{"targets": [f"{LISTEN_ADDRESS}:{port}"]}],
        }
    ]


def alert_rules(query_type: str, directory: Path, topology: JujuTopology) -> dict:
    rules = AlertRules(query_type=query_type, topology=topology)  # type: ignore[arg-type]
    rules.add_path(directory)
    return rules.as_dict()


def dashboards() -> list[str]:
    return [LZMABase64.compress(path.read_bytes()) for path in sorted(DASHBOARDS.glob("*.json"))]


def unit_data(charm: ops.CharmBase, port: int) -> dict[str, str]:
    topology = JujuTopology.from_charm(charm)
    config = {
        "metrics_alert_rules": alert_rules("promql", PROMETHEUS_RULES, topology),
        "log_alert_rules": alert_rules("logql", LOKI_RULES, topology),
        "dashboards": dashboards(),
        "metrics_scrape_jobs": scrape_jobs(charm.app.name, port),
        "log_slots": [],
    }
    return {DATA_KEY: json.dumps(config, sort_keys=True)}


def publish(charm: ops.CharmBase, port: int) -> None:
    """Our unit's data on each cos-agent relation, written only when it changed."""
    data = unit_data(charm, port)
    for relation in charm.model.relations[ENDPOINT]:
        bag = relation.data[charm.unit]
        if bag.get(DATA_KEY) != data[DATA_KEY]:
            bag.update(data)


def reconcile(charm: ops.CharmBase, port: int, frequency: str | None) -> None:
    """While cos-agent is related: the metrics server runs (on standby unless the unit is the leader) and
    the agent has our unit data; without the relation, no server."""
    if not charm.model.relations[ENDPOINT]:
        metrics_service.stop()
        return
    metrics_service.run(charm.unit.name, charm.charm_dir, port, frequency, standby=not charm.unit.is_leader())
    publish(charm, port)


def stop() -> None:
    """The unit goes: no metrics server."""
    metrics_service.stop()
