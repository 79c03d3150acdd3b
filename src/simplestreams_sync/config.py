"""The two files the sync reads: mirrors.yaml (what to mirror) and identity.yaml (where to).

The charm renders both; the models here are the single definition of what is valid, so the charm
validates its options with the same classes the sync uses to read them.
"""

from __future__ import annotations

import re
import string
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from . import metadata_layout
from ._simplestreams import filters as ss_filters
from .state import DEFAULT_STATE_DIR
from .yaml_file import read_yaml

DEFAULT_KEYRING = "/usr/share/keyrings/ubuntu-cloudimage-keyring.gpg"
DEFAULT_NAME_PREFIX = "auto-sync/"
DEFAULT_CONTENT_ID_TEMPLATE = "auto.sync"
DEFAULT_USER_AGENT = "glance-simplestreams-sync"


class ConfigError(Exception):
    """A config file or option is invalid; the message names which and why."""


class MirrorSpec(BaseModel):
    """One entry of `mirror_list`."""

    model_config = ConfigDict(extra="forbid")

    url: str
    path: str = "streams/v1/index.sjson"
    # Accepted because the classic charm's mirror_list (and the deployment guide's) has it; like the
    # classic charm, it names nothing: images are named with the global name_prefix.
    name_prefix: str | None = None
    image_name_prefix: str | None = None  # the explicit opt-in to name this mirror's images differently
    max: int = Field(default=1, ge=1)
    item_filters: list[str] = Field(default_factory=list)
    keyring: str | None = None  # overrides the global keyring for this mirror

    @field_validator("url")
    @classmethod
    def _url_scheme(cls, url: str) -> str:
        if not re.match(r"^(https?|file)://", url):
            raise ValueError(f"url {url!r} must start with http://, https:// or file://")
        return url

    @field_validator("item_filters")
    @classmethod
    def _filters_parse(cls, item_filters: list[str]) -> list[str]:
        for expression in item_filters:
            try:
                ss_filters.get_filters([expression])
            except (ValueError, re.error) as error:
                raise ValueError(f"item_filters entry {expression!r}: {error}") from None
        return item_filters

    @property
    def signed(self) -> bool:
        """A `.json` path is the operator's explicit choice of an unsigned source."""
        return not self.path.endswith(".json")


class ProxySettings(BaseModel):
    """The Juju model's proxy settings; they apply to the image source only."""

    model_config = ConfigDict(extra="forbid")

    http: str | None = None
    https: str | None = None
    no_proxy: str | None = None

    def for_requests(self) -> dict[str, str]:
        proxies = {"http": self.http, "https": self.https, "no_proxy": self.no_proxy}
        return {scheme: url for scheme, url in proxies.items() if url}


# The latest official amd64 image of each of the last four Ubuntu LTS releases (20.04, 22.04, 24.04, 26.04).
DEFAULT_MIRROR_LIST = [
    {
        "url": "http://cloud-images.ubuntu.com/releases/",
        "path": "streams/v1/index.sjson",
        "max": 1,
        "item_filters": ["release~(focal|jammy|noble|resolute)", "arch~(x86_64|amd64)", "ftype~(disk1.img|disk.img)"],
    }
]


class SyncOptions(BaseModel):
    """The options that shape a sync run: each is a charm option (config.yaml) and a key of mirrors.yaml.
    The charm's options (sync_charm.config.CharmConfig) and mirrors.yaml (SyncConfig) both extend this."""

    model_config = ConfigDict(extra="forbid")

    mirror_list: list[MirrorSpec] = Field(default=DEFAULT_MIRROR_LIST, validate_default=True, min_length=1)
    name_prefix: str = DEFAULT_NAME_PREFIX
    content_id_template: str = DEFAULT_CONTENT_ID_TEMPLATE
    region: str = "RegionOne"
    cloud_name: str = "glance-simplestreams-sync-openstack"
    user_agent: str = DEFAULT_USER_AGENT
    visibility: Literal["public", "private", "community", "shared"] = "public"
    custom_properties: dict[str, str] = Field(default_factory=dict)
    set_latest_property: bool = False
    hypervisor_mapping: bool = False
    image_import_conversion: bool = False
    use_swift: bool = True
    ignore_proxy_for_object_store: bool = True
    max_parallel: int = Field(default=4, ge=1, le=16)

    @field_validator("content_id_template")
    @classmethod
    def _template_keys(cls, template: str) -> str:
        try:
            keys = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
        except ValueError as error:
            raise ValueError(f"{template!r} is not a valid template: {error}") from None
        if keys - {"region"}:
            raise ValueError(f"{template!r} may only use {{region}}, not {sorted(keys - {'region'})}")
        return template

    def sync_options(self) -> dict:
        """The values of the shared options only (a subclass adds its own)."""
        return {name: getattr(self, name) for name in SyncOptions.model_fields}


