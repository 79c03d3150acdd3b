"""cos-agent: our unit data for the COS agent (interface cos_agent v0) and the metrics server that
systemd runs while the relation exists."""

from __future__ import annotations

import base64
import json
import lzma
import shlex
import sys
from pathlib import Path

import pytest
import yaml
from ops import testing

from charm import GlanceSimplestreamsSyncCharm
from sync_charm import host, metrics_service

SRC = Path(__file__).resolve().parents[2] / "src"
APP = "glance-simplestreams-sync"
# The provider's unit data of cos_agent v0: the one key `config`, a JSON object with these fields.
REQUIRED_FIELDS = {
    "metrics_alert_rules": dict,
    "log_alert_rules": dict,
    "dashboards": list,
    "metrics_scrape_jobs": list,
    "log_slots": list,
}
OPTIONAL_FIELDS = {"subordinate": bool, "tracing_protocols": list}
TOPOLOGY_LABELS = {"juju_model", "juju_model_uuid", "juju_application", "juju_charm"}


@pytest.fixture(autouse=True)
def systemd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Systemctl's calls recorded, one argument list a line."""
    calls = tmp_path / "systemctl.calls"
    script = f"import sys; open({str(calls)!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')"
    monkeypatch.setattr(metrics_service, "SYSTEMCTL", [sys.executable, "-c", script])
    return calls


@pytest.fixture
def charm_root(tmp_path: Path) -> Path:
    root = tmp_path / "charm"
    root.mkdir()
    return root


@pytest.fixture
def agent() -> testing.Relation:
    return testing.Relation("cos-agent", remote_app_name="grafana-agent")


def systemctl_calls(calls: Path) -> list[str]:
    return calls.read_text().splitlines() if calls.exists() else []


def sent_config(state: testing.State, relation: testing.Relation) -> dict:
    data = state.get_relation(relation.id).local_unit_data
    assert set(data) - {"egress-subnets", "ingress-address", "private-address"} == {"config"}
    return json.loads(data["config"])


def exec_start(machine) -> list[str]:
    lines = [line for line in machine.paths.metrics_unit.read_text().splitlines() if line.startswith("ExecStart=")]
    assert len(lines) == 1
    return shlex.split(lines[0].removeprefix("ExecStart="))


def test_unit_data_has_the_interface_fields_each_of_its_type(ctx, agent):
    out = ctx.run(ctx.on.relation_joined(agent), testing.State(leader=True, relations=[agent]))

    config = sent_config(out, agent)
    assert set(REQUIRED_FIELDS) <= set(config) <= set(REQUIRED_FIELDS) | set(OPTIONAL_FIELDS)
    for field, kind in REQUIRED_FIELDS.items():
        assert isinstance(config[field], kind), field
    assert all(isinstance(dashboard, str) for dashboard in config["dashboards"])
    assert all(isinstance(job, dict) for job in config["metrics_scrape_jobs"])
    assert config["log_slots"] == []
    assert list(config["metrics_alert_rules"]) == ["groups"]
    assert list(config["log_alert_rules"]) == ["groups"]


def test_the_scrape_job_is_the_metrics_server_on_localhost_at_metrics_port(ctx, agent):
    state = testing.State(leader=True, config={"metrics_port": 9800}, relations=[agent])

    out = ctx.run(ctx.on.relation_joined(agent), state)

    assert sent_config(out, agent)["metrics_scrape_jobs"] == [
        {
            "job_name": f"{APP}_0_glance_simplestreams_sync_exporter",
            "metrics_path": "/metrics",
            "static_configs": [{"targets": ["127.0.0.1:9800"]}],
        }
    ]


@pytest.mark.parametrize(
    "field, rules_file",
    [
        ("metrics_alert_rules", "prometheus_alert_rules/glance_simplestreams_sync.rules"),
        ("log_alert_rules", "loki_alert_rules/glance_simplestreams_sync.rules"),
    ],
)
def test_alert_rules_are_the_shipped_ones_labelled_with_the_topology(ctx, agent, field, rules_file):
    shipped = yaml.safe_load((SRC / rules_file).read_text())

    out = ctx.run(ctx.on.relation_joined(agent), testing.State(leader=True, relations=[agent]))

    groups = sent_config(out, agent)[field]["groups"]
    assert [rule["alert"] for group in groups for rule in group["rules"]] == [
        rule["alert"] for group in shipped["groups"] for rule in group["rules"]
    ]
    assert [rule["expr"] for group in groups for rule in group["rules"]] == [
        rule["expr"] for group in shipped["groups"] for rule in group["rules"]
    ]
    model = out.model
    for rule in (rule for group in groups for rule in group["rules"]):
        assert set(rule["labels"]) >= TOPOLOGY_LABELS
        assert (rule["labels"]["juju_application"], rule["labels"]["juju_model"]) == (APP, model.name)
        assert rule["labels"]["juju_model_uuid"] == model.uuid
    prefix = f"{model.name}_{model.uuid[:8]}_{APP.replace('-', '_')}_"
    assert all(group["name"].startswith(prefix) for group in groups)


