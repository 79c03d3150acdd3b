"""Juju-readable image-ids metadata, built from Glance and published to Swift."""

from __future__ import annotations

import html
import json
import logging
import re
from collections.abc import Callable
from typing import Protocol

from keystoneauth1 import exceptions as ks_exceptions

from . import api
from ._simplestreams import util
from .openstack import Cloud, CloudError, describe
from .quick_check import Observations
from .state import INTERFACES
from .text import shorten

LOG = logging.getLogger(__name__)

CONTAINER = "simplestreams"
PREFIX = "data/"
INDEX_PATH = "streams/v1/index.json"
PUBLIC_READ_ACL = ".r:*,.rlistings"
PUBLIC_READ_GRANTS = {".r:*", ".rlistings"}  # anyone may read objects, anyone may list them
# Juju expects these on every item, so products_condense must not move them up the tree.
STICKY_KEYS = ["ftype", "md5", "sha256", "size", "name", "id", "endpoint", "region"]
NOT_PUBLISHED_KEYS = ("path",)  # a source-relative path means nothing next to a Glance id


def metadata_url_at(storage_url: str) -> str:
    """The metadata's URL under an object-store account URL: what product-streams points at."""
    return f"{storage_url}/{CONTAINER}/{PREFIX.rstrip('/')}"


def products_path(content_id: str) -> str:
    return f"streams/v1/{content_id}.json"


def image_ids_tree(content_id: str, images: list[dict], region: str, endpoint: str, hypervisor_mapping: bool) -> dict:
    """The products:1.0 image-ids tree listing the given (active, verified) Glance images."""
    tree = {"content_id": content_id, "datatype": "image-ids", "format": "products:1.0", "products": {}}
    for image in images:
        item = _published_item(image, region, endpoint, hypervisor_mapping)
        pedigree = (image["product_name"], image["version_name"], image["item_name"])
        util.products_set(tree, item, pedigree)
    util.products_condense(tree, sticky=STICKY_KEYS)
    tree["updated"] = util.timestamp()
    return tree


def _published_item(image: dict, region: str, endpoint: str, hypervisor_mapping: bool) -> dict:
    try:
        item = json.loads(image.get("simplestreams_metadata") or "{}")
    except ValueError:
        item = {}
    for key in NOT_PUBLISHED_KEYS:
        item.pop(key, None)
    item.update({"id": image["id"], "name": image["name"], "region": region, "endpoint": endpoint})
    if hypervisor_mapping:
        virt = {"qemu": "kvm", "lxc": "lxd"}.get(image.get("hypervisor_type", ""))
        if virt:
            item["virt"] = virt
    return item


def index_entry(tree: dict, region: str, endpoint: str, cloud_name: str) -> dict:
    return {
        "datatype": "image-ids",
        "format": "products:1.0",
        "path": products_path(tree["content_id"]),
        "products": sorted(tree["products"]),
        "updated": tree["updated"],
        "cloudname": cloud_name,
        "clouds": [{"region": region, "endpoint": endpoint}],
    }


def misread_path(read: Callable[[str], object], content_id: str, products: dict, entry: dict) -> str | None:
    """The first of our metadata files that `read(path)` (a reader's view) gets otherwise than published:
    our products file, then our entry of the index (other clouds' entries may change meanwhile)."""
    path = products_path(content_id)
    if read(path) != products:
        return path
    index = read(INDEX_PATH)
    entries = index.get("index") if isinstance(index, dict) else None
    if not isinstance(entries, dict) or entries.get(content_id) != entry:
        return INDEX_PATH
    return None


def write_in_order(
    tree: dict,
    entry: dict,
    read: Callable[[str], dict],
    write: Callable[[str, dict], None],
    check: Callable[[str, dict, dict], None],
    shown_as: str,
) -> bool:
    """What both publishers do with their own `read` ({} when missing or unreadable), `write` and `check`
    (a reader's view): the products file first, then the index entry that points at it, so that readers
    never see a dangling index; then both checked as readers get them. False when what is published
    already says the same (nothing is rewritten then). `shown_as`: the index, as a warning names it."""
    content_id = tree["content_id"]
    path = products_path(content_id)
    index = read(INDEX_PATH)
    if not isinstance(index.get("index"), dict):
        if index:
            LOG.warning("replacing unreadable %s", shown_as)
        index = {"format": "index:1.0", "index": {}}
    published_entry = index["index"].get(content_id)
    if published_entry and _without_updated(published_entry) == _without_updated(entry):
        published = read(path)
        if _without_updated(published) == _without_updated(tree):
            check(content_id, published, published_entry)
            return False
    write(path, tree)
    index["index"][content_id] = entry
    index["updated"] = tree["updated"]
    write(INDEX_PATH, index)
    check(content_id, tree, entry)
    return True


