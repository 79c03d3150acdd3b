"""A region of the local cloud laid out as network spaces lay out a Charmed OpenStack cloud: each
catalog interface (public, internal, admin) of keystone, Glance and the object store has an address of
its own (a TcpRelay in front of the same server), so a test sees which interface a client used; and
Juju's lookup of image metadata, done as Juju does it."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from urllib.parse import urlparse

import requests
from keystoneclient.v3 import client as keystone_v3

from tests.localcloud.cloud import LocalCloud
from tests.localcloud.relay import TcpRelay

INTERFACES = ("public", "internal", "admin")
SERVICE_TYPES = ("identity", "image", "object-store")


@dataclass
class SpacedRegion:
    name: str
    project_id: str
    urls: dict[tuple[str, str], str] = field(default_factory=dict)  # (service type, interface) -> catalog URL
    relays: dict[tuple[str, str], TcpRelay] = field(default_factory=dict)

    def url(self, service_type: str, interface: str) -> str:
        """The catalog's URL (the object store's with our project's id, as a token's catalog lists it)."""
        return re.sub(r"[$%]\(project_id\)s", self.project_id, self.urls[(service_type, interface)])

    def product_streams_urls(self) -> dict[str, str]:
        """What product-streams should point at: the metadata under each interface's object-store URL."""
        return {interface: f"{self.url('object-store', interface)}/simplestreams/data" for interface in INTERFACES}

    def connections(self) -> dict[tuple[str, str], int]:
        return {key: relay.connections for key, relay in self.relays.items()}

    def used(self) -> set[tuple[str, str]]:
        """The (service type, interface) pairs that clients connected to."""
        return {key for key, count in self.connections().items() if count}

    def keystone_answer(self, answer: dict) -> dict:
        """What keystone's charm puts on the relation in this region: its public (service_*), internal
        and admin (auth_*) auth endpoints at their own addresses."""
        hosts = {"service": "public", "internal": "internal", "auth": "admin"}
        spaced = dict(answer)
        for prefix, interface in hosts.items():
            address = urlparse(self.url("identity", interface))
            spaced.update({f"{prefix}_host": address.hostname, f"{prefix}_port": str(address.port)})
        return spaced


@contextmanager
def spaced_region(cloud: LocalCloud, missing: tuple[tuple[str, str], ...] = ()) -> Iterator[SpacedRegion]:
    """A new region whose catalog lists keystone, Glance and the object store on three interfaces, each
    at its own relay; the `missing` (service type, interface) endpoints are left out. Removed afterwards."""
    ks = keystone_v3.Client(session=cloud.admin_session(), interface="public")
    region = ks.regions.create(id=f"Spaces-{secrets.token_hex(3)}")
    spaced = SpacedRegion(region.id, cloud.services_project_id)
    with ExitStack() as stack:
        stack.callback(ks.regions.delete, region)
        for service_type in SERVICE_TYPES:
            service = ks.services.list(type=service_type)[0]
            template = ks.endpoints.list(service=service, interface="public", region=cloud.region)[0].url
            server = urlparse(template)
            for interface in INTERFACES:
                if (service_type, interface) in missing:
                    continue
                relay = stack.enter_context(TcpRelay(server.port))
                url = template.replace(server.netloc, f"127.0.0.1:{relay.port}", 1)
                endpoint = ks.endpoints.create(service, url, interface=interface, region=region.id)
                stack.callback(ks.endpoints.delete, endpoint)
                spaced.urls[(service_type, interface)] = url
                spaced.relays[(service_type, interface)] = relay
        yield spaced


def juju_image_ids(product_streams_url: str, region: str, endpoint: str) -> set[str]:
    """The image ids Juju finds for its cloud {region, endpoint (its auth URL)}, read anonymously from the
    product-streams URL as Juju's simplestreams lookup reads it: streams/v1/index.json, the image-ids
    entries whose `clouds` name that cloud (endpoints compared without a trailing slash), their products
    files, and the items of that region (attributes inherited from the levels above)."""
    index = _anonymous_json(f"{product_streams_url}/streams/v1/index.json")
    assert index["format"] == "index:1.0"
    wanted = {"region": region, "endpoint": endpoint.rstrip("/")}
    ids = set()
    for entry in index["index"].values():
        clouds = [{"region": c["region"], "endpoint": c["endpoint"].rstrip("/")} for c in entry.get("clouds", [])]
        if entry["datatype"] != "image-ids" or (clouds and wanted not in clouds):
            continue
        products = _anonymous_json(f"{product_streams_url}/{entry['path']}")
        for product in products["products"].values():
            for version in product["versions"].values():
                for item in version["items"].values():
                    inherited = {**products, **product, **version, **item}
                    if inherited.get("region") == region:
                        ids.add(item["id"])
    return ids


def _anonymous_json(url: str) -> dict:
    response = requests.get(url, timeout=30)
    assert response.status_code == 200, f"GET {url}: {response.status_code} {response.text[:200]}"
    return response.json()
