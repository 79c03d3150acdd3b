"""The keystone machine charm's `identity-service` unit-data protocol, requirer side (no ops here).

We ask keystone, on our unit's data, to register the `image-stream` service (keystone knows it as type
`product-streams`) with the URLs where the image metadata is served; keystone creates a service user
and answers on its own unit data with the credentials and its auth endpoints.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Literal

from simplestreams_sync.config import IdentityConfig
from simplestreams_sync.state import INTERFACES

SERVICE = "image-stream"
REQUEST_KEYS = ("service", "region", "public_url", "internal_url", "admin_url")
# keystone's answer is usable once all of these are set
REQUIRED_KEYS = (
    "service_host",
    "service_port",
    "auth_host",
    "auth_port",
    "service_username",
    "service_password",
    "service_tenant",
)


def request(region: str, urls: Mapping[str, str]) -> dict[str, str]:
    """What we set on our unit data: the service and, per interface, where its product-streams endpoint
    points (`urls`: "public", "internal", "admin" -> URL)."""
    return {
        "service": SERVICE,
        "region": region,
        **{f"{interface}_url": urls[interface].rstrip("/") for interface in INTERFACES},
    }


def withdrawn() -> dict[str, str]:
    """Unit data that withdraws our request (non-leaders must not fight the leader over the endpoint)."""
    return dict.fromkeys(REQUEST_KEYS, "")


def same_url(url: str) -> dict[str, str]:
    """One URL for every interface: the classic placeholder, or the one URL an earlier revision's
    sync reported."""
    return dict.fromkeys(INTERFACES, url)


def remembered_urls(data: Mapping[str, str]) -> dict[str, str] | None:
    """The product-streams URLs remembered in our application data (`remember`), if all are there."""
    urls = {interface: data.get(f"{interface}_url", "") for interface in INTERFACES}
    return urls if all(urls.values()) else None


def remember(data: MutableMapping[str, str], metadata_url: str, urls: Mapping[str, str] | None) -> None:
    """Keep in our application data where the sync published (`metadata_url`) and, when known, the
    product-streams URLs; only what changed is written."""
    wanted = {"metadata_url": metadata_url.rstrip("/")}
    if urls:
        wanted.update({f"{interface}_url": urls[interface].rstrip("/") for interface in INTERFACES})
    changed = {key: value for key, value in wanted.items() if data.get(key) != value}
    if changed:
        data.update(changed)


def placeholder_url(address: str) -> str:
    """What the classic charm registers before any metadata exists: the unit's own address."""
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}"


@dataclass(frozen=True)
class Credentials:
    """What keystone gave us: the service user and where to authenticate."""

    api_version: str
    username: str
    password: str
    project_name: str
    domain_name: str
    public_auth_url: str
    internal_auth_url: str
    admin_auth_url: str
    ca_cert: str | None = None  # PEM, from keystone's `ca_cert` (older clouds)

    @property
    def v3(self) -> bool:
        return self.api_version.split(".")[0] == "3"

    def auth_url(self, interface: str) -> str:
        return {"internal": self.internal_auth_url, "admin": self.admin_auth_url}.get(interface, self.public_auth_url)

    def identity_config(
        self, *, region: str, interface: Literal["public", "internal", "admin"], ca_file: str | None
    ) -> IdentityConfig:
        """The content of identity.yaml."""
        return IdentityConfig(
            auth_url=self.auth_url(interface),
            username=self.username,
            password=self.password,
            project_name=self.project_name,
            user_domain_name=self.domain_name,
            project_domain_name=self.domain_name,
            region=region,
            interface=interface,
            ca_file=ca_file,
        )


def _url(data: Mapping[str, str], prefix: str, version: str) -> str | None:
    host, port = data.get(f"{prefix}_host"), data.get(f"{prefix}_port")
    if not host or not port:
        return None
    protocol = data.get(f"{prefix}_protocol") or "http"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    suffix = "v3" if version.split(".")[0] == "3" else f"v{version}"
    return f"{protocol}://{host}:{port}/{suffix}"


def _ca_cert(data: Mapping[str, str]) -> str | None:
    encoded = data.get("ca_cert")
    if not encoded:
        return None
    try:
        pem = base64.b64decode(encoded, validate=False).decode()
    except (binascii.Error, ValueError):
        return None
    return pem if "BEGIN CERTIFICATE" in pem else None


def read_credentials(units_data: Iterable[Mapping[str, str]]) -> Credentials | None:
    """The first keystone unit's complete answer, or None while keystone has not answered."""
    for data in units_data:
        if not all(data.get(key) for key in REQUIRED_KEYS):
            continue
        version = data.get("api_version") or "2.0"
        public = _url(data, "service", version)
        admin = _url(data, "auth", version)
        if public is None or admin is None:
            continue
        return Credentials(
            api_version=version,
            username=data["service_username"],
            password=data["service_password"],
            project_name=data["service_tenant"],
            domain_name=data.get("service_domain") or "Default",
            public_auth_url=public,
            internal_auth_url=_url(data, "internal", version) or public,
            admin_auth_url=admin,
            ca_cert=_ca_cert(data),
        )
    return None
