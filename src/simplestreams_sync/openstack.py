"""Keystone authentication and the service catalog."""

from __future__ import annotations

import logging

import requests
from keystoneauth1 import exceptions as ks_exceptions
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3

from .config import IdentityConfig

# keystoneauth logs request bodies (credentials, tokens) at DEBUG: never let them through.
for _noisy in ("keystoneauth", "keystoneauth1", "urllib3", "swiftclient", "glanceclient"):
    logging.getLogger(_noisy).setLevel(logging.WARNING)


USER_AGENT = "glance-simplestreams-sync"


def _requests_session(proxies: dict[str, str]) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # proxies (and CA bundles) only as configured, never from the environment
    session.proxies.update(proxies)
    return session


class CloudError(Exception):
    """Keystone, Glance or Swift refused or could not be reached; the message says which and why."""


class Cloud:
    """An authenticated session plus the endpoints the sync needs."""

    def __init__(self, identity: IdentityConfig, object_store_proxies: dict[str, str] | None = None):
        self.identity = identity
        auth = v3.Password(
            auth_url=identity.auth_url,
            username=identity.username,
            password=identity.password,
            project_name=identity.project_name,
            user_domain_name=identity.user_domain_name,
            project_domain_name=identity.project_domain_name,
        )
        verify = identity.ca_file if identity.ca_file else True
        # The cloud's own APIs never go through a proxy (they are in effect all in NO_PROXY) ...
        self.session = ks_session.Session(auth=auth, verify=verify, user_agent=USER_AGENT,
                                          session=_requests_session(proxies={}))
        # ... except Swift when the operator says so (ignore_proxy_for_object_store: false).
        self.object_store_session = self.session
        if object_store_proxies:
            self.object_store_session = ks_session.Session(auth=auth, verify=verify, user_agent=USER_AGENT,
                                                           session=_requests_session(object_store_proxies))
        self._authenticate()

    def _authenticate(self) -> None:
        try:
            self.project_id = self.session.get_project_id()
        except ks_exceptions.Unauthorized:
            raise CloudError(f"keystone {self.identity.auth_url}: authentication refused for user "
                             f"{self.identity.username!r} (wrong password or user?)") from None
        except ks_exceptions.ConnectFailure as error:
            raise CloudError(f"keystone {self.identity.auth_url}: cannot connect ({_short(error)})") from None
        except ks_exceptions.ClientException as error:
            raise CloudError(f"keystone {self.identity.auth_url}: {_short(error)}") from None

    def endpoint(self, service_type: str) -> str | None:
        """The catalog URL of a service for our region and interface, or None if there is none."""
        try:
            return self.session.get_endpoint(service_type=service_type, interface=self.identity.interface,
                                             region_name=self.identity.region)
        except ks_exceptions.EndpointNotFound:
            return None

    @property
    def auth_url(self) -> str:
        return self.identity.auth_url

    @property
    def region(self) -> str:
        return self.identity.region


def _short(error: Exception) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text[:300]


def image_ids_in_use(cloud: Cloud) -> set[str]:
    """Ids of images that Nova servers (of all projects) were booted from; empty without a compute service."""
    endpoint = cloud.endpoint("compute")
    if not endpoint:
        return set()
    url = f"{endpoint.rstrip('/')}/servers/detail?all_tenants=1&limit=1000"
    in_use: set[str] = set()
    while url:
        try:
            body = cloud.session.get(url).json()
        except ks_exceptions.ClientException as error:
            raise CloudError(f"nova: cannot list servers to find images in use: {_short(error)}") from None
        for server in body.get("servers", []):
            image = server.get("image")
            if isinstance(image, dict) and image.get("id"):
                in_use.add(image["id"])
        url = next((link["href"] for link in body.get("servers_links", []) if link.get("rel") == "next"), None)
    return in_use
