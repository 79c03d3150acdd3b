"""identity-service: the keystone machine charm's unit-data protocol, in and out."""

import base64

from ops import testing

from simplestreams_sync.config import load_identity
from tests.charm.relation_data import CA_PEM, KEYSTONE_V3, METADATA_URL, PRODUCT_STREAMS_URLS

REQUEST_KEYS = ("service", "region", "public_url", "internal_url", "admin_url")


def _request(relation: testing.Relation) -> dict:
    return {key: relation.local_unit_data.get(key) for key in REQUEST_KEYS}


def _urls(data: dict) -> dict:
    """The product-streams URLs in a request (or in what we remember), by interface."""
    return {interface: data.get(f"{interface}_url") for interface in ("public", "internal", "admin")}


REMEMBERED = {"metadata_url": METADATA_URL, **{f"{key}_url": url for key, url in PRODUCT_STREAMS_URLS.items()}}


def test_leader_requests_the_image_stream_service_for_its_region(ctx):
    relation = testing.Relation("identity-service", remote_app_name="keystone")
    state = testing.State(leader=True, config={"region": "RegionTwo"}, relations=[relation])

    out = ctx.run(ctx.on.relation_joined(relation, remote_unit=0), state)

    request = _request(out.get_relation(relation.id))
    assert request["service"] == "image-stream"
    assert request["region"] == "RegionTwo"


def test_before_any_metadata_is_published_the_endpoint_is_the_classic_placeholder(ctx):
    relation = testing.Relation("identity-service", remote_app_name="keystone")

    out = ctx.run(ctx.on.relation_joined(relation, remote_unit=0), testing.State(leader=True, relations=[relation]))

    request = _request(out.get_relation(relation.id))
    assert request["public_url"] == request["internal_url"] == request["admin_url"] == "http://192.0.2.0"


def test_once_published_each_interface_points_at_the_object_stores_url_for_it(ctx, keystone, machine):
    machine.write_result(
        metadata_url=METADATA_URL + "/",
        product_streams_urls={key: url + "/" for key, url in PRODUCT_STREAMS_URLS.items()},
    )

    out = ctx.run(ctx.on.update_status(), testing.State(leader=True, relations=[keystone]))

    relation = out.get_relation(keystone.id)
    assert _urls(_request(relation)) == PRODUCT_STREAMS_URLS
    assert relation.local_app_data == REMEMBERED


def test_a_new_leader_keeps_the_published_endpoint(ctx, machine):
    relation = testing.Relation(
        "identity-service",
        remote_app_name="keystone",
        local_app_data=dict(REMEMBERED),
        remote_units_data={0: dict(KEYSTONE_V3)},
    )

    out = ctx.run(ctx.on.leader_elected(), testing.State(leader=True, relations=[relation]))

    assert _urls(_request(out.get_relation(relation.id))) == PRODUCT_STREAMS_URLS


def test_a_run_that_did_not_publish_keeps_the_published_endpoint(ctx, machine):
    machine.write_result(published=False, errors=["swift: 503 Service Unavailable"])
    relation = testing.Relation(
        "identity-service",
        remote_app_name="keystone",
        local_app_data=dict(REMEMBERED),
        remote_units_data={0: dict(KEYSTONE_V3)},
    )

    out = ctx.run(ctx.on.update_status(), testing.State(leader=True, relations=[relation]))

    assert _urls(_request(out.get_relation(relation.id))) == PRODUCT_STREAMS_URLS


def _upgraded_from_one_url() -> testing.Relation:
    """What an earlier revision left: one URL for every interface, remembered as `metadata_url`."""
    return testing.Relation(
        "identity-service",
        remote_app_name="keystone",
        local_unit_data={
            "service": "image-stream",
            "region": "RegionOne",
            **dict.fromkeys(REQUEST_KEYS[2:], METADATA_URL),
        },
        local_app_data={"metadata_url": METADATA_URL},
        remote_units_data={0: dict(KEYSTONE_V3)},
    )


def test_an_upgraded_unit_that_registered_one_url_registers_three_on_its_next_hook(ctx, machine, fake_engine):
    machine.write_result(metadata_url=METADATA_URL)  # an earlier revision's last-sync.json: no product_streams_urls
    engine = fake_engine(metadata_url=METADATA_URL)
    relation = _upgraded_from_one_url()

    out = ctx.run(ctx.on.upgrade_charm(), testing.State(leader=True, relations=[relation]))

    assert len(engine.publish_calls) == 1  # the engine names the URLs (and leaves the metadata as it is)
    assert _urls(_request(out.get_relation(relation.id))) == PRODUCT_STREAMS_URLS
    assert out.get_relation(relation.id).local_app_data == REMEMBERED


def test_an_upgraded_unit_keeps_its_one_url_while_the_engine_cannot_name_three(ctx, machine, fake_engine):
    fake_engine(metadata_url=None)  # the object store is down
    relation = _upgraded_from_one_url()

    out = ctx.run(ctx.on.upgrade_charm(), testing.State(leader=True, relations=[relation]))

    assert _urls(_request(out.get_relation(relation.id))) == dict.fromkeys(PRODUCT_STREAMS_URLS, METADATA_URL)
    assert "error: swift is down" in machine.paths.log_file.read_text()


