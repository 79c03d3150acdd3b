"""Keystone authentication and the service catalog."""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Mapping
from urllib.parse import urlsplit

import requests
from keystoneauth1 import access
from keystoneauth1 import exceptions as ks_exceptions
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3
from urllib3.exceptions import ReadTimeoutError

from . import api, early_login, timeouts
from .config import IdentityConfig
from .raw_http import system_ca_certificates
from .text import shorten

# keystoneauth logs request bodies (credentials, tokens) at DEBUG: never let them through.
for _noisy in ("keystoneauth", "keystoneauth1", "urllib3", "swiftclient", "glanceclient"):
    logging.getLogger(_noisy).setLevel(logging.WARNING)


USER_AGENT = "glance-simplestreams-sync"
LOG = logging.getLogger(__name__)


def _keystone_session(auth: v3.Password, verify: str | bool, proxies: dict[str, str]) -> ks_session.Session:
    """A keystoneauth session whose every request has timeouts.api()'s connect and read deadlines
    (keystoneauth's own `timeout=` takes one number for both; requests takes the pair it passes on)."""
    session = ks_session.Session(auth=auth, verify=verify, user_agent=USER_AGENT, session=_requests_session(proxies))
    session.timeout = timeouts.api()  # type: ignore[assignment]
    return session


class _FailFastSession(requests.Session):
    """A requests session that remembers each service (scheme, host and port) that missed a deadline in
    this run and fails later requests to it at once: a stalled service costs the run one deadline, not
    one per request and retry, so the run ends within minutes."""

    def __init__(self) -> None:
        super().__init__()
        self.stalled: set[str] = set()

    def send(self, request, **kwargs):
        service = "{0.scheme}://{0.netloc}".format(urlsplit(request.url or ""))
        if service in self.stalled:
            raise requests.Timeout(f"{service} missed a deadline earlier in this run", request=request)
        try:
            return super().send(request, **kwargs)
        except requests.Timeout:
            self.stalled.add(service)
            raise


def _requests_session(proxies: dict[str, str]) -> requests.Session:
    session = _FailFastSession()
    session.trust_env = False  # proxies (and CA bundles) only as configured, never from the environment
    session.proxies.update(proxies)
    return session


def proxy_for(url: str, proxies: Mapping[str, str], trust_env: bool) -> str | None:
    """The proxy that requests would send a GET of `url` through (no_proxy and, with trust_env, the
    environment's *_proxy variables taken into account), or None for a direct connection."""
    prepared = requests.Request("GET", url).prepare()
    return requests.utils.select_proxy(url, requests.utils.resolve_proxies(prepared, dict(proxies), trust_env))


class CloudError(Exception):
    """Keystone, Glance or Swift refused or could not be reached; the message says which and why."""


class Cloud:
    """An authenticated session plus the endpoints the sync needs."""

    def __init__(self, identity: IdentityConfig, object_store_proxies: dict[str, str] | None = None):
        self.identity = identity
        self._auth = auth = v3.Password(
            auth_url=identity.auth_url,
            username=identity.username,
            password=identity.password,
            project_name=identity.project_name,
            user_domain_name=identity.user_domain_name,
            project_domain_name=identity.project_domain_name,
        )
        verify = identity.ca_file if identity.ca_file else system_ca_certificates()
        self.verify = verify
        self.object_store_proxies = object_store_proxies or {}
        # The cloud's own APIs never go through a proxy (they are in effect all in NO_PROXY) ...
        self.session = _keystone_session(auth, verify, proxies={})
        # ... except Swift when the operator says so (ignore_proxy_for_object_store: false).
        self.object_store_session = self.session
        if object_store_proxies:
            self.object_store_session = _keystone_session(auth, verify, object_store_proxies)
        early = early_login.login_answer(login_key(identity, verify))
        if early is not None:  # keystoneauth logs in again with the password once that token nears its end
            auth.auth_ref = access.create(body=early[1], auth_token=early[0])
        self._authenticate()

    def _authenticate(self) -> None:
        try:
            project_id = self.session.get_project_id()
        except ks_exceptions.Unauthorized:
            raise CloudError(
                f"keystone {self.identity.auth_url}: authentication refused for user "
                f"{self.identity.username!r} (wrong password or user?)"
            ) from None
        except ks_exceptions.ConnectTimeout as error:
            raise CloudError(f"keystone {self.identity.auth_url}: {timed_out(error)}") from None
        except ks_exceptions.SSLError as error:  # before ConnectFailure, its base class
            trusted = (
                f"the CAs in ca_file {self.identity.ca_file}"
                if self.identity.ca_file
                else "the system's CAs (no ca_file)"
            )
            raise CloudError(
                f"keystone {self.identity.auth_url}: TLS {_ssl_reason(error)} (trusting {trusted})"
            ) from None
        except ks_exceptions.ConnectFailure as error:
            raise CloudError(f"keystone {self.identity.auth_url}: cannot connect ({_short(error)})") from None
        except ks_exceptions.ClientException as error:
            raise CloudError(f"keystone {self.identity.auth_url}: {_short(error)}") from None
        except OSError as error:  # requests: "Could not find a suitable TLS CA certificate bundle"
            raise CloudError(f"keystone {self.identity.auth_url}: {error}") from None
        if not project_id:
            raise CloudError(
                f"keystone {self.identity.auth_url}: the token of {self.identity.username!r} is "
                f"not scoped to project {self.identity.project_name!r}"
            )
        self.project_id: str = project_id

    def endpoint(self, service_type: str, interface: str | None = None) -> str | None:
        """The catalog URL of a service for our region and `interface` (default: the one the sync uses),
        or None if there is none."""
        try:
            return self.session.get_endpoint(
                service_type=service_type, interface=interface or self.identity.interface, region_name=self.region
            )
        except ks_exceptions.EndpointNotFound:
            return None

    @functools.cached_property
    def public_auth_url(self) -> str:
        """Keystone's public auth URL, the one Juju's cloud definition names and the published metadata
        must name: identity.yaml's public_auth_url, else the catalog's public identity endpoint (also
        when the sync authenticates on another interface), else the auth URL the sync uses."""
        if self.identity.public_auth_url:
            return self.identity.public_auth_url
        url = self.endpoint("identity", "public")
        if url:
            return url
        LOG.warning(
            "the catalog has no public identity endpoint in region %s: the metadata names %s, the auth URL "
            "the sync uses (set public_auth_url in identity.yaml if Juju's cloud uses another)",
            self.region,
            self.auth_url,
        )
        return self.auth_url

    def catalog(self) -> list[dict]:
        """The service catalog of the session's token, as Keystone sent it (its `catalog` list)."""
        try:
            access = self._auth.get_access(self.session)
        except ks_exceptions.ClientException as error:
            raise CloudError(f"keystone {self.identity.auth_url}: {describe(error)}") from None
        return access.service_catalog.catalog

    def object_store_proxy(self, url: str) -> str | None:
        """The proxy requests would use for this object-store URL, if any."""
        return proxy_for(url, self.object_store_proxies, trust_env=False)

    @property
    def auth_url(self) -> str:
        return self.identity.auth_url

    @property
    def region(self) -> str:
        return self.identity.region


