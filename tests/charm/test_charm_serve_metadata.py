"""serve_metadata: the leader serves the image metadata from nginx and registers its own addresses."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import pytest
from ops import testing

from simplestreams_sync.config import load_sync_config
from sync_charm import host, metadata_server
from tests.charm.relation_data import CA_PEM, CHAIN_PEM

SERVE = {"serve_metadata": True}
SERVER_CERT = (
    "-----BEGIN CERTIFICATE-----\nMIIBServerCert000000000000000000000000wCgYIKoZIzj0EAwIw\n-----END CERTIFICATE-----\n"
)
SERVER_KEY = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAServerKey0000000000000000\n-----END PRIVATE KEY-----\n"


@pytest.fixture(autouse=True)
def systemd(tmp_path: Path, machine, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Calls of systemctl and apt recorded: the file of systemctl's argument lists, one per line."""
    calls = tmp_path / "systemctl.calls"
    script = f"import sys; open({str(calls)!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')"
    monkeypatch.setattr(metadata_server, "SYSTEMCTL", [sys.executable, "-c", script])
    monkeypatch.setattr(metadata_server, "install", lambda: machine.installed.append([metadata_server.PACKAGE]))
    return calls


def systemctl_calls(calls: Path) -> list[str]:
    return calls.read_text().splitlines() if calls.exists() else []


def listen_lines(site: str) -> list[str]:
    return [line.strip() for line in site.splitlines() if line.strip().startswith("listen ")]


def network(name: str, address: str) -> testing.Network:
    return testing.Network(
        name, bind_addresses=[testing.BindAddress([testing.Address(address)])], ingress_addresses=[address]
    )


NETWORKS = {network("public", "10.0.0.5"), network("internal", "10.1.0.5"), network("admin", "10.2.0.5")}


def served_vault(**extra: str) -> testing.Relation:
    processed = {socket.gethostname(): {"cert": SERVER_CERT, "key": SERVER_KEY}}
    data = {"ca": CA_PEM, "chain": CHAIN_PEM, "glance-simplestreams-sync_0.processed_requests": json.dumps(processed)}
    return testing.Relation("certificates", remote_app_name="vault", remote_units_data={0: {**data, **extra}})


def test_the_leader_writes_the_site_and_asks_systemd_for_nginx(ctx, keystone, machine, fake_engine, systemd):
    fake_engine(metadata_url="http://10.0.0.5/simplestreams/data")

    ctx.run(ctx.on.config_changed(), testing.State(leader=True, config=SERVE, relations=[keystone], networks=NETWORKS))

    assert [metadata_server.PACKAGE] in machine.installed
    site = machine.paths.nginx_site.read_text()
    assert listen_lines(site) == ["listen 10.0.0.5:80;", "listen 10.1.0.5:80;", "listen 10.2.0.5:80;"]
    assert f"alias {machine.paths.served_dir}/;" in site
    assert "autoindex off;" in site and "application/json json;" in site and "ssl" not in site
    assert systemctl_calls(systemd) == ["enable nginx", "reload-or-restart nginx"]
    assert machine.owners(machine.paths.served_dir)[1:] == (machine.sync_user, metadata_server.WEB_SERVER_GROUP)
    assert machine.paths.served_dir.stat().st_mode & 0o7777 == 0o2750


def test_an_unchanged_site_is_only_kept_running(ctx, keystone, machine, fake_engine, systemd):
    fake_engine(metadata_url="http://10.0.0.5/simplestreams/data")
    state = testing.State(leader=True, config=SERVE, relations=[keystone], networks=NETWORKS)
    ctx.run(ctx.on.config_changed(), state)

    ctx.run(ctx.on.update_status(), state)

    assert systemctl_calls(systemd)[2:] == ["enable nginx", "start nginx"]


def test_keystone_urls_are_the_leaders_addresses_on_each_binding(ctx, keystone, machine, fake_engine):
    engine = fake_engine(metadata_url="http://10.0.0.5/simplestreams/data")

    out = ctx.run(
        ctx.on.relation_changed(keystone, remote_unit=0),
        testing.State(leader=True, config=SERVE, relations=[keystone], networks=NETWORKS),
    )

    request = out.get_relation(keystone.id).local_unit_data
    assert (request["public_url"], request["internal_url"], request["admin_url"]) == (
        "http://10.0.0.5/simplestreams/data",
        "http://10.1.0.5/simplestreams/data",
        "http://10.2.0.5/simplestreams/data",
    )
    assert len(engine.publish_calls) == 1  # empty metadata in the served directory right away
    local = load_sync_config(machine.paths.mirrors).local_metadata
    assert local is not None
    assert (local.directory, local.url) == (str(machine.paths.served_dir), "http://10.0.0.5/simplestreams/data")


