"""receive-ca-cert: the certificate_transfer interface (self-signed-certificates, vault 1.16+,
manual-tls-certificates), through charmlibs-interfaces-certificate-transfer. Its CAs join the same
trust store and CA bundle as vault's and ssl_ca's."""

import json

from ops import testing

from simplestreams_sync.config import load_identity
from tests.charm.relation_data import CA_PEM, CHAIN_PEM, OPERATOR_CA_B64, OPERATOR_CA_PEM, SELF_SIGNED_CA_PEM


def ca_transfer(*cas: str, remote_app_name: str = "self-signed-certificates") -> testing.Relation:
    """What a v1 provider puts in its application data."""
    return testing.Relation(
        "receive-ca-cert",
        remote_app_name=remote_app_name,
        remote_app_data={"certificates": json.dumps(sorted(cas)), "version": "1"},
    )


def test_the_leader_tells_the_provider_it_speaks_v1(ctx):
    relation = testing.Relation("receive-ca-cert", remote_app_name="self-signed-certificates")

    out = ctx.run(ctx.on.relation_created(relation), testing.State(leader=True, relations=[relation]))

    assert out.get_relation(relation.id).local_app_data == {"version": "1"}


def test_the_ca_is_trusted_and_given_to_the_sync(ctx, keystone, machine):
    relation = ca_transfer(SELF_SIGNED_CA_PEM)

    ctx.run(
        ctx.on.relation_changed(relation, remote_unit=0), testing.State(leader=True, relations=[relation, keystone])
    )

    assert [path.read_text() for path in machine.paths.ca_dir.glob("*.crt")] == [SELF_SIGNED_CA_PEM]
    assert machine.ca_update_count() == 1
    assert load_identity(machine.paths.identity).ca_file == str(machine.paths.ca_bundle)
    assert machine.paths.ca_bundle.read_text() == SELF_SIGNED_CA_PEM


def test_a_v0_provider_unit_data_is_read_too(ctx, keystone, machine):
    relation = testing.Relation(
        "receive-ca-cert",
        remote_app_name="manual-tls-certificates",
        remote_units_data={
            0: {"ca": json.dumps(CA_PEM), "certificate": json.dumps("x"), "chain": json.dumps([CA_PEM, CHAIN_PEM])}
        },
    )

    ctx.run(ctx.on.relation_changed(relation, remote_unit=0), testing.State(relations=[relation, keystone]))

    assert machine.paths.ca_bundle.read_text() == CA_PEM + CHAIN_PEM


def test_every_ca_source_joins_one_bundle(ctx, keystone, vault, machine):
    relation = ca_transfer(SELF_SIGNED_CA_PEM, CA_PEM)  # vault's CA sent on both relations: trusted once

    ctx.run(
        ctx.on.relation_changed(relation, remote_unit=0),
        testing.State(config={"ssl_ca": OPERATOR_CA_B64}, relations=[relation, vault, keystone]),
    )

    assert machine.paths.ca_bundle.read_text() == OPERATOR_CA_PEM + CA_PEM + CHAIN_PEM + SELF_SIGNED_CA_PEM
    assert len(list(machine.paths.ca_dir.glob("*.crt"))) == 4


def test_waits_for_the_providers_ca(ctx, keystone):
    relation = testing.Relation("receive-ca-cert", remote_app_name="self-signed-certificates")

    out = ctx.run(
        ctx.on.relation_joined(relation, remote_unit=0), testing.State(leader=True, relations=[relation, keystone])
    )

    assert out.unit_status == testing.WaitingStatus(
        "Waiting for self-signed-certificates to send its CA on receive-ca-cert"
    )


def test_relation_broken_untrusts_its_cas(ctx, keystone, machine):
    relation = ca_transfer(SELF_SIGNED_CA_PEM)
    ctx.run(ctx.on.relation_changed(relation, remote_unit=0), testing.State(relations=[relation, keystone]))

    out = ctx.run(ctx.on.relation_broken(relation), testing.State(leader=True, relations=[relation, keystone]))

    assert list(machine.paths.ca_dir.glob("*.crt")) == []
    assert load_identity(machine.paths.identity).ca_file is None
    assert out.unit_status.name == "active"
