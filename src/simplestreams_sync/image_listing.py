"""Our images as Glance lists them (api.image_list_urls: hidden ones too), read with the run's keystone
session, or taken from the listing early_login sent with the same token. A run that changes nothing in
Glance needs no more of it, so glanceclient (glance.py) is loaded only once an image is created, marked,
hidden or deleted."""

from __future__ import annotations

from collections.abc import Iterable

from keystoneauth1 import exceptions as ks_exceptions

from . import api, early_login
from .openstack import Cloud, CloudError, describe
from .retry import retried

RETRY_ATTEMPTS = 3  # of a call that changes nothing when repeated (a listing, a read, a JSON-patch PATCH)
RETRY_DELAY = 0.5  # seconds before the first retry, doubled after each
# Glance busy or restarting, or the connection dropped.
TRANSIENT_ERRORS = (ks_exceptions.InternalServerError, ks_exceptions.ServiceUnavailable, ks_exceptions.ConnectFailure)


class ImageInUseByStore(CloudError):
    """Glance refused to delete an image because its store still uses it (RBD clones of its snapshot)."""


def glance_endpoint(cloud: Cloud) -> str:
    """Glance's URL in the catalog, without its version; CloudError when the catalog has none."""
    endpoint = cloud.endpoint("image")
    if not endpoint:
        raise CloudError(f"no image (Glance) endpoint in the catalog for region {cloud.region}")
    return endpoint.rstrip("/").removesuffix("/v2")


def owned_images(cloud: Cloud, endpoint: str, content_id: str) -> list[dict]:
    """Every image of our project carrying our content_id, whatever its status, hidden ones too."""
    urls = api.image_list_urls(endpoint, cloud.project_id, content_id)
    images = [image for url in urls for image in _listing(cloud, endpoint, url)]
    return [image for image in images if api.is_ours(image, cloud.project_id, content_id)]


def _listing(cloud: Cloud, endpoint: str, url: str) -> list[dict]:
    token = cloud.session.get_token()
    listed_early = early_login.listing(url, token) if token else None
    if listed_early is not None:
        return listed_early
    try:
        return retried(
            lambda: _pages(cloud, endpoint, url),
            what="glance: list images",
            attempts=RETRY_ATTEMPTS,
            first_delay=RETRY_DELAY,
            transient=TRANSIENT_ERRORS,
        )
    except ks_exceptions.ClientException as error:
        raise CloudError(f"glance: list images: {describe(error)}") from None


def _pages(cloud: Cloud, endpoint: str, url: str | None) -> list[dict]:
    """Every page of one listing, from its first page's URL."""
    images: list[dict] = []
    while url:
        page = cloud.session.get(url, headers={"Accept": "application/json"}).json()
        for image in page.get("images", []):
            images.append({key: value for key, value in image.items() if key not in api.UNLISTED_FIELDS})
        url = endpoint + page["next"] if page.get("next") else None
    return images


def listed_hash_algo(images: Iterable[dict]) -> str | None:
    """The algorithm Glance uses for os_hash_value, as an active image of a listing shows it."""
    return next((i["os_hash_algo"] for i in images if i.get("status") == "active" and i.get("os_hash_algo")), None)
