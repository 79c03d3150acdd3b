"""serve_metadata: the leader serves the image metadata from nginx and registers its own addresses."""

from __future__ import annotations

import dataclasses
import json
import socket
import sys
from pathlib import Path

import pytest
from ops import testing

from simplestreams_sync.config import load_sync_config
from sync_charm import host, metadata_server
from tests.charm.relation_data import CA_PEM, CHAIN_PEM, METADATA_URL, PRODUCT_STREAMS_URLS

SERVE = {"serve_metadata": True}
SERVER_CERT = (
    "-----BEGIN CERTIFICATE-----\nMIIBServerCert000000000000000000000000wCgYIKoZIzj0EAwIw\n-----END CERTIFICATE-----\n"
)
SERVER_KEY = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAServerKey0000000000000000\n-----END PRIVATE KEY-----\n"


@pytest.fixture(autouse=True)
def systemd(tmp_path: Path, machine, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Calls of systemctl and apt recorded: the file of systemctl's argument lists, one per line. The
    charm installs nginx, which comes with Ubuntu's packaged layout: its `default` site, enabled."""
    calls = tmp_path / "systemctl.calls"
    script = f"import sys; open({str(calls)!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')"
    monkeypatch.setattr(metadata_server, "SYSTEMCTL", [sys.executable, "-c", script])

    def install() -> bool:
        machine.installed.append([metadata_server.PACKAGE])
        if machine.paths.nginx_sites_available.exists():
            return False
        packaged_nginx(machine.paths)
        return True

    monkeypatch.setattr(metadata_server, "install", install)
    return calls


def packaged_nginx(paths: host.Paths) -> None:
    """What Ubuntu's nginx package installs of its sites: `default`, on port 80, enabled by a link."""
    paths.nginx_sites_available.mkdir(parents=True)
    paths.nginx_sites_enabled.mkdir(parents=True)
    default = paths.nginx_sites_available / "default"
    default.write_text("server {\n\tlisten 80 default_server;\n\troot /var/www/html;\n}\n")
    paths.nginx_default_site_link.symlink_to(default)


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


def test_the_site_is_enabled_as_ubuntu_s_nginx_enables_sites(ctx, keystone, machine, fake_engine):
    fake_engine(metadata_url="http://10.0.0.5/simplestreams/data")

    ctx.run(ctx.on.config_changed(), testing.State(leader=True, config=SERVE, relations=[keystone], networks=NETWORKS))

    assert machine.paths.nginx_site == machine.paths.nginx_sites_available / "glance-simplestreams-sync"
    assert machine.paths.nginx_site_link.resolve() == machine.paths.nginx_site


def test_the_packaged_default_site_is_disabled_when_the_charm_installed_nginx(ctx, keystone, machine, fake_engine):
    fake_engine(metadata_url="http://10.0.0.5/simplestreams/data")

    ctx.run(ctx.on.config_changed(), testing.State(leader=True, config=SERVE, relations=[keystone], networks=NETWORKS))

    enabled = sorted(path.name for path in machine.paths.nginx_sites_enabled.iterdir())
    assert enabled == ["glance-simplestreams-sync"]
    assert (machine.paths.nginx_sites_available / "default").exists()  # the package's file stays


def test_an_nginx_installed_before_the_charm_keeps_its_default_site(ctx, keystone, machine, fake_engine):
    fake_engine(metadata_url="http://10.0.0.5/simplestreams/data")
    packaged_nginx(machine.paths)  # the operator's nginx: the charm installs nothing

    ctx.run(ctx.on.config_changed(), testing.State(leader=True, config=SERVE, relations=[keystone], networks=NETWORKS))

    enabled = sorted(path.name for path in machine.paths.nginx_sites_enabled.iterdir())
    assert enabled == ["default", "glance-simplestreams-sync"]


def test_remove_gives_the_nginx_it_installed_its_default_site_back(ctx, keystone, machine, fake_engine):
    fake_engine(metadata_url="http://10.0.0.5/simplestreams/data")
    state = testing.State(leader=True, config=SERVE, relations=[keystone], networks=NETWORKS)
    ctx.run(ctx.on.config_changed(), state)

    ctx.run(ctx.on.remove(), state)

    enabled = {path.name: path.resolve() for path in machine.paths.nginx_sites_enabled.iterdir()}
    assert enabled == {"default": machine.paths.nginx_sites_available / "default"}


def test_nginx_failing_to_start_blocks_with_its_reason(ctx, keystone, machine, fake_engine, monkeypatch):
    fake_engine(metadata_url="http://10.0.0.5/simplestreams/data")
    script = "import sys; sys.stderr.write('Job for nginx.service failed.\\n'); sys.exit(sys.argv[1] != 'enable')"
    monkeypatch.setattr(metadata_server, "SYSTEMCTL", [sys.executable, "-c", script])

    out = ctx.run(
        ctx.on.config_changed(), testing.State(leader=True, config=SERVE, relations=[keystone], networks=NETWORKS)
    )

    assert out.unit_status == testing.BlockedStatus(
        "Cannot serve the metadata: systemctl reload-or-restart nginx exited with 1: Job for nginx.service failed."
    )
    assert machine.paths.nginx_site.exists()


def test_serve_metadata_off_keeps_serving_while_the_object_store_cannot_take_the_metadata(
    ctx, keystone, machine, fake_engine, systemd
):
    fake_engine(metadata_url="http://10.0.0.5/simplestreams/data")
    ctx.run(ctx.on.config_changed(), testing.State(leader=True, config=SERVE, relations=[keystone], networks=NETWORKS))
    served = ctx.run(
        ctx.on.update_status(), testing.State(leader=True, config=SERVE, relations=[keystone], networks=NETWORKS)
    ).get_relation(keystone.id)
    engine = fake_engine(metadata_url=None)  # swift is down
    calls, published = len(systemctl_calls(systemd)), len(engine.publish_calls)

    out = ctx.run(ctx.on.config_changed(), testing.State(leader=True, relations=[served], networks=NETWORKS))

    assert len(engine.publish_calls) == published + 1
    assert out.get_relation(keystone.id).local_unit_data["public_url"] == "http://10.0.0.5/simplestreams/data"
    assert machine.paths.nginx_site.exists() and machine.paths.served_dir.exists()
    assert systemctl_calls(systemd)[calls:] == []


def test_serve_metadata_off_moves_the_endpoint_once_the_object_store_has_the_metadata(
    ctx, keystone, machine, fake_engine, systemd
):
    fake_engine(metadata_url="http://10.0.0.5/simplestreams/data")
    served = ctx.run(
        ctx.on.config_changed(), testing.State(leader=True, config=SERVE, relations=[keystone], networks=NETWORKS)
    ).get_relation(keystone.id)
    engine = fake_engine(metadata_url=METADATA_URL)  # the object store takes the metadata
    published = len(engine.publish_calls)

    out = ctx.run(ctx.on.config_changed(), testing.State(leader=True, relations=[served], networks=NETWORKS))

    assert len(engine.publish_calls) == published + 1
    request = out.get_relation(keystone.id).local_unit_data
    assert {interface: request[f"{interface}_url"] for interface in PRODUCT_STREAMS_URLS} == PRODUCT_STREAMS_URLS
    assert not machine.paths.nginx_site.exists() and not machine.paths.served_dir.exists()
    assert systemctl_calls(systemd)[-1] == "disable --now nginx"


def test_the_site_an_earlier_revision_wrote_in_conf_d_goes(ctx, keystone, machine, fake_engine, systemd):
    fake_engine(metadata_url="http://10.0.0.5/simplestreams/data")
    machine.paths.nginx_earlier_site.parent.mkdir(parents=True)
    machine.paths.nginx_earlier_site.write_text("server { listen 10.0.0.5:80; }\n")

    ctx.run(ctx.on.upgrade_charm(), testing.State(leader=True, config=SERVE, relations=[keystone], networks=NETWORKS))

    assert not machine.paths.nginx_earlier_site.exists() and machine.paths.nginx_site.exists()
    assert systemctl_calls(systemd) == ["enable nginx", "reload-or-restart nginx"]


def test_serve_metadata_off_checks_the_object_store_even_with_its_urls_remembered(ctx, keystone, machine, fake_engine):
    fake_engine(metadata_url="http://10.0.0.5/simplestreams/data")
    served = ctx.run(
        ctx.on.config_changed(), testing.State(leader=True, config=SERVE, relations=[keystone], networks=NETWORKS)
    ).get_relation(keystone.id)
    remembered = {"metadata_url": METADATA_URL, **{f"{key}_url": url for key, url in PRODUCT_STREAMS_URLS.items()}}
    served = dataclasses.replace(served, local_app_data={**served.local_app_data, **remembered})
    engine = fake_engine(metadata_url=None)  # swift, which had the metadata before serve_metadata, is down
    published = len(engine.publish_calls)

    out = ctx.run(ctx.on.config_changed(), testing.State(leader=True, relations=[served], networks=NETWORKS))

    assert len(engine.publish_calls) == published + 1
    assert out.get_relation(keystone.id).local_unit_data["public_url"] == "http://10.0.0.5/simplestreams/data"
    assert machine.paths.nginx_site.exists()
