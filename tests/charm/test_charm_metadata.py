"""The charm's YAML files parse, and ops.testing loads them from the repository root."""

from pathlib import Path

import yaml
from ops import testing

from charm import GlanceSimplestreamsSyncCharm
from simplestreams_sync.config import DEFAULT_MIRROR_LIST, SyncConfig, SyncOptions
from sync_charm.config import CharmConfig

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())


BASE_PYTHONS = {"22.04": "3.10", "24.04": "3.12"}


def test_charmcraft_yaml_builds_for_every_base_of_the_classic_charm_with_a_venv():
    charmcraft = _load("charmcraft.yaml")
    assert charmcraft["type"] == "charm"
    assert "base" not in charmcraft  # each platform names its base
    assert set(charmcraft["platforms"]) == {
        f"ubuntu@{base}:{arch}" for base in BASE_PYTHONS for arch in ("amd64", "arm64")
    }
    part = charmcraft["parts"]["charm"]
    assert part["plugin"] in ("python", "uv")
    assert part["python-requirements"] == [f"requirements-charm-{base}.txt" for base in BASE_PYTHONS]
    assert not {"name", "summary", "description"} & set(charmcraft)  # they live in metadata.yaml


def test_metadata_declares_the_relations():
    metadata = _load("metadata.yaml")
    assert metadata["name"] == "glance-simplestreams-sync"
    assert metadata["requires"]["identity-service"]["interface"] == "keystone"
    assert metadata["requires"]["certificates"]["interface"] == "tls-certificates"
    assert metadata["requires"]["receive-ca-cert"]["interface"] == "certificate_transfer"
    provides = metadata["provides"]
    assert provides["simplestreams-image-service"]["interface"] == "glance-simplestreams-sync"
    assert provides["image-modifier"] == {"interface": "script-provider", "scope": "container"}
    assert provides["nrpe-external-master"] == {"interface": "nrpe-external-master", "scope": "container"}


def test_config_yaml_has_every_option_of_the_model():
    options = _load("config.yaml")["options"]
    assert {name.replace("-", "_") for name in options} == set(CharmConfig.model_fields)


def test_config_yaml_defaults_are_valid_and_match_the_model():
    options = _load("config.yaml")["options"]
    defaults = {name.replace("-", "_"): option["default"] for name, option in options.items()}
    assert CharmConfig(**defaults) == CharmConfig()
    assert yaml.safe_load(options["mirror_list"]["default"]) == DEFAULT_MIRROR_LIST


def test_every_sync_option_reaches_mirrors_yaml():
    assert set(SyncOptions.model_fields) <= set(SyncConfig.model_fields)
    assert set(SyncOptions.model_fields) <= set(CharmConfig.model_fields)


def test_default_mirror_list_is_the_last_four_lts_releases():
    (mirror,) = CharmConfig().mirror_list
    assert mirror.url == "http://cloud-images.ubuntu.com/releases/"
    assert mirror.path == "streams/v1/index.sjson"
    assert mirror.max == 1
    assert mirror.item_filters == [
        "release~(focal|jammy|noble|resolute)",
        "arch~(x86_64|amd64)",
        "ftype~(disk1.img|disk.img)",
    ]


def test_actions_yaml_declares_sync_images_with_dry_run():
    action = _load("actions.yaml")["sync-images"]
    assert action["params"]["dry-run"]["type"] == "boolean"


def test_context_autoloads_the_real_metadata():
    ctx = testing.Context(GlanceSimplestreamsSyncCharm)
    state = testing.State.from_context(ctx)
    assert state.config["frequency"] == "daily"
    assert state.config["use-internal-endpoints"] is False
    assert {relation.endpoint for relation in state.relations} == {
        "identity-service",
        "certificates",
        "receive-ca-cert",
        "simplestreams-image-service",
        "image-modifier",
        "nrpe-external-master",
        "cos-agent",
    }


def _names(requirements_file: str) -> set[str]:
    names = set()
    for line in (ROOT / requirements_file).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            name = line.split(";")[0].split("==")[0].split(">=")[0].split("[")[0]
            names.add(name.strip().lower().replace("_", "-"))
    return names


def test_each_base_lock_is_flat_covers_requirements_txt_and_installs_on_its_python_only():
    """Charmcraft's python plugin installs with --no-deps: every direct dependency must be pinned there;
    it installs both files, so each line must name its base's Python."""
    for base, python in BASE_PYTHONS.items():
        lock = f"requirements-charm-{base}.txt"
        pinned = [line for line in (ROOT / lock).read_text().splitlines() if line and not line.startswith("#")]
        assert all(line.endswith(f' ; python_version == "{python}"') and "==" in line for line in pinned), lock
        assert _names("requirements.txt") <= _names(lock)


def test_the_runtime_requirements_hold_no_test_only_package():
    assert "python-keystoneclient" not in _names("requirements.txt")
    assert "python-keystoneclient" in _names("requirements-test.txt")