class LocalMetadata(BaseModel):
    """Where the sync writes the metadata when the unit serves it itself, and the URL it is served at."""

    model_config = ConfigDict(extra="forbid")

    directory: str  # what a web server serves at `url`: streams/v1/index.json and the products files
    url: str  # ends with /simplestreams/data, as the Swift layout

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not re.match(r"^https?://", url):
            raise ValueError(f"url {url!r} must start with http:// or https://")
        return url.rstrip("/")


class SyncConfig(SyncOptions):
    """mirrors.yaml: the shared options, and what only the charm's machine knows."""

    keyring: str = DEFAULT_KEYRING
    state_dir: str = DEFAULT_STATE_DIR
    # The image-modifier's command, run on a local copy of each image: its script, or what runs the script
    # as root (`sudo -n -- script`); a single string is a script run as is.
    modify_hook: list[str] | None = None
    import_timeout: int = Field(default=1800, ge=10)  # seconds to wait for Glance's import (conversion)
    source_proxy: ProxySettings = Field(default_factory=ProxySettings)
    # The schedule cron runs the sync on: after a failed run, retries back off up to its period (retry.py).
    # None: no schedule, no retries.
    frequency: Literal["hourly", "daily", "weekly"] | None = None
    # When set, the metadata goes to this directory, served by the unit's web server, instead of Swift.
    local_metadata: LocalMetadata | None = None

    @field_validator("modify_hook", mode="before")
    @classmethod
    def _script_alone(cls, value: object) -> object:
        if isinstance(value, str):
            return [value] if value else None
        if isinstance(value, list) and not value:
            raise ValueError("an empty command runs nothing: leave modify_hook out instead")
        return value

    @property
    def publishes_metadata(self) -> bool:
        return metadata_layout.publishes_metadata(self.local_metadata is not None, self.use_swift)

    @property
    def publishes_to_swift(self) -> bool:
        return self.local_metadata is None and self.use_swift

    @property
    def content_id(self) -> str:
        return self.content_id_template.format(region=self.region)

    def prefix_for(self, mirror: MirrorSpec) -> str:
        """What a mirror's image names start with: the global name_prefix, as the classic charm names them,
        unless the mirror opts in with its own image_name_prefix."""
        return mirror.image_name_prefix if mirror.image_name_prefix is not None else self.name_prefix

    def keyring_for(self, mirror: MirrorSpec) -> str:
        return mirror.keyring or self.keyring

    def object_store_proxies(self) -> dict[str, str] | None:
        """The proxies for the object store: the source's, unless ignore_proxy_for_object_store."""
        return None if self.ignore_proxy_for_object_store else self.source_proxy.for_requests()


class IdentityConfig(BaseModel):
    """identity.yaml: how to reach Keystone (and through its catalog, Glance and Swift)."""

    model_config = ConfigDict(extra="forbid")

    auth_url: str
    username: str
    password: str = Field(repr=False)
    project_name: str
    user_domain_name: str = "Default"
    project_domain_name: str = "Default"
    region: str = "RegionOne"
    interface: Literal["public", "internal", "admin"] = "public"
    ca_file: str | None = None
    # The keystone URL the published metadata names (Juju matches it with its cloud's auth URL); default:
    # the catalog's public identity endpoint, whatever `interface` the sync uses.
    public_auth_url: str | None = None


def _format_validation_error(path: Path, error: ValidationError) -> str:
    problems = []
    for detail in error.errors():
        where = ".".join(str(part) for part in detail["loc"]) or "(top level)"
        problems.append(f"{where}: {detail['msg']}")
    return f"{path}: " + "; ".join(problems)


def _load_yaml(path: Path) -> dict:
    try:
        data = read_yaml(path)
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def _load_model(path: str | Path, model: type[BaseModel]):
    path = Path(path)
    try:
        return model.model_validate(_load_yaml(path))
    except ValidationError as error:
        raise ConfigError(_format_validation_error(path, error)) from None


def dump_yaml(model: BaseModel, header: str) -> str:
    """A config file's text from its model: `header` as comment lines, then the values as YAML."""
    comments = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    return comments + yaml.safe_dump(model.model_dump(mode="json"), sort_keys=False)


def load_sync_config(path: str | Path) -> SyncConfig:
    return _load_model(path, SyncConfig)


def load_identity(path: str | Path) -> IdentityConfig:
    return _load_model(path, IdentityConfig)