def test_the_dashboard_is_the_shipped_json_lzma_compressed_and_base64_encoded(ctx, agent):
    out = ctx.run(ctx.on.relation_joined(agent), testing.State(leader=True, relations=[agent]))

    dashboards = sent_config(out, agent)["dashboards"]
    shipped = (SRC / "grafana_dashboards" / "glance-simplestreams-sync.json").read_bytes()
    assert [lzma.decompress(base64.b64decode(dashboard)) for dashboard in dashboards] == [shipped]


def test_the_leader_runs_the_metrics_server_with_the_schedule(ctx, agent, machine, systemd):
    state = testing.State(leader=True, config={"run": True, "frequency": "hourly"}, relations=[agent])

    ctx.run(ctx.on.relation_joined(agent), state)

    assert exec_start(machine) == [
        sys.executable,
        "-m",
        "simplestreams_sync.metrics_server",
        "--state-dir",
        str(machine.paths.state_dir),
        "--address",
        "127.0.0.1",
        "--port",
        "9731",
        "--frequency",
        "hourly",
    ]
    assert systemctl_calls(systemd) == [
        "daemon-reload",
        f"enable {metrics_service.SERVICE}",
        f"restart {metrics_service.SERVICE}",
    ]


def test_the_server_runs_as_the_sync_user_with_the_charms_code(agent, machine, charm_root):
    ctx = testing.Context(GlanceSimplestreamsSyncCharm, charm_root=charm_root)
    ctx.run(ctx.on.relation_joined(agent), testing.State(leader=True, relations=[agent]))

    lines = machine.paths.metrics_unit.read_text().splitlines()
    assert f"User={host.SYNC_USER}" in lines
    assert f"Environment=PYTHONPATH={charm_root / 'src'}" in lines
    assert machine.paths.metrics_unit.stat().st_mode & 0o777 == 0o644


def test_without_scheduled_syncs_no_expected_period(ctx, agent, machine):
    ctx.run(ctx.on.relation_joined(agent), testing.State(leader=True, config={"run": False}, relations=[agent]))

    assert "--frequency" not in exec_start(machine)


def test_a_non_leader_runs_it_on_standby(ctx, agent, machine):
    ctx.run(ctx.on.relation_joined(agent), testing.State(leader=False, relations=[agent]))

    assert exec_start(machine)[-1] == "--standby"


def test_an_unchanged_server_is_only_kept_started(agent, machine, systemd, charm_root):
    ctx = testing.Context(GlanceSimplestreamsSyncCharm, charm_root=charm_root)  # one charm dir, as Juju's
    state = testing.State(leader=True, relations=[agent])
    ctx.run(ctx.on.relation_joined(agent), state)
    systemd.unlink()

    ctx.run(ctx.on.update_status(), state)

    assert systemctl_calls(systemd) == [f"start {metrics_service.SERVICE}"]


def test_a_new_port_restarts_it(ctx, agent, machine, systemd):
    ctx.run(ctx.on.relation_joined(agent), testing.State(leader=True, relations=[agent]))
    systemd.unlink()

    ctx.run(ctx.on.config_changed(), testing.State(leader=True, config={"metrics_port": 9800}, relations=[agent]))

    assert "9800" in exec_start(machine)
    assert systemctl_calls(systemd) == [
        "daemon-reload",
        f"enable {metrics_service.SERVICE}",
        f"restart {metrics_service.SERVICE}",
    ]


def test_without_the_relation_no_server(ctx, machine, systemd):
    ctx.run(ctx.on.update_status(), testing.State(leader=True))

    assert not machine.paths.metrics_unit.exists()
    assert systemctl_calls(systemd) == []


def test_the_relation_removed_stops_and_removes_the_server(ctx, agent, machine, systemd):
    ctx.run(ctx.on.relation_joined(agent), testing.State(leader=True, relations=[agent]))
    systemd.unlink()

    ctx.run(ctx.on.relation_broken(agent), testing.State(leader=True, relations=[agent]))

    assert not machine.paths.metrics_unit.exists()
    assert systemctl_calls(systemd) == [f"disable --now {metrics_service.SERVICE}", "daemon-reload"]


def test_remove_stops_and_removes_the_server(ctx, agent, machine, systemd):
    ctx.run(ctx.on.relation_joined(agent), testing.State(leader=True, relations=[agent]))
    systemd.unlink()

    ctx.run(ctx.on.remove(), testing.State(leader=True, relations=[agent]))

    assert not machine.paths.metrics_unit.exists()
    assert systemctl_calls(systemd) == [f"disable --now {metrics_service.SERVICE}", "daemon-reload"]


def test_an_invalid_option_keeps_the_server_as_it_is(ctx, agent, machine, systemd):
    ctx.run(ctx.on.relation_joined(agent), testing.State(leader=True, relations=[agent]))
    systemd.unlink()

    ctx.run(ctx.on.config_changed(), testing.State(leader=True, config={"metrics_port": 0}, relations=[agent]))

    assert "9731" in exec_start(machine)
    assert systemctl_calls(systemd) == []
