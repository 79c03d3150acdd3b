"""TLS end to end: Keystone, Glance and Swift over HTTPS with a throw-away CA (LocalCloud(tls=True)).

The sync must trust exactly the CA it is given in identity.yaml's `ca_file` (the charm writes it from
vault's `certificates` relation, the `receive-ca-cert` relation or the `ssl_ca` option), and refuse a
cloud whose certificate does not chain to it: with another CA, and with no ca_file at all (the
throw-away CA is in no trust store).
"""

from __future__ import annotations

import base64
import json
import re
import ssl

import glanceclient
import pytest
import requests
import yaml
from ops import testing

from charm import GlanceSimplestreamsSyncCharm
from simplestreams_sync.config import IdentityConfig
from simplestreams_sync.openstack import Cloud, CloudError
from tests.functional.conftest import SyncRunner, created_ids, keystone_relation, our_images, published_image_ids
from tests.localcloud.cloud import LocalCloud, make_tls_files

pytestmark = pytest.mark.functional

HTTPS = {"service_protocol": "https", "auth_protocol": "https", "internal_protocol": "https"}


@pytest.fixture(scope="module")
def wrong_ca(tmp_path_factory):
    """Another throw-away CA: a valid CA, but not the one the cloud's certificate chains to."""
    return make_tls_files(tmp_path_factory.mktemp("wrong-ca"), "Wrong").ca


@pytest.fixture
def tls_glance(tls_cloud):
    return glanceclient.Client("2", session=tls_cloud.admin_session())


@pytest.fixture
def tls_sync(tmp_path, tls_cloud, test_key, request):
    """A SyncRunner against the TLS cloud, given its CA in identity.yaml's ca_file."""
    test_name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")
    runner = SyncRunner(
        tmp_path / "sync",
        tls_cloud,
        test_key.keyring,
        f"tls.{test_name}.{{region}}",
        identity_override={**tls_cloud.sync_identity, "ca_file": str(tls_cloud.ca_file)},
    )
    runner.workdir.mkdir()
    return runner


def products_url(cloud: LocalCloud, content_id: str) -> str:
    return f"{cloud.swift_url}/simplestreams/data/streams/v1/{content_id}.json"


def read_products(cloud: LocalCloud, content_id: str) -> requests.Response:
    """The products file in Swift, read anonymously as Juju would, trusting the cloud's CA."""
    return requests.get(products_url(cloud, content_id), timeout=10, verify=str(cloud.ca_file))