class Publisher(Protocol):
    """Where the metadata goes: Swift (SwiftPublisher) or the unit's own web server (LocalPublisher)."""

    @property
    def metadata_url(self) -> str:
        """What the product-streams endpoint should point at."""
        ...

    def publish(self, tree: dict, cloud_name: str) -> bool:
        """Products file first, index last, each replaced whole, then read back as Juju reads them;
        False when what is published already says the same. Raises CloudError when it could not."""
        ...


class ObjectStoreMissing(CloudError):
    """The catalog has no object-store endpoint for our region and interface."""


class SwiftPublisher:
    """Writes the metadata to the `simplestreams` container, publicly readable, and proves it readable.

    Talks to the Swift API (Swift or Ceph RGW) through the keystone session (no swiftclient) so that
    proxy use is explicit: `Cloud.object_store_session` goes through the source proxy only when the
    operator asks for it.
    """

    def __init__(self, cloud: Cloud, observations: Observations | None = None):
        self.cloud = cloud
        url = cloud.endpoint("object-store")
        if not url:
            raise ObjectStoreMissing(
                f"no object-store (Swift) endpoint in the catalog for region {cloud.region}; "
                "images were synced but no metadata was published"
            )
        self.storage_url = url.rstrip("/")
        self.session = cloud.object_store_session
        self.observations = observations or Observations()  # what the quick check will compare
        self.read_acl = ""  # the container's X-Container-Read once it lets anyone read
        self.repaired_acl: str | None = None  # the read ACL found, when it had to be set again

    @staticmethod
    def warm_up(cloud: Cloud) -> None:
        """Have Swift validate our token (a request to Keystone) while Glance is listed and images
        upload, so that the publish at the end does not wait for it. Failures are the publish's to report."""
        try:
            publisher = SwiftPublisher(cloud)
            publisher.session.request(publisher.container_url, "HEAD", raise_exc=False)
        except (CloudError, ks_exceptions.ClientException) as error:
            LOG.debug("swift warm-up: %s", error)

    @property
    def container_url(self) -> str:
        return f"{self.storage_url}/{CONTAINER}"

    @property
    def metadata_url(self) -> str:
        """Where the sync writes the metadata: through the object-store URL of its own interface."""
        return metadata_url_at(self.storage_url)

    def product_streams_urls(self) -> dict[str, str]:
        """What keystone's product-streams endpoint should point at, per interface: the metadata at the
        object store's URL for that interface. An interface the catalog lacks gets the URL the sync
        writes to, with a warning."""
        urls = {}
        for interface in INTERFACES:
            storage_url = self.cloud.endpoint("object-store", interface)
            if storage_url:
                urls[interface] = metadata_url_at(storage_url.rstrip("/"))
            else:
                LOG.warning(
                    "the catalog has no %s object-store endpoint in region %s: the product-streams %s URL "
                    "is %s, where the sync writes the metadata",
                    interface,
                    self.cloud.region,
                    interface,
                    self.metadata_url,
                )
                urls[interface] = self.metadata_url
        return urls

    def publish(self, tree: dict, cloud_name: str) -> bool:
        """Products file first, then the index that points at it: readers never see a dangling index.
        Then both are read back without a token, as Juju reads them, and compared with what is stored.

        Returns False when what is published already says the same (nothing is rewritten then)."""
        try:
            self.read_acl, self.repaired_acl = ensure_public_container(self._send, self.container_url)
            self.observations.container(self.container_url, self.read_acl)
            entry = index_entry(tree, self.cloud.region, self.cloud.public_auth_url, cloud_name)
            return write_in_order(
                tree,
                entry,
                read=lambda path: self._read(path, default={}),
                write=self._put,
                check=self._check_anonymous_reads,
                shown_as=PREFIX + INDEX_PATH,
            )
        except ks_exceptions.SSLError as error:  # before ConnectionError, its base class
            raise CloudError(f"object store {self.storage_url}: {describe(error)}") from None
        except ks_exceptions.ConnectionError as error:
            raise CloudError(f"object store: {unreachable(error)}") from None
        except ks_exceptions.ClientException as error:
            raise CloudError(f"object store {self.storage_url}: {describe(error)}") from None

    def _check_anonymous_reads(self, content_id: str, products: dict, entry: dict) -> None:
        """Read without a token, as Juju does, our products file and our entry of the index (other
        clouds' entries may change meanwhile) must be what the object store holds for us."""
        misread = misread_path(self._read_anonymously, content_id, products, entry)
        if misread:
            raise self._served_otherwise(misread)

    def _served_otherwise(self, path: str) -> CloudError:
        return CloudError(
            f"anonymous readers of {self._object_url(path)} get other content than the sync "
            "stored there (a cache or proxy in between?); they must get what is stored"
        )

    def _read_anonymously(self, path: str):
        url = self._object_url(path)
        response = self.session.request(url, "GET", authenticated=False, raise_exc=False)
        if response.status_code >= 400:
            todo = (
                f"container {CONTAINER} has read ACL {self.read_acl!r}, which lets anyone read, so the "
                "object store itself refuses anonymous reads: check that it serves public containers "
                "(Swift: delay_auth_decision in the proxy's authtoken filter; Ceph RGW: "
                "rgw swift account in url = true)"
            )
            raise CloudError(f"anonymous readers cannot read {url}: {refusal(response, todo)}")
        try:
            return response.json()
        except ValueError:
            return None

    # -- requests ---------------------------------------------------------------------------------
    def _object_url(self, path: str) -> str:
        return api.metadata_object_url(self.container_url, PREFIX, path)

    def _send(self, method: str, url: str, **kwargs):
        return self.session.request(url, method, raise_exc=False, **kwargs)

    def _request(self, method: str, url: str, allow: tuple[int, ...] = (), **kwargs):
        return checked(self._send(method, url, **kwargs), method, url, allow)

    def _read(self, path: str, default: dict) -> dict:
        response = self._request("GET", self._object_url(path), allow=(404,))
        if response.status_code == 404:
            return default
        self._remember_etag(path, response)
        try:
            data = response.json()
        except ValueError:
            return default
        return data if isinstance(data, dict) else default

    def _put(self, path: str, data: dict) -> None:
        response = self._request(
            "PUT", self._object_url(path), data=util.dump_data(data), headers={"Content-Type": "application/json"}
        )
        self._remember_etag(path, response)

    def _remember_etag(self, path: str, response) -> None:
        etag = response.headers.get("ETag", "").strip('"')
        if etag:
            self.observations.metadata_object(self._object_url(path), etag)


