"""The requests that the full run and the quick check both make, defined once: the Keystone login, the
listing of our images in Glance (hidden ones included) and where the metadata objects are read.

Standard library only: the quick check imports it before any heavy module.
"""

from __future__ import annotations

import urllib.parse

GLANCE_PAGE = 100  # images per page of a listing
# Glance lists images with os_hidden only when asked for them alone: ours are both listings together.
OWNED_LISTINGS: tuple[dict[str, bool], ...] = ({}, {"os_hidden": True})
CONTAINER = "simplestreams"  # the object store's container of the published metadata
# What glanceclient drops from each image it lists: the same dicts whichever client listed them.
UNLISTED_FIELDS = ("self",)


def token_url(auth_url: str) -> str:
    """Keystone v3's token URL under an auth URL, as keystoneauth's v3.Password posts to it."""
    return auth_url.rstrip("/") + "/auth/tokens"


def password_login(user: str, user_domain: str, password: str, project: str, project_domain: str) -> dict:
    """The body of a password login scoped to a project; Keystone answers with the token and its catalog."""
    return {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {"user": {"name": user, "domain": {"name": user_domain}, "password": password}},
            },
            "scope": {"project": {"name": project, "domain": {"name": project_domain}}},
        }
    }


def owned_image_filters(project_id: str, content_id: str) -> list[dict]:
    """Glance's filters of each listing that together return every image of ours, whatever its status."""
    return [{"owner": project_id, "content_id": content_id, **extra} for extra in OWNED_LISTINGS]


def image_list_urls(glance_endpoint: str, project_id: str, content_id: str) -> list[str]:
    """The first page of each listing of `owned_image_filters`, as raw URLs under Glance's endpoint."""
    urls = []
    for filters in owned_image_filters(project_id, content_id):
        query = {key: str(value).lower() if isinstance(value, bool) else value for key, value in filters.items()}
        urls.append(f"{glance_endpoint}/v2/images?{urllib.parse.urlencode({**query, 'limit': GLANCE_PAGE})}")
    return urls


def is_ours(image: dict, project_id: str, content_id: str) -> bool:
    """Filtered again on the client: a Glance that ignores unknown filters must not make us claim others' images."""
    return image.get("content_id") == content_id and image.get("owner") == project_id


def metadata_object_url(container_url: str, prefix: str, path: str) -> str:
    """A metadata object's URL: the publisher writes and reads it there, the quick check reads it anonymously."""
    return f"{container_url}/{prefix}{path}"