def test_serve_metadata_wins_over_use_swift_and_use_swift_false_alone_serves_nothing(
    ctx, keystone, machine, fake_engine
):
    fake_engine(metadata_url="http://10.0.0.5/simplestreams/data")
    state = testing.State(leader=True, config={"use_swift": False}, relations=[keystone], networks=NETWORKS)

    ctx.run(ctx.on.config_changed(), state)
    assert not machine.paths.nginx_site.exists()
    assert load_sync_config(machine.paths.mirrors).local_metadata is None

    ctx.run(ctx.on.config_changed(), testing.State(leader=True, config={"use_swift": True, **SERVE},
                                                   relations=[keystone], networks=NETWORKS))  # fmt: skip
    assert load_sync_config(machine.paths.mirrors).local_metadata is not None


def test_with_vaults_certificate_it_serves_https_only(ctx, keystone, machine, fake_engine, systemd):
    fake_engine(metadata_url="https://10.0.0.5/simplestreams/data")
    vault = served_vault()

    out = ctx.run(
        ctx.on.relation_changed(vault, remote_unit=0),
        testing.State(leader=True, config=SERVE, relations=[keystone, vault], networks=NETWORKS),
    )

    site = machine.paths.nginx_site.read_text()
    assert listen_lines(site) == ["listen 10.0.0.5:443 ssl;", "listen 10.1.0.5:443 ssl;", "listen 10.2.0.5:443 ssl;"]
    assert f"ssl_certificate {machine.paths.served_certificate};" in site
    assert machine.paths.served_certificate.read_text() == SERVER_CERT + CHAIN_PEM
    assert machine.paths.served_key.read_text() == SERVER_KEY
    assert machine.owners(machine.paths.served_key)[0] == "600"
    assert out.get_relation(keystone.id).local_unit_data["public_url"] == "https://10.0.0.5/simplestreams/data"
    request = json.loads(out.get_relation(vault.id).local_unit_data["cert_requests"])
    assert request == {socket.gethostname(): {"sans": ["10.0.0.5", "10.1.0.5", "10.2.0.5", "192.0.2.0"]}}


def test_vaults_ca_alone_gives_http(ctx, keystone, machine, fake_engine):
    fake_engine(metadata_url="http://10.0.0.5/simplestreams/data")
    vault = testing.Relation("certificates", remote_app_name="vault", remote_units_data={0: {"ca": CA_PEM}})

    out = ctx.run(
        ctx.on.relation_changed(vault, remote_unit=0),
        testing.State(leader=True, config=SERVE, relations=[keystone, vault], networks=NETWORKS),
    )

    assert "listen 10.0.0.5:80;" in machine.paths.nginx_site.read_text()
    assert not machine.paths.served_certificate.exists()
    assert out.get_relation(keystone.id).local_unit_data["public_url"] == "http://10.0.0.5/simplestreams/data"


def test_a_unit_that_is_no_longer_leader_stops_serving_and_withdraws(ctx, keystone, machine, fake_engine, systemd):
    fake_engine(metadata_url="http://10.0.0.5/simplestreams/data")
    ctx.run(ctx.on.config_changed(), testing.State(leader=True, config=SERVE, relations=[keystone], networks=NETWORKS))
    (machine.paths.served_dir / "streams").mkdir()

    out = ctx.run(
        ctx.on.update_status(),
        testing.State(leader=False, config=SERVE, relations=[keystone], networks=NETWORKS),
    )

    assert not machine.paths.nginx_site.exists() and not machine.paths.served_dir.exists()
    assert systemctl_calls(systemd)[-1] == "disable --now nginx"
    assert out.get_relation(keystone.id).local_unit_data.get("public_url", "") == ""
    assert load_sync_config(machine.paths.mirrors).local_metadata is None


def test_remove_stops_serving_and_removes_the_site_and_the_served_files(ctx, keystone, machine, fake_engine, systemd):
    fake_engine(metadata_url="http://10.0.0.5/simplestreams/data")
    state = testing.State(leader=True, config=SERVE, relations=[keystone, served_vault()], networks=NETWORKS)
    ctx.run(ctx.on.config_changed(), state)
    assert machine.paths.served_certificate.exists()

    ctx.run(ctx.on.remove(), state)

    for path in (machine.paths.nginx_site, machine.paths.served_dir, machine.paths.served_certificate):
        assert not path.exists(), path
    assert systemctl_calls(systemd)[-1] == "disable --now nginx"
    assert host.PATHS.served_key.exists() is False
