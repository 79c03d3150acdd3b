"""Keystone authentication and the service catalog."""

from __future__ import annotations

import logging

from keystoneauth1 import exceptions as ks_exceptions
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3

from .config import IdentityConfig

# keystoneauth logs request bodies (credentials, tokens) at DEBUG: never let them through.
for _noisy in ("keystoneauth", "keystoneauth1", "urllib3", "swiftclient", "glanceclient"):
    logging.getLogger(_noisy).setLevel(logging.WARNING)


class CloudError(Exception):
    """Keystone, Glance or Swift refused or could not be reached; the message says which and why."""


class Cloud:
    """An authenticated session plus the endpoints the sync needs."""

    def __init__(self, identity: IdentityConfig):
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
        self.session = ks_session.Session(auth=auth, verify=verify, user_agent="glance-simplestreams-sync")
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
