"""early_login: what a run sends before it loads anything heavy is what the full load would send."""

from simplestreams_sync import api, early_login
from simplestreams_sync.config import IdentityConfig, SyncConfig, SyncOptions

CATALOG = [
    {"type": "identity", "endpoints": [{"interface": "public", "region_id": "RegionOne", "url": "http://ks/v3"}]},
    {
        "type": "image",
        "endpoints": [
            {"interface": "internal", "region_id": "RegionOne", "url": "http://glance.internal:9292"},
            {"interface": "public", "region_id": "RegionTwo", "url": "http://glance.two:9292/v2/"},
            {"interface": "public", "region_id": "RegionOne", "url": "http://glance.one:9292/"},
        ],
    },
]


def test_the_defaults_of_what_it_sends_are_the_configs():
    identity = IdentityConfig.model_fields
    for name, default in early_login.FIELDS.items():
        assert (None if identity[name].is_required() else identity[name].default) == default, name
    defaults = {
        "region": identity["region"].default,
        "interface": identity["interface"].default,
        "content_id_template": SyncOptions.model_fields["content_id_template"].default,
    }
    assert defaults == early_login.LISTING_DEFAULTS
    assert SyncOptions.model_fields["region"].default == early_login.LISTING_DEFAULTS["region"]
    sync_config = SyncConfig.model_fields
    assert {name: sync_config[name].default for name in early_login.DIRECT_TO_SWIFT} == early_login.DIRECT_TO_SWIFT


def test_an_endpoint_is_found_in_the_catalog_for_the_region_and_interface_without_a_trailing_slash():
    assert early_login.catalog_url(CATALOG, "image", "RegionOne", "public") == "http://glance.one:9292"
    assert early_login.catalog_url(CATALOG, "image", "RegionTwo", "public") == "http://glance.two:9292/v2"
    assert early_login.catalog_url(CATALOG, "image", "RegionOne", "internal") == "http://glance.internal:9292"
    assert early_login.catalog_url(CATALOG, "image", "RegionOne", "admin") is None
    assert early_login.catalog_url(CATALOG, "object-store", "RegionOne", "public") is None


def test_a_login_is_the_same_request_only_with_the_same_url_body_and_trust():
    body = api.password_login("sync", "Default", "secret", "services", "Default")
    key = early_login.login_key("http://ks/v3/auth/tokens", body, "/etc/ca.pem")

    assert key == early_login.login_key("http://ks/v3/auth/tokens", dict(reversed(body.items())), "/etc/ca.pem")
    assert key != early_login.login_key("http://ks/v3/auth/tokens", body, True)
    other = api.password_login("sync", "Default", "other", "services", "Default")
    assert key != early_login.login_key("http://ks/v3/auth/tokens", other, "/etc/ca.pem")


def test_nothing_is_sent_for_an_identity_file_without_what_a_login_needs(tmp_path):
    identity = tmp_path / "identity.yaml"
    identity.write_text("auth_url: http://127.0.0.1:1/v3\nusername: sync\n")  # no password, no project
    body = api.password_login("sync", "Default", "", "", "Default")

    early_login.start(str(identity), {})

    assert early_login.login_answer(early_login.login_key("http://127.0.0.1:1/v3/auth/tokens", body, True)) is None
    assert early_login.listing("http://127.0.0.1:1/v2/images", "token") is None


def test_a_content_id_template_that_does_not_format_lists_nothing_early():
    identity = {**early_login.LISTING_DEFAULTS}

    assert early_login.listing_place(identity, {"content_id_template": "{cloud}"}) is None
    assert early_login.listing_place(identity, {"content_id_template": "{region.nope}"}) is None
    assert early_login.listing_place(identity, {"region": 3}) is None
    assert early_login.listing_place(identity, {"region": "RegionTwo", "content_id_template": "x.{region}"}) == (
        "RegionOne",
        "public",
        "x.RegionTwo",
    )