def login_key(identity: IdentityConfig, verify: str | bool) -> tuple:
    """The login keystoneauth's v3.Password sends for this identity, as early_login.login_key names it."""
    body = api.password_login(
        identity.username,
        identity.user_domain_name,
        identity.password,
        identity.project_name,
        identity.project_domain_name,
    )
    return early_login.login_key(api.token_url(identity.auth_url), body, verify)


def _short(error: Exception) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return shorten(text, 300)


def timed_out(error: Exception) -> str | None:
    """For a request that hit its deadline (timeouts.api()): '<URL>: no answer within 60 s' (or 'no
    connection within 10 s'); None for any other error."""
    cause = error.__context__ or error.__cause__
    url = re.search(r"(?:Request to|Error communicating with) (\S+) timed out", str(error))
    if url or isinstance(error, ks_exceptions.ConnectTimeout):  # keystoneauth's; glanceclient's
        where = f"{url.group(1)}: " if url else ""
    elif isinstance(error, (requests.Timeout, ReadTimeoutError)) or isinstance(cause, ReadTimeoutError):
        where, cause = "", error
    elif "Read timed out" in str(error):  # a body stalled after its headers
        where = ""
    else:
        return None
    if isinstance(cause, requests.ConnectTimeout):
        return f"{where}no connection within {timeouts.seconds(timeouts.CONNECT)}"
    return f"{where}no answer within {timeouts.seconds(timeouts.READ)}"


def describe(error: Exception) -> str:
    """One line for an OpenStack client error: a deadline missed (`timed_out`), OpenSSL's reason for a
    TLS failure (which a cut of the whole message would lose), else the message's first line, shortened
    to 300 characters."""
    deadline = timed_out(error)
    if deadline:
        return deadline
    if isinstance(error, ks_exceptions.SSLError) or "[SSL:" in str(error):
        return f"TLS {_ssl_reason(error)}"
    return _short(error)


def _ssl_reason(error: Exception) -> str:
    """OpenSSL's reason ("certificate verify failed: unable to get local issuer certificate"), which
    keystoneauth buries in a long message."""
    match = re.search(r"\[SSL: [A-Z0-9_]+\] (.+?) \(_ssl\.c:\d+\)", str(error)) or re.search(
        r"\[SSL: [A-Z0-9_]+\] ([^'\"()]+)", str(error)
    )
    return match.group(1).strip() if match else f"error: {_short(error)}"


def image_ids_in_use(cloud: Cloud) -> set[str]:
    """Ids of images that Nova servers (of all projects) were booted from; empty without a compute service."""
    endpoint = cloud.endpoint("compute")
    if not endpoint:
        return set()
    url: str | None = f"{endpoint.rstrip('/')}/servers/detail?all_tenants=1&limit=1000"
    in_use: set[str] = set()
    while url:
        try:
            body = cloud.session.get(url).json()
        except ks_exceptions.ClientException as error:
            raise CloudError(f"nova: cannot list servers to find images in use: {describe(error)}") from None
        for server in body.get("servers", []):
            image = server.get("image")
            if isinstance(image, dict) and image.get("id"):
                in_use.add(image["id"])
        url = next((link["href"] for link in body.get("servers_links", []) if link.get("rel") == "next"), None)
    return in_use
