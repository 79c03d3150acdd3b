"""Invalid options block the unit with a message naming the option, and change nothing on the machine."""

import base64

import pytest
import yaml
from ops import testing

from simplestreams_sync.config import load_sync_config

INVALID = [  # each option and the whole of what the status says of it after `Invalid config: `
    pytest.param(
        {"mirror_list": "[{url: http://a, item_filters: [x]"},
        "mirror_list: not valid YAML: expected ',' or '}', but got '<stream end>' at line 1, column 35",
        id="malformed-yaml",
    ),
    pytest.param(
        {"mirror_list": "url: http://a"},
        "mirror_list: must be a YAML list of mirrors, e.g. [{url: ..., item_filters: [...]}]",
        id="not-a-list",
    ),
    pytest.param(
        {"mirror_list": "[{path: streams/v1/index.sjson}]"},
        "mirror_list[0].url: Field required",
        id="entry-without-url",
    ),
    pytest.param(
        {"mirror_list": "[{url: http://a/, item_filters: ['release~(jammy']}]"},
        "mirror_list[0].item_filters: item_filters entry 'release~(jammy': missing ), unterminated subpattern at "
        "position 0",
        id="bad-regex",
    ),
    pytest.param(
        {"mirror_list": "[{url: http://a/, max: 0}]"},
        "mirror_list[0].max: Input should be greater than or equal to 1 (got 0)",
        id="max-below-1",
    ),
    pytest.param(
        {"mirror_list": "[]"}, "mirror_list: List should have at least 1 item after validation, not 0", id="no-mirrors"
    ),
    pytest.param(
        {"frequency": "monthly"},
        "frequency: Input should be 'hourly', 'daily' or 'weekly' (got 'monthly')",
        id="unknown-frequency",
    ),
    pytest.param(
        {"visibility": "everyone"},
        "visibility: Input should be 'public', 'private', 'community' or 'shared' (got 'everyone')",
        id="unknown-visibility",
    ),
    pytest.param(
        {"custom_properties": "hw_firmware_type=uefi broken"},
        "custom_properties: 'broken' is not key=value (expected space-separated key=value pairs)",
        id="property-without-equals",
    ),
    pytest.param(
        {"content_id_template": "auto.sync.{region}.{zone}"},
        "content_id_template: 'auto.sync.{region}.{zone}' may only use {region}, not ['zone']",
        id="template-keys",
    ),
    pytest.param({"ssl_ca": "not base64!"}, "ssl_ca: not valid base64", id="ssl-ca-bad-base64"),
    pytest.param(
        {"ssl_ca": base64.b64encode(b"hello").decode()},
        "ssl_ca: does not decode to a PEM certificate (-----BEGIN CERTIFICATE-----)",
        id="ssl-ca-not-pem",
    ),
    pytest.param({"custom_keyring": "%%%"}, "custom_keyring: not valid base64", id="keyring-bad-base64"),
    pytest.param(
        {"max_parallel": 0}, "max_parallel: Input should be greater than or equal to 1 (got 0)", id="max-parallel-0"
    ),
]


@pytest.mark.parametrize("options, message", INVALID)
def test_invalid_option_blocks_naming_it(ctx, keystone, options, message):
    state = testing.State(leader=True, config=options, relations=[keystone])

    out = ctx.run(ctx.on.config_changed(), state)

    assert out.unit_status == testing.BlockedStatus(f"Invalid config: {message}")


@pytest.mark.parametrize("options, message", INVALID)
def test_invalid_option_writes_no_file_on_a_fresh_machine(ctx, keystone, machine, options, message):
    state = testing.State(leader=True, config={"run": True, **options}, relations=[keystone])

    ctx.run(ctx.on.config_changed(), state)

    assert machine.snapshot() == {}
    assert machine.background_syncs == []


@pytest.mark.parametrize("options, message", INVALID)
def test_invalid_option_rewrites_no_file_and_no_cron_entry(ctx, keystone, machine, options, message):
    ctx.run(ctx.on.config_changed(), testing.State(leader=True, config={"run": True}, relations=[keystone]))
    before = machine.snapshot()
    assert "etc/cron.d/glance-simplestreams-sync" in before

    ctx.run(
        ctx.on.config_changed(),
        testing.State(leader=True, config={"run": True, "frequency": "hourly", **options}, relations=[keystone]),
    )

    assert machine.snapshot() == before


