"""Juju-readable image-ids metadata, built from Glance and published to Swift."""

from __future__ import annotations

import json
import logging

from keystoneauth1 import exceptions as ks_exceptions

from ._simplestreams import util
from .openstack import Cloud, CloudError, describe

LOG = logging.getLogger(__name__)

CONTAINER = "simplestreams"
PREFIX = "data/"
INDEX_PATH = "streams/v1/index.json"
PUBLIC_READ_ACL = ".r:*,.rlistings"
# Juju expects these on every item, so products_condense must not move them up the tree.
STICKY_KEYS = ["ftype", "md5", "sha256", "size", "name", "id", "endpoint", "region"]
NOT_PUBLISHED_KEYS = ("path",)  # a source-relative path means nothing next to a Glance id


def products_path(content_id: str) -> str:
    return f"streams/v1/{content_id}.json"


def image_ids_tree(content_id: str, images: list[dict], region: str, endpoint: str,
                   hypervisor_mapping: bool) -> dict:
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


class ObjectStoreMissing(CloudError):
    """The catalog has no object-store endpoint for our region and interface."""


class SwiftPublisher:
    """Writes the metadata to the `simplestreams` container, publicly readable.

    Talks to Swift's API through the keystone session (no swiftclient) so that proxy use is explicit:
    `Cloud.object_store_session` goes through the source proxy only when the operator asks for it.
    """

    def __init__(self, cloud: Cloud):
        self.cloud = cloud
        url = cloud.endpoint("object-store")
        if not url:
            raise ObjectStoreMissing(f"no object-store (Swift) endpoint in the catalog for region {cloud.region}; "
                             "images were synced but no metadata was published")
        self.storage_url = url.rstrip("/")
        self.session = cloud.object_store_session
        self.etags: dict[str, str] = {}  # object URL -> ETag, as last read or written

    @staticmethod
    def warm_up(cloud: Cloud) -> None:
        """Have Swift validate our token (a request to Keystone) while Glance is listed and images
        upload, so that the publish at the end does not wait for it. Failures are the publish's to report."""
        try:
            publisher = SwiftPublisher(cloud)
            publisher.session.request(f"{publisher.storage_url}/{CONTAINER}", "HEAD", raise_exc=False)
        except (CloudError, ks_exceptions.ClientException) as error:
            LOG.debug("swift warm-up: %s", error)

    @property
    def metadata_url(self) -> str:
        """What the product-streams endpoint should point at."""
        return f"{self.storage_url}/{CONTAINER}/{PREFIX.rstrip('/')}"

    def publish(self, tree: dict, cloud_name: str) -> bool:
        """Products file first, then the index that points at it: readers never see a dangling index.

        Returns False when what is published already says the same (nothing is rewritten then)."""
        try:
            index = self._read(INDEX_PATH, default={"format": "index:1.0", "index": {}})
            if not isinstance(index.get("index"), dict):
                LOG.warning("replacing unreadable %s", PREFIX + INDEX_PATH)
                index = {"format": "index:1.0", "index": {}}
            entry = index_entry(tree, self.cloud.region, self.cloud.auth_url, cloud_name)
            if self._unchanged(tree, index["index"].get(tree["content_id"]), entry):
                return False
            self._request("PUT", f"{self.storage_url}/{CONTAINER}", headers={"X-Container-Read": PUBLIC_READ_ACL})
            self._put(products_path(tree["content_id"]), tree)
            index["index"][tree["content_id"]] = entry
            index["updated"] = tree["updated"]
            self._put(INDEX_PATH, index)
            return True
        except ks_exceptions.ConnectFailure:  # its text, cut to one line, would lose the reason behind the URL
            raise CloudError(f"swift {self.storage_url}: cannot connect") from None
        except ks_exceptions.ClientException as error:
            raise CloudError(f"swift {self.storage_url}: {describe(error)}") from None

    def _unchanged(self, tree: dict, published_entry: dict | None, entry: dict) -> bool:
        if not published_entry or _without_updated(published_entry) != _without_updated(entry):
            return False
        return _without_updated(self._read(products_path(tree["content_id"]), default={})) == \
            _without_updated(tree)

    def _object_url(self, path: str) -> str:
        return f"{self.storage_url}/{CONTAINER}/{PREFIX}{path}"

    def _request(self, method: str, url: str, **kwargs):
        response = self.session.request(url, method, raise_exc=False, **kwargs)
        if response.status_code >= 400 and not (method == "GET" and response.status_code == 404):
            raise CloudError(f"swift: {method} {url}: HTTP {response.status_code}{_error_code(response)}")
        return response

    def _read(self, path: str, default: dict) -> dict:
        response = self._request("GET", self._object_url(path))
        if response.status_code == 404:
            return default
        self._remember_etag(path, response)
        try:
            data = response.json()
        except ValueError:
            return default
        return data if isinstance(data, dict) else default

    def _put(self, path: str, data: dict) -> None:
        response = self._request("PUT", self._object_url(path), data=util.dump_data(data),
                                 headers={"Content-Type": "application/json"})
        self._remember_etag(path, response)

    def _remember_etag(self, path: str, response) -> None:
        etag = response.headers.get("ETag", "").strip('"')
        if etag:
            self.etags[self._object_url(path)] = etag


def _without_updated(data: dict) -> dict:
    return {key: value for key, value in data.items() if key != "updated"}


def _error_code(response) -> str:
    """Ceph RGW names the error in a one-word text/plain body (BucketAlreadyExists, AccessDenied,
    NoSuchBucket); Swift's error bodies are HTML pages, left out."""
    body = response.text.strip()
    if response.headers.get("Content-Type", "").startswith("text/plain") and body.isalnum() and len(body) <= 64:
        return f" {body}"
    return ""
