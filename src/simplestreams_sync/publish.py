"""Juju-readable image-ids metadata, built from Glance and published to the object store (Swift or Ceph
RGW); publish_local.py writes the same for the unit's own web server."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from keystoneauth1 import exceptions as ks_exceptions

from . import api, early_login
from ._simplestreams import util
from .metadata_layout import INDEX_PATH, products_path
from .object_store import CONTAINER, checked, ensure_public_container, refusal, unreachable
from .openstack import Cloud, CloudError, describe
from .quick_check import Observations
from .state import INTERFACES

LOG = logging.getLogger(__name__)

PREFIX = "data/"
# Juju expects these on every item, so products_condense must not move them up the tree.
STICKY_KEYS = ["ftype", "md5", "sha256", "size", "name", "id", "endpoint", "region"]
NOT_PUBLISHED_KEYS = ("path",)  # a source-relative path means nothing next to a Glance id


def metadata_url_at(storage_url: str) -> str:
    """The metadata's URL under an object-store account URL: what product-streams points at."""
    return f"{storage_url}/{CONTAINER}/{PREFIX.rstrip('/')}"


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

    @property
    def index_url(self) -> str:
        """The index's URL, as a reader gets it."""
        ...

    def publish(self, tree: dict, cloud_name: str) -> bool:
        """Products file first, index last, each replaced whole, then read back as Juju reads them;
        False when what is published already says the same. Raises CloudError when it could not."""
        ...

    def listed_content_ids(self) -> set[str]:
        """The content ids the published index lists (none when there is no index yet)."""
        ...

    def product_streams_urls(self) -> dict[str, str]:
        """What keystone's product-streams endpoint should point at, per interface."""
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
    def start_warm_up(cloud: Cloud) -> threading.Thread:
        """Have Swift validate our token (a request to Keystone) while Glance is listed and images upload;
        the publish waits for that thread, so that its requests, made at once, find the token validated
        rather than each having Swift validate it."""
        warm_up = threading.Thread(target=SwiftPublisher._warm_up, args=(cloud,), daemon=True)
        warm_up.start()
        return warm_up

    @staticmethod
    def _warm_up(cloud: Cloud) -> None:
        """A HEAD of the container, unless the run sent it before its imports; failures are the publish's
        to report."""
        try:
            publisher = SwiftPublisher(cloud)
            if early_login.object_store_warmed_up(publisher.container_url, cloud.session.get_token() or ""):
                return
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

    @property
    def index_url(self) -> str:
        return self._object_url(INDEX_PATH)

    def listed_content_ids(self) -> set[str]:
        try:
            response = self.session.request(self.index_url, "GET", raise_exc=False)
        except ks_exceptions.ClientException as error:
            raise CloudError(f"swift: GET {self.index_url}: {describe(error)}") from None
        if response.status_code not in (200, 404):
            raise CloudError(f"swift: GET {self.index_url}: HTTP {response.status_code}")
        if response.status_code == 404:
            return set()
        try:
            index = response.json().get("index")
        except (ValueError, AttributeError):
            return set()
        return set(index) if isinstance(index, dict) else set()

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
            with ThreadPoolExecutor(max_workers=2) as pool:  # what is published is read while the HEAD goes
                paths = (INDEX_PATH, products_path(tree["content_id"]))
                stored = {path: pool.submit(self._read, path, {}) for path in paths}
                self.read_acl, self.repaired_acl = ensure_public_container(self._send, self.container_url)
            self.observations.container(self.container_url)
            entry = index_entry(tree, self.cloud.region, self.cloud.public_auth_url, cloud_name)
            return write_in_order(
                tree,
                entry,
                read=lambda path: stored.pop(path).result() if path in stored else self._read(path, {}),
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
        clouds' entries may change meanwhile) must be what the object store holds for us. Both go at once."""
        with ThreadPoolExecutor(max_workers=2) as pool:
            served = {
                path: pool.submit(self._read_anonymously, path) for path in (products_path(content_id), INDEX_PATH)
            }
            misread = misread_path(lambda path: served[path].result(), content_id, products, entry)
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