def test_options_are_converted_into_mirrors_yaml(ctx, machine):
    keyring = b"\x99\x01\x0d\x04binary-gpg-keyring"
    config = {
        "mirror_list": "[{url: 'https://mirror.example/releases/', name_prefix: 'ubuntu:released/', "
        "path: streams/v1/index.json, max: 2, item_filters: ['release~noble']}]",
        "custom_properties": "hw_firmware_type=uefi hw_vif_multiqueue_enabled=true",
        "custom_keyring": base64.b64encode(keyring).decode(),
        "visibility": "community",
        "region": "RegionTwo",
        "content_id_template": "com.example.{region}",
        "user_agent": "my-agent/1.0",
        "cloud_name": "prod",
        "name_prefix": "synced/",
        "set_latest_property": True,
        "hypervisor_mapping": True,
        "image_import_conversion": True,
        "use_swift": False,
        "ignore_proxy_for_object_store": False,
        "max_parallel": 4,
    }

    ctx.run(ctx.on.config_changed(), testing.State(leader=True, config=config))

    sync = load_sync_config(machine.paths.mirrors)
    (mirror,) = sync.mirror_list
    assert (mirror.url, mirror.name_prefix, mirror.path, mirror.max, mirror.item_filters) == (
        "https://mirror.example/releases/",
        "ubuntu:released/",
        "streams/v1/index.json",
        2,
        ["release~noble"],
    )
    assert sync.custom_properties == {"hw_firmware_type": "uefi", "hw_vif_multiqueue_enabled": "true"}
    assert (sync.visibility, sync.region, sync.content_id, sync.user_agent, sync.cloud_name, sync.name_prefix) == (
        "community",
        "RegionTwo",
        "com.example.RegionTwo",
        "my-agent/1.0",
        "prod",
        "synced/",
    )
    assert sync.set_latest_property and sync.hypervisor_mapping and sync.image_import_conversion
    assert not sync.use_swift and not sync.ignore_proxy_for_object_store
    assert sync.max_parallel == 4
    assert sync.state_dir == str(machine.paths.state_dir)
    assert sync.keyring == str(machine.paths.keyring)
    assert machine.paths.keyring.read_bytes() == keyring
    assert machine.sync_readable(machine.paths.keyring)


def test_default_config_renders_the_default_mirrors(ctx, machine):
    ctx.run(ctx.on.config_changed(), testing.State())

    sync = load_sync_config(machine.paths.mirrors)
    assert [mirror.url for mirror in sync.mirror_list] == ["http://cloud-images.ubuntu.com/releases/"]
    assert sync.name_prefix == "auto-sync/"
    assert sync.keyring == "/usr/share/keyrings/ubuntu-cloudimage-keyring.gpg"
    assert sync.modify_hook is None
    assert machine.sync_readable(machine.paths.mirrors)


def test_strings_that_look_like_yaml_survive_rendering(ctx, machine):
    config = {"name_prefix": "auto: sync # {x}", "cloud_name": "yes", "custom_properties": "a='b' c=\"d\""}

    ctx.run(ctx.on.config_changed(), testing.State(config=config))

    sync = load_sync_config(machine.paths.mirrors)
    assert (sync.name_prefix, sync.cloud_name) == ("auto: sync # {x}", "yes")
    assert sync.custom_properties == {"a": "'b'", "c": '"d"'}


def test_removing_custom_keyring_goes_back_to_the_default(ctx, machine):
    ctx.run(ctx.on.config_changed(), testing.State(config={"custom_keyring": base64.b64encode(b"k").decode()}))

    ctx.run(ctx.on.config_changed(), testing.State(config={"custom_keyring": ""}))

    assert not machine.paths.keyring.exists()
    assert yaml.safe_load(machine.paths.mirrors.read_text())["keyring"].endswith("ubuntu-cloudimage-keyring.gpg")
