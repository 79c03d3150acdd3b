"""The guide to switching from the classic charm, against the classic charm's options and this charm's."""

import re
from pathlib import Path

import yaml

from sync_charm.config import CharmConfig

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "how-to" / "migrate-from-classic.md"
CLASSIC_OPTIONS = ROOT / "tests" / "data" / "classic-charm" / "config-options.yaml"


def pasted_mirror_list() -> str:
    (value,) = re.findall(r'^juju config glance-simplestreams-sync mirror_list="(.*)"$', GUIDE.read_text(), re.M)
    return value


def test_the_mirror_list_to_paste_is_the_classic_default_character_for_character():
    classic_default = yaml.safe_load(CLASSIC_OPTIONS.read_text())["options"]["mirror_list"]["default"]

    assert pasted_mirror_list() == classic_default


def test_the_pasted_classic_default_is_valid_here_and_mirrors_trusty_to_jammy():
    (mirror,) = CharmConfig(mirror_list=pasted_mirror_list()).mirror_list

    assert mirror.item_filters[0] == "release~(trusty|xenial|bionic|focal|jammy)"
    assert (mirror.url, mirror.path, mirror.max) == (
        "http://cloud-images.ubuntu.com/releases/",
        "streams/v1/index.sjson",
        1,
    )


def test_the_guide_names_this_charms_default_releases():
    (mirror,) = CharmConfig().mirror_list
    releases = re.fullmatch(r"release~\((.*)\)", mirror.item_filters[0]).group(1).split("|")

    assert releases == ["focal", "jammy", "noble", "resolute"]
    assert "mirrors focal, jammy, noble and resolute" in " ".join(GUIDE.read_text().split())


def test_the_guide_names_a_charm_file_for_each_base_the_charm_declares():
    platforms = yaml.safe_load((ROOT / "charmcraft.yaml").read_text())["platforms"]
    text = GUIDE.read_text()

    for platform in platforms:
        base, arch = platform.split(":")
        if arch == "amd64":
            assert f"glance-simplestreams-sync_{base}-amd64.charm" in text
