"""A bundle written for the classic charm deploys unchanged: every option of the classic charm's
config.yaml (tests/data/classic-charm/config-options.yaml, its origin noted there) is declared here
with the same type and a compatible default, the classic values are accepted, and the options that mean
nothing here (snap-channel, source, key) are said to be ignored in the log when set."""

from pathlib import Path

import pytest
import yaml
from ops import testing

from simplestreams_sync.config import load_sync_config
from tests.charm.relation_data import METADATA_URL

ROOT = Path(__file__).resolve().parents[2]
CLASSIC = yaml.safe_load((ROOT / "tests/data/classic-charm/config-options.yaml").read_text())["options"]
OURS = yaml.safe_load((ROOT / "config.yaml").read_text())["options"]

# Defaults that differ on purpose: the releases mirrored without configuration are the current LTS ones.
DIFFERENT_DEFAULTS = {"mirror_list"}


def _empty_as_none(value):
    return None if value == "" else value


@pytest.mark.parametrize("name", sorted(CLASSIC))
def test_classic_option_is_declared_with_its_type_and_default(name):
    assert name in OURS, f"the classic charm's option {name} is not declared in config.yaml"
    assert OURS[name]["type"] == CLASSIC[name]["type"]
    if name not in DIFFERENT_DEFAULTS:
        assert _empty_as_none(OURS[name]["default"]) == _empty_as_none(CLASSIC[name]["default"])


def classic_defaults() -> dict:
    """What Juju hands a charm deployed with the classic options' defaults (null defaults are absent)."""
    return {name: option["default"] for name, option in CLASSIC.items() if option["default"] is not None}


def test_the_classic_defaults_are_a_valid_config(ctx, keystone, machine, fake_engine):
    fake_engine(metadata_url=METADATA_URL)  # answers the publish that keystone's credentials bring
    out = ctx.run(ctx.on.config_changed(), testing.State(leader=True, config=classic_defaults(), relations=[keystone]))

    assert out.unit_status.name != "blocked", out.unit_status.message
    sync = load_sync_config(machine.paths.mirrors)
    (mirror,) = sync.mirror_list
    assert mirror.item_filters[0] == "release~(trusty|xenial|bionic|focal|jammy)"
    assert sync.prefix_for(mirror) == "auto-sync/"  # its name_prefix 'ubuntu:released' names nothing
    assert [line for line in ctx.juju_log if line.level == "WARNING"] == []


def test_the_classic_bundle_option_snap_channel_deploys_and_is_said_to_do_nothing(ctx, keystone, machine, fake_engine):
    """The classic charm's own test bundle sets snap-channel: edge."""
    fake_engine(metadata_url=METADATA_URL)
    out = ctx.run(
        ctx.on.config_changed(), testing.State(leader=True, config={"snap-channel": "edge"}, relations=[keystone])
    )

    assert out.unit_status.name != "blocked", out.unit_status.message
    assert machine.paths.mirrors.exists()
    warnings = [line.message for line in ctx.juju_log if line.level == "WARNING"]
    assert warnings == ["option snap-channel='edge' has no effect: this charm installs no snap, the sync ships with it"]


@pytest.mark.parametrize("name", ["source", "key"])
def test_apt_source_options_are_accepted_and_said_to_do_nothing(ctx, keystone, machine, fake_engine, name):
    """The warning names the option, never its value (a key may be long, or private)."""
    fake_engine(metadata_url=METADATA_URL)
    value = "cloud:noble-caracal" if name == "source" else "-----BEGIN PGP PUBLIC KEY BLOCK-----secret"
    out = ctx.run(ctx.on.config_changed(), testing.State(leader=True, config={name: value}, relations=[keystone]))

    assert out.unit_status.name != "blocked", out.unit_status.message
    warnings = [line.message for line in ctx.juju_log if line.level == "WARNING"]
    assert warnings == [
        f"option {name} is set and has no effect: this charm adds no apt source "
        f"(unset it with: juju config <application> --reset {name})"
    ]