def test_the_cloud_serves_https_only_with_its_throw_away_ca(tls_cloud):
    for url in (tls_cloud.auth_url, tls_cloud.glance_url, tls_cloud.swift_url):
        assert url.startswith("https://127.0.0.1:")
        with pytest.raises(requests.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
            requests.get(url, timeout=10)  # requests' default trust (certifi, or REQUESTS_CA_BUNDLE): no
    session = tls_cloud.sync_session()
    assert session.get_endpoint(service_type="image", interface="public").rstrip("/") == tls_cloud.glance_url
    internal_swift = tls_cloud.swift_url.replace("://127.0.0.1:", "://localhost:")  # the cert names both
    assert session.get_endpoint(service_type="object-store", interface="internal") == internal_swift


def test_sync_over_tls_with_the_ca(source, tls_sync, tls_cloud, tls_glance):
    source.add_image(release="noble", version="24.04", serial="20261201", seed=300)
    source.write()

    result = tls_sync.run([tls_sync.mirror(source.url)])

    assert result.returncode == 0, result.stderr
    (image,) = our_images(tls_glance, tls_sync.content_id)
    assert image["status"] == "active"
    assert created_ids(result.stdout) == [image["id"]]
    metadata_url = f"{tls_cloud.swift_url}/simplestreams/data"
    assert metadata_url.startswith("https://")
    assert f"published metadata for 1 images to {metadata_url}" in result.stdout
    response = read_products(tls_cloud, tls_sync.content_id)
    assert response.status_code == 200
    assert published_image_ids(response.json()) == {image["id"]}
    last_sync = json.loads((tls_sync.state_dir / "last-sync.json").read_text())
    assert last_sync["metadata_url"] == metadata_url


@pytest.mark.parametrize("ca", ["wrong", "none", "missing"])
def test_sync_refuses_a_cloud_its_ca_does_not_vouch_for(
    ca, source, tls_sync, tls_cloud, tls_glance, wrong_ca, tmp_path
):
    source.add_image(release="noble", version="24.04", serial="20261202", seed=301)
    source.write()
    identity = dict(tls_cloud.sync_identity)  # "none": no ca_file, the machine's trust store
    if ca == "wrong":
        identity["ca_file"] = str(wrong_ca)
    elif ca == "missing":
        identity["ca_file"] = str(tmp_path / "no-such-ca.pem")
    tls_sync.identity_override = identity

    result = tls_sync.run([tls_sync.mirror(source.url)])

    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    (error,) = [line for line in result.stderr.splitlines() if tls_cloud.auth_url in line]
    assert error.startswith(f"error: keystone {tls_cloud.auth_url}: "), error
    expected = {
        "wrong": f"TLS certificate verify failed: unable to get local issuer certificate "
        f"(trusting the CAs in ca_file {wrong_ca})",
        "none": "TLS certificate verify failed: unable to get local issuer certificate "
        "(trusting the system's CAs (no ca_file))",
        "missing": f"Could not find a suitable TLS CA certificate bundle, invalid path: {tmp_path}/no-such-ca.pem",
    }[ca]
    assert error.endswith(expected), error
    assert tls_cloud.sync_identity["password"] not in result.stdout + result.stderr
    assert created_ids(result.stdout) == []
    assert our_images(tls_glance, tls_sync.content_id) == []
    # as the account's owner: the public container may not exist yet when this test runs alone
    owner = tls_cloud.sync_session()
    assert owner.get(products_url(tls_cloud, tls_sync.content_id), raise_exc=False).status_code == 404


def test_without_ca_file_the_sync_trusts_the_machines_store(tls_cloud, monkeypatch):
    """No ca_file: the machine's store (OpenSSL's default CA file, which update-ca-certificates keeps),
    not certifi's bundle that requests would use. Here the throw-away CA is made OpenSSL's default."""
    identity = IdentityConfig(**tls_cloud.sync_identity)
    with pytest.raises(CloudError, match="certificate verify failed"):
        Cloud(identity)
    default_paths = ssl.get_default_verify_paths()
    monkeypatch.setattr(
        ssl, "get_default_verify_paths", lambda: default_paths._replace(openssl_cafile=str(tls_cloud.ca_file))
    )

    cloud = Cloud(identity)

    assert cloud.project_id == tls_cloud.services_project_id
    assert cloud.endpoint("image").rstrip("/") == tls_cloud.glance_url


@pytest.mark.parametrize("given_by", ["vault", "receive-ca-cert", "ssl_ca"])
def test_charm_syncs_over_tls_with_the_ca_from(given_by, charm_machine, tls_cloud, source, test_key, tls_glance):
    """The charm's path: the CA from vault's certificates relation, from a certificate_transfer provider
    (self-signed-certificates, vault 1.16+) on receive-ca-cert, or the ssl_ca option, written to
    ca-bundle.pem, which identity.yaml's ca_file names (the machine's trust store is not updated here:
    charm_machine makes update-ca-certificates a no-op)."""
    source.add_image(release="noble", version="24.04", serial="20261203", seed=302)
    source.write()
    ca_pem = tls_cloud.ca_file.read_text()
    content_id_template = f"charm.tls.{given_by.replace('_', '-')}.{{region}}"
    config = {
        "mirror_list": yaml.safe_dump([source_mirror(source.url)]),
        "custom_keyring": base64.b64encode(test_key.keyring.read_bytes()).decode(),
        "region": tls_cloud.sync_identity["region"],
        "content_id_template": content_id_template,
    }
    keystone = keystone_relation(tls_cloud, **HTTPS)
    relations = [keystone]
    if given_by == "vault":
        relations.append(
            testing.Relation(
                "certificates",
                remote_app_name="vault",
                remote_units_data={
                    0: {
                        "ca": ca_pem,
                        "glance-simplestreams-sync_0.processed_requests": json.dumps(
                            {"juju-0": {"cert": "x", "key": "y"}}
                        ),
                    }
                },
            )
        )
    elif given_by == "receive-ca-cert":
        relations.append(
            testing.Relation(
                "receive-ca-cert",
                remote_app_name="self-signed-certificates",
                remote_app_data={"certificates": json.dumps([ca_pem]), "version": "1"},
            )
        )
    else:
        config["ssl_ca"] = base64.b64encode(ca_pem.encode()).decode()
    ctx = testing.Context(GlanceSimplestreamsSyncCharm)

    out = ctx.run(ctx.on.action("sync-images"), testing.State(leader=True, config=config, relations=relations))

    identity = yaml.safe_load(charm_machine.identity.read_text())
    assert identity["auth_url"] == tls_cloud.auth_url and identity["auth_url"].startswith("https://")
    assert identity["ca_file"] == str(charm_machine.ca_bundle)
    assert charm_machine.ca_bundle.read_text() == ca_pem
    content_id = content_id_template.format(region=tls_cloud.sync_identity["region"])
    (image,) = our_images(tls_glance, content_id)
    assert image["status"] == "active"
    assert ctx.action_results["created-count"] == 1
    assert published_image_ids(read_products(tls_cloud, content_id).json()) == {image["id"]}
    request = out.get_relation(keystone.id).local_unit_data
    assert request["public_url"] == f"{tls_cloud.swift_url}/simplestreams/data"
    assert request["public_url"].startswith("https://")


def source_mirror(url: str) -> dict:
    return {
        "url": url,
        "path": "streams/v1/index.sjson",
        "max": 1,
        "item_filters": ["release~(noble)", "arch~(x86_64|amd64)", "ftype~(disk1.img|disk.img)"],
    }