def _without_updated(data: dict) -> dict:
    return {key: value for key, value in data.items() if key != "updated"}


def ensure_public_container(send, container_url: str) -> tuple[str, str | None]:
    """Create the container readable by anyone, or give an existing one that read ACL again; return
    its read ACL as the store reports it and, when it had to be set again, the one found.
    `send(method, url, **kwargs)` makes one request to the object store and returns its answer
    whatever the status.

    An existing container's ACL is set with POST: Swift also accepts a PUT, but Ceph RGW answers a PUT
    of an existing container whose ACL differs with 409 BucketAlreadyExists and keeps the old ACL."""

    def head():
        answer = send("HEAD", container_url)
        if answer.status_code < 400 or answer.status_code == 404:
            return answer
        # A HEAD answer has no body: the answer to a GET says why (Ceph RGW: AccessDenied, Swift: a page).
        answer = send("GET", f"{container_url}?limit=1")
        todo = CONTAINER_FORBIDDEN if answer.status_code == 403 else ""
        raise CloudError(f"object store: GET {container_url}: {refusal(answer, todo)}")

    found = head()
    if found.status_code == 404:
        headers = {"X-Container-Read": PUBLIC_READ_ACL}
        created = checked(send("PUT", container_url, headers=headers), "PUT", container_url, allow=(409,))
        if created.status_code != 409:
            return _read_acl(head()), None
        found = head()  # made meanwhile, or another account's
        if found.status_code == 404:
            raise CloudError(f"object store: PUT {container_url}: {refusal(created, NAME_TAKEN)}")
    acl = _read_acl(found)
    if grants_public_read(acl):
        return acl, None
    try:
        checked(send("POST", container_url, headers={"X-Container-Read": PUBLIC_READ_ACL}), "POST", container_url)
    except CloudError as error:
        raise CloudError(
            f"container {CONTAINER} at {container_url} has read ACL {acl!r}, which keeps anonymous "
            f"readers (Juju) out, and setting {PUBLIC_READ_ACL!r} failed: {error}; set it as the "
            f"container's owner: swift post -r '{PUBLIC_READ_ACL}' {CONTAINER}"
        ) from None
    return _read_acl(head()), acl


