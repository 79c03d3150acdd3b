"""The charm's options as a pydantic model, and their translation into the sync engine's mirrors.yaml.

Mirror entries and every option that ends up in mirrors.yaml are validated by the engine's own models
(`simplestreams_sync.config.MirrorSpec` / `SyncConfig`): this module only parses what Juju hands over
as strings (YAML list, `key=value` pairs, base64) and checks the options that exist only in the charm
(`frequency`, `run`, ...).
"""

from __future__ import annotations

import base64
import binascii
from typing import Literal

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from simplestreams_sync.config import DEFAULT_KEYRING, DEFAULT_STATE_DIR, MirrorSpec, SyncConfig

# The latest official amd64 image of each of the last four Ubuntu LTS releases (20.04, 22.04, 24.04,
# 26.04). config.yaml carries the same text as the option's default (a unit test keeps them equal).
DEFAULT_MIRROR_LIST = """\
- url: http://cloud-images.ubuntu.com/releases/
  path: streams/v1/index.sjson
  max: 1
  item_filters:
    - release~(focal|jammy|noble|resolute)
    - arch~(x86_64|amd64)
    - ftype~(disk1.img|disk.img)
"""


def _decode_base64(value: str) -> bytes:
    try:
        return base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not valid base64") from None


class CharmConfig(BaseModel):
    """The Juju options (dashes in option names become underscores, as `CharmBase.load_config` does)."""

    model_config = ConfigDict(frozen=True)

    mirror_list: list[MirrorSpec] = Field(default=DEFAULT_MIRROR_LIST, validate_default=True)
    run: bool = False
    frequency: Literal["hourly", "daily", "weekly"] = "daily"
    region: str = "RegionOne"
    cloud_name: str = "glance-simplestreams-sync-openstack"
    user_agent: str = "glance-simplestreams-sync"
    name_prefix: str = "auto-sync/"
    visibility: str = "public"  # validated by SyncConfig
    custom_properties: dict[str, str] = Field(default_factory=dict)
    set_latest_property: bool = False
    content_id_template: str = "auto.sync"  # validated by SyncConfig
    use_swift: bool = True
    ignore_proxy_for_object_store: bool = True
    use_internal_endpoints: bool = False
    ssl_ca: str | None = None  # the decoded PEM text
    custom_keyring: bytes | None = None  # the decoded keyring
    hypervisor_mapping: bool = False
    image_import_conversion: bool = False
    nagios_context: str = "juju"
    nagios_servicegroups: str = ""
    max_parallel: int = 4  # validated by SyncConfig

    @field_validator("mirror_list", mode="before")
    @classmethod
    def _parse_mirror_list(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        try:
            mirrors = yaml.safe_load(value)
        except yaml.YAMLError as error:
            problem = getattr(error, "problem", None) or " ".join(str(error).split())
            mark = getattr(error, "problem_mark", None)
            if mark is not None:
                problem += f" at line {mark.line + 1}, column {mark.column + 1}"
            raise ValueError(f"not valid YAML: {problem}") from None
        if not isinstance(mirrors, list):
            raise ValueError("must be a YAML list of mirrors, e.g. [{url: ..., item_filters: [...]}]")
        return mirrors

    @field_validator("custom_properties", mode="before")
    @classmethod
    def _parse_custom_properties(cls, value: object) -> object:
        if value is None:
            return {}
        if not isinstance(value, str):
            return value
        properties = {}
        for pair in value.split():
            key, sep, val = pair.partition("=")
            if not sep or not key:
                raise ValueError(f"{pair!r} is not key=value (expected space-separated key=value pairs)")
            properties[key] = val
        return properties

    @field_validator("ssl_ca", mode="before")
    @classmethod
    def _decode_ssl_ca(cls, value: object) -> object:
        if not value:
            return None
        if not isinstance(value, str):
            return value
        try:
            pem = _decode_base64(value).decode()
        except UnicodeDecodeError:
            raise ValueError("decodes to binary data, not a PEM certificate") from None
        if "-----BEGIN CERTIFICATE-----" not in pem:
            raise ValueError("does not decode to a PEM certificate (-----BEGIN CERTIFICATE-----)")
        return pem

    @field_validator("custom_keyring", mode="before")
    @classmethod
    def _decode_keyring(cls, value: object) -> object:
        if not value:
            return None
        if not isinstance(value, str):
            return value
        return _decode_base64(value)

    @model_validator(mode="after")
    def _valid_for_the_sync(self) -> CharmConfig:
        """What goes into mirrors.yaml must satisfy the engine's SyncConfig; report it by option name."""
        try:
            self.sync_config(keyring=DEFAULT_KEYRING, state_dir=DEFAULT_STATE_DIR)
        except pydantic.ValidationError as error:
            raise ValueError(format_errors(error)) from None
        return self

    def sync_config(self, *, keyring: str | None, state_dir: str, modify_hook: str | None = None,
                    source_proxy: dict[str, str] | None = None) -> SyncConfig:
        """The content of mirrors.yaml (`keyring` None: the engine's default keyring)."""
        return SyncConfig(
            mirror_list=self.mirror_list,
            name_prefix=self.name_prefix,
            content_id_template=self.content_id_template,
            region=self.region,
            cloud_name=self.cloud_name,
            user_agent=self.user_agent,
            visibility=self.visibility,
            custom_properties=self.custom_properties,
            set_latest_property=self.set_latest_property,
            hypervisor_mapping=self.hypervisor_mapping,
            image_import_conversion=self.image_import_conversion,
            use_swift=self.use_swift,
            ignore_proxy_for_object_store=self.ignore_proxy_for_object_store,
            keyring=keyring or DEFAULT_KEYRING,
            state_dir=state_dir,
            max_parallel=self.max_parallel,
            modify_hook=modify_hook,
            source_proxy=source_proxy or {},
        )

    @property
    def interface(self) -> Literal["public", "internal"]:
        return "internal" if self.use_internal_endpoints else "public"


def _where(loc: tuple, option_names: dict[str, str]) -> str:
    """('mirror_list', 0, 'url') -> 'mirror_list[0].url', with the Juju spelling of the option."""
    where = ""
    for part in loc:
        if isinstance(part, int):
            where += f"[{part}]"
        else:
            part = option_names.get(part, part) if not where else part
            where += f".{part}" if where else part
    return where


def format_errors(error: pydantic.ValidationError, option_names: dict[str, str] | None = None) -> str:
    """One line naming each bad option and what is wrong with it."""
    option_names = option_names or {}
    problems = []
    for detail in error.errors():
        message = detail["msg"].removeprefix("Value error, ")
        value = detail.get("input")
        if detail["type"] in ("literal_error", "enum", "int_parsing", "greater_than_equal",
                              "less_than_equal") and isinstance(value, (str, int)):
            message += f" (got {value!r})"
        where = _where(detail["loc"], option_names)
        problems.append(f"{where}: {message}" if where else message)
    return "; ".join(problems)
