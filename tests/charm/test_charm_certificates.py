"""certificates: vault's tls-certificates unit-data protocol; the CA it returns is trusted by the sync."""

import json
import socket

from ops import testing

from simplestreams_sync.config import load_identity
from tests.charm.relation_data import CA_PEM, CHAIN_PEM, OPERATOR_CA_B64, OPERATOR_CA_PEM


def test_requests_a_certificate_for_the_unit(ctx):
    relation = testing.Relation("certificates", remote_app_name="vault")

    out = ctx.run(ctx.on.relation_joined(relation, remote_unit=0), testing.State(relations=[relation]))

    data = out.get_relation(relation.id).local_unit_data
    assert data["unit_name"] == "glance-simplestreams-sync_0"
    assert json.loads(data["cert_requests"]) == {socket.gethostname(): {"sans": ["192.0.2.0"]}}


def test_vault_ca_and_chain_go_into_the_trust_store(ctx, vault, machine):
    ctx.run(ctx.on.relation_changed(vault, remote_unit=0), testing.State(relations=[vault]))

    trusted = sorted(machine.paths.ca_dir.glob("*.crt"))
    assert [path.read_text() for path in trusted] == [CA_PEM, CHAIN_PEM]
    assert all(path.stat().st_mode & 0o777 == 0o644 for path in trusted)
    assert machine.ca_update_count() == 1


def test_vault_ca_is_given_to_the_sync(ctx, vault, keystone, machine):
    ctx.run(ctx.on.relation_changed(vault, remote_unit=0), testing.State(leader=True, relations=[vault, keystone]))

    identity = load_identity(machine.paths.identity)
    assert identity.ca_file == str(machine.paths.ca_bundle)
    assert machine.paths.ca_bundle.read_text() == CA_PEM + CHAIN_PEM
    assert machine.sync_readable(machine.paths.ca_bundle)


def test_unchanged_ca_does_not_rerun_update_ca_certificates(ctx, vault, machine):
    ctx.run(ctx.on.relation_changed(vault, remote_unit=0), testing.State(relations=[vault]))

    ctx.run(ctx.on.update_status(), testing.State(relations=[vault]))

    assert machine.ca_update_count() == 1


def test_relation_broken_untrusts_the_vault_ca(ctx, vault, keystone, machine):
    ctx.run(ctx.on.relation_changed(vault, remote_unit=0), testing.State(leader=True, relations=[vault, keystone]))

    ctx.run(ctx.on.relation_broken(vault), testing.State(leader=True, relations=[vault, keystone]))

    assert list(machine.paths.ca_dir.glob("*.crt")) == []
    assert machine.ca_update_count() == 2
    assert load_identity(machine.paths.identity).ca_file is None


def test_waits_for_the_ca(ctx, keystone):
    relation = testing.Relation("certificates", remote_app_name="vault")

    out = ctx.run(
        ctx.on.relation_joined(relation, remote_unit=0), testing.State(leader=True, relations=[relation, keystone])
    )

    assert out.unit_status == testing.WaitingStatus("Waiting for vault to send its CA on certificates")


def test_ssl_ca_option_works_without_the_relation(ctx, keystone, machine):
    ctx.run(
        ctx.on.config_changed(), testing.State(leader=True, config={"ssl_ca": OPERATOR_CA_B64}, relations=[keystone])
    )

    assert [path.read_text() for path in machine.paths.ca_dir.glob("*.crt")] == [OPERATOR_CA_PEM]
    assert machine.ca_update_count() == 1
    assert load_identity(machine.paths.identity).ca_file == str(machine.paths.ca_bundle)
    assert machine.paths.ca_bundle.read_text() == OPERATOR_CA_PEM


def test_ssl_ca_and_vault_ca_are_both_trusted(ctx, keystone, vault, machine):
    ctx.run(ctx.on.config_changed(), testing.State(config={"ssl_ca": OPERATOR_CA_B64}, relations=[keystone, vault]))

    assert machine.paths.ca_bundle.read_text() == OPERATOR_CA_PEM + CA_PEM + CHAIN_PEM
    assert len(list(machine.paths.ca_dir.glob("*.crt"))) == 3