def _read_acl(head_answer) -> str:
    """The read ACL in a HEAD answer, in the store's own spelling (RGW may order the grants otherwise)."""
    return head_answer.headers.get("X-Container-Read", "")


def checked(response, method: str, url: str, allow: tuple[int, ...] = ()):
    """The answer, unless it is an error (other than the `allow`ed statuses): CloudError saying why."""
    if response.status_code >= 400 and response.status_code not in allow:
        raise CloudError(f"object store: {method} {url}: {refusal(response)}")
    return response


def grants_public_read(acl: str) -> bool:
    """Whether a container read ACL lets anyone read objects and list them (in any order, with more grants)."""
    return {grant.strip() for grant in acl.split(",")} >= PUBLIC_READ_GRANTS


# -- errors ---------------------------------------------------------------------------------------
MAX_ANSWER_TEXT = 1000  # characters of an error body kept; a longer one is a page, not a reason

WHAT_TO_DO = {
    401: "the object store did not accept the sync user's token: check that it validates tokens with "
    "this Keystone (Swift: the proxy's authtoken filter; Ceph RGW: rgw keystone url)",
    403: "the sync user may not write here: give it a role the object store treats as the account's "
    "operator (Swift: operator_roles of keystoneauth; Ceph RGW: rgw keystone accepted roles)",
    404: "the account or container is not there: check the object-store endpoint in the Keystone catalog",
    409: "the object store reports a conflict with another change; the next sync tries again",
    413: "the object store refuses the size: raise the account's quota or the maximum object size",
    507: "the object store is out of space: free or add capacity, then run the sync again",
}
SERVER_FAILED = "the object store failed: see its logs; the next sync tries again"
CONTAINER_FORBIDDEN = (
    f"the sync user may not use the container {CONTAINER}: another project may own a "
    "container of that name (Ceph RGW without implicit tenants shares names between "
    "projects), or the user lacks a role the object store treats as the account's operator "
    "(Swift: operator_roles of keystoneauth; Ceph RGW: rgw keystone accepted roles)"
)
NAME_TAKEN = (
    f"the container {CONTAINER} cannot be created and is not this account's: on Ceph RGW bucket "
    "names are shared by all accounts unless rgw keystone implicit tenants is on, so another "
    "account may own a bucket of that name; remove that bucket or turn implicit tenants on"
)


def refusal(response, todo: str = "") -> str:
    """An object-store error answer in one line: status, the store's own reason text (Swift: an HTML
    page; Ceph RGW: a code such as BucketAlreadyExists) and what to do about it (`todo`, or what
    usually helps with that status)."""
    status = response.status_code
    reason = response.reason or ""
    text = answer_text(response.text or "", reason)
    todo = todo or WHAT_TO_DO.get(status) or (SERVER_FAILED if status >= 500 else "")
    return "; ".join(part for part in (f"HTTP {status} {reason}".strip() + (f": {text}" if text else ""), todo) if part)


def answer_text(body: str, reason: str = "") -> str:
    """The words of an error body (HTML or XML tags dropped, entities decoded, whitespace collapsed),
    without a repeat of the HTTP reason phrase; a page-long one keeps its start and its end."""
    pieces = [" ".join(html.unescape(piece).split()) for piece in re.split(r"<[^>]*>", body)]
    return shorten(": ".join(piece for piece in pieces if piece and piece != reason), MAX_ANSWER_TEXT)


def unreachable(error: Exception) -> str:
    """A connection failure in one line: the URL, the system's reason (which keystoneauth puts at the
    end of a long message) and what to do."""
    message = " ".join(str(error).split())
    url = re.search(r"(?:connection to|Request to|exception for) (\S+?):? ", message)
    errno = re.search(r"\[Errno -?\d+\] [^'\")\]]+", message)
    if errno:
        reason = errno.group(0).strip()
    elif "timed out" in message:
        reason = "timed out"
    else:
        reason = message
    return (
        f"cannot connect to {url.group(1) if url else 'it'} ({reason}): check that the object store "
        "(Swift proxy or Ceph RGW) is running and reachable from this machine; the next sync publishes "
        "once it is"
    )
