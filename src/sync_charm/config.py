"""The charm's options as a pydantic model.

The options that shape a sync are the engine's own (`simplestreams_sync.config.SyncOptions`, which this
model extends); this module adds the options that exist only in the charm (`run`, `frequency`, …) and
parses what Juju hands over as strings (the YAML mirror list, `key=value` pairs, base64).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Literal

import pydantic
import yaml
from pydantic import field_validator

from simplestreams_sync import metadata_layout
from simplestreams_sync.config import SyncConfig, SyncOptions


def _decode_base64(value: str) -> bytes:
    try:
        return base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not valid base64") from None


class CharmConfig(SyncOptions):
    """The Juju options (dashes in option names become underscores, as `CharmBase.load_config` does)."""

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    run: bool = False
    frequency: Literal["hourly", "daily", "weekly"] = "daily"
    use_internal_endpoints: bool = False
    ssl_ca: str | None = None  # the decoded PEM text
    custom_keyring: bytes | None = None  # the decoded keyring
    serve_metadata: bool = False
    serve_metadata_http_port: int = pydantic.Field(default=80, ge=1, le=65535)
    serve_metadata_https_port: int = pydantic.Field(default=443, ge=1, le=65535)
    metrics_port: int = pydantic.Field(default=9731, ge=1, le=65535)
    nagios_context: str = "juju"
    nagios_servicegroups: str = ""
    # The classic charm's options that mean nothing here, accepted so that its bundles deploy unchanged.
    snap_channel: str = "stable"
    source: str = ""
    key: str = ""

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

    def sync_config(self, **machine: Any) -> SyncConfig:
        """The content of mirrors.yaml: these options, and what only the machine knows (keyring path,
        state dir, image-modifier hook, the model's proxy)."""
        return SyncConfig(**self.sync_options(), **machine)

    @property
    def publishes_metadata(self) -> bool:
        return metadata_layout.publishes_metadata(self.serve_metadata, self.use_swift)

    @property
    def interface(self) -> Literal["public", "internal"]:
        return "internal" if self.use_internal_endpoints else "public"

    def ignored_classic_options(self) -> list[str]:
        """A warning for each of the classic charm's options that is set here, where it has no effect."""
        warnings = []
        if self.snap_channel != "stable":
            warnings.append(
                f"option snap-channel={self.snap_channel!r} has no effect: this charm installs no "
                "snap, the sync ships with it"
            )
        for name in ("source", "key"):
            if getattr(self, name):
                warnings.append(
                    f"option {name} is set and has no effect: this charm adds no apt source "
                    f"(unset it with: juju config <application> --reset {name})"
                )
        return warnings


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
        if detail["type"] in (
            "literal_error",
            "enum",
            "int_parsing",
            "greater_than_equal",
            "less_than_equal",
        ) and isinstance(value, (str, int)):
            message += f" (got {value!r})"
        where = _where(detail["loc"], option_names)
        problems.append(f"{where}: {message}" if where else message)
    return "; ".join(problems)