def test_non_leader_withdraws_its_request(ctx):
    relation = testing.Relation(
        "identity-service",
        remote_app_name="keystone",
        local_unit_data={
            "service": "image-stream",
            "region": "RegionOne",
            "public_url": "http://10.0.0.9",
            "internal_url": "http://10.0.0.9",
            "admin_url": "http://10.0.0.9",
        },
    )

    out = ctx.run(ctx.on.update_status(), testing.State(leader=False, relations=[relation]))

    assert not any(_request(out.get_relation(relation.id)).values())


def test_keystone_credentials_are_written_to_identity_yaml(ctx, keystone, machine):
    ctx.run(ctx.on.relation_changed(keystone, remote_unit=0), testing.State(leader=True, relations=[keystone]))

    identity = load_identity(machine.paths.identity)
    assert identity.auth_url == "https://10.5.0.10:5000/v3"
    assert (identity.username, identity.password, identity.project_name) == ("image-stream", "s3cret-pw", "services")
    assert identity.user_domain_name == identity.project_domain_name == "service_domain"
    assert (identity.region, identity.interface, identity.ca_file) == ("RegionOne", "public", None)
    assert machine.sync_readable(machine.paths.identity)


def test_use_internal_endpoints_selects_keystone_internal_auth_url(ctx, keystone, machine):
    state = testing.State(
        leader=True, config={"use-internal-endpoints": True, "region": "RegionTwo"}, relations=[keystone]
    )

    ctx.run(ctx.on.relation_changed(keystone, remote_unit=0), state)

    identity = load_identity(machine.paths.identity)
    assert (identity.auth_url, identity.interface, identity.region) == (
        "https://10.5.0.12:5000/v3",
        "internal",
        "RegionTwo",
    )


def test_keystone_defaults_to_http_and_default_domain(ctx, machine):
    data = {
        key: value
        for key, value in KEYSTONE_V3.items()
        if key not in ("service_protocol", "service_domain", "internal_host")
    }
    relation = testing.Relation("identity-service", remote_units_data={0: data})

    ctx.run(ctx.on.relation_changed(relation, remote_unit=0), testing.State(leader=True, relations=[relation]))

    identity = load_identity(machine.paths.identity)
    assert identity.auth_url == "http://10.5.0.10:5000/v3"
    assert identity.interface == "public"
    assert identity.user_domain_name == "Default"


def test_keystone_ca_cert_is_trusted(ctx, machine):
    data = {**KEYSTONE_V3, "ca_cert": base64.b64encode(CA_PEM.encode()).decode()}
    relation = testing.Relation("identity-service", remote_units_data={0: data})

    ctx.run(ctx.on.relation_changed(relation, remote_unit=0), testing.State(leader=True, relations=[relation]))

    identity = load_identity(machine.paths.identity)
    assert identity.ca_file == str(machine.paths.ca_bundle)
    assert machine.paths.ca_bundle.read_text() == CA_PEM


def test_incomplete_answer_writes_no_identity_yaml_and_waits(ctx, machine):
    partial = {key: value for key, value in KEYSTONE_V3.items() if key != "service_password"}
    relation = testing.Relation("identity-service", remote_units_data={0: partial})

    out = ctx.run(
        ctx.on.relation_changed(relation, remote_unit=0),
        testing.State(leader=True, config={"run": True}, relations=[relation]),
    )

    assert not machine.paths.identity.exists()
    assert not machine.paths.cron_file.exists()
    assert out.unit_status == testing.WaitingStatus(
        "Waiting for keystone to send service credentials on identity-service"
    )


def test_keystone_v2_blocks(ctx, machine):
    relation = testing.Relation("identity-service", remote_units_data={0: {**KEYSTONE_V3, "api_version": "2.0"}})

    out = ctx.run(ctx.on.relation_changed(relation, remote_unit=0), testing.State(leader=True, relations=[relation]))

    assert out.unit_status == testing.BlockedStatus(
        "Keystone offers API v2.0, the sync needs v3: juju config keystone preferred-api-version=3"
    )
    assert not machine.paths.identity.exists()


def test_missing_identity_relation_blocks_with_the_command_to_run(ctx):
    out = ctx.run(ctx.on.config_changed(), testing.State(leader=True))

    assert out.unit_status == testing.BlockedStatus(
        "Missing relation: juju integrate glance-simplestreams-sync:identity-service keystone:identity-service"
    )


def test_relation_broken_removes_credentials_and_cron(ctx, keystone, machine):
    ctx.run(ctx.on.config_changed(), testing.State(leader=True, config={"run": True}, relations=[keystone]))
    assert machine.paths.identity.exists() and machine.paths.cron_file.exists()

    out = ctx.run(
        ctx.on.relation_broken(keystone), testing.State(leader=True, config={"run": True}, relations=[keystone])
    )

    assert not machine.paths.identity.exists()
    assert not machine.paths.cron_file.exists()
    assert out.unit_status.name == "blocked"
