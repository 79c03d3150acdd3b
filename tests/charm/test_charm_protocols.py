"""The relation protocol modules on their own: pure functions of relation data."""

import base64
import json

from sync_charm import certificates, identity_service
from tests.charm.relation_data import CA_PEM, CHAIN_PEM, KEYSTONE_V3


def test_request_names_each_interfaces_url_without_the_trailing_slash():
    urls = {
        "public": "https://swift.public:443/v1/AUTH_x/simplestreams/data/",
        "internal": "https://swift.internal:443/v1/AUTH_x/simplestreams/data",
        "admin": "https://swift.admin:443/v1/AUTH_x/simplestreams/data/",
    }
    request = identity_service.request("RegionOne", urls)
    assert request == {
        "service": "image-stream",
        "region": "RegionOne",
        "public_url": "https://swift.public:443/v1/AUTH_x/simplestreams/data",
        "internal_url": "https://swift.internal:443/v1/AUTH_x/simplestreams/data",
        "admin_url": "https://swift.admin:443/v1/AUTH_x/simplestreams/data",
    }


def test_placeholder_url_brackets_ipv6():
    assert identity_service.placeholder_url("10.0.0.5") == "http://10.0.0.5"
    assert identity_service.placeholder_url("fd00::5") == "http://[fd00::5]"


def test_credentials_need_every_required_key():
    for missing in identity_service.REQUIRED_KEYS:
        data = {key: value for key, value in KEYSTONE_V3.items() if key != missing}
        assert identity_service.read_credentials([data]) is None


def test_first_complete_unit_answers():
    credentials = identity_service.read_credentials([{"service_host": "10.0.0.1"}, KEYSTONE_V3])
    assert credentials.auth_url("public") == "https://10.5.0.10:5000/v3"
    assert credentials.auth_url("admin") == "https://10.5.0.11:35357/v3"
    assert credentials.v3


def test_v2_keystone_is_recognised():
    credentials = identity_service.read_credentials([{**KEYSTONE_V3, "api_version": "2.0"}])
    assert not credentials.v3
    assert credentials.auth_url("public") == "https://10.5.0.10:5000/v2.0"


def test_ipv6_keystone_host():
    credentials = identity_service.read_credentials([{**KEYSTONE_V3, "service_host": "fd00::10"}])
    assert credentials.auth_url("public") == "https://[fd00::10]:5000/v3"


def test_keystone_ca_cert_is_decoded():
    data = {**KEYSTONE_V3, "ca_cert": base64.b64encode(CA_PEM.encode()).decode()}
    assert identity_service.read_credentials([data]).ca_cert == CA_PEM


def test_certificate_request():
    request = certificates.request("gss/1", "juju-1", ["10.0.0.7", "10.0.0.7"])
    assert request == {"unit_name": "gss_1", "cert_requests": json.dumps({"juju-1": {"sans": ["10.0.0.7"]}})}


def test_vault_ca_without_chain():
    assert certificates.read_ca_certificates([{}, {"ca": CA_PEM}]) == [CA_PEM]


def test_vault_chain_is_split_and_deduplicated():
    data = {"ca": CA_PEM, "chain": CHAIN_PEM + CA_PEM}
    assert certificates.read_ca_certificates([data]) == [CA_PEM, CHAIN_PEM]


def test_no_ca_yet():
    assert certificates.read_ca_certificates([{"unit_name": "x"}]) == []
