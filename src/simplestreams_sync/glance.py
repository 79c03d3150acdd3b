"""Glance: the images this tool owns, and how a verified image gets there."""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import re
import time
from collections.abc import Iterable, Iterator

import glanceclient
from glanceclient import exc as glance_exc
from keystoneauth1 import exceptions as ks_exceptions

from . import api
from .openstack import USER_AGENT, Cloud, CloudError, describe
from .plan import HIDDEN_PROPERTY, VERIFIED_PROPERTY
from .raw_http import chunked_put
from .source import SourceImage
from .transfer import VerificationError, VerifyingStream

LOG = logging.getLogger(__name__)

# What Glance's 409 to a DELETE says when the image store (RBD) still has clones of the image.
IN_USE_IN_STORE = "because it is in use"
DEFAULT_HASH_ALGO = "sha512"
DELETE_ATTEMPTS = 5
RETRY_ATTEMPTS = 3  # of a call that changes nothing when repeated (a read, a JSON-patch PATCH)
RETRY_DELAY = 0.5  # seconds before the first retry, doubled after each
# Worth another try: Glance busy or restarting, or the connection dropped (glanceclient raises
# CommunicationError for what keystoneauth calls ConnectFailure, which its own requests raise).
TRANSIENT_ERRORS = (
    glance_exc.HTTPInternalServerError,
    glance_exc.HTTPServiceUnavailable,
    glance_exc.CommunicationError,
    ks_exceptions.ConnectFailure,
)
JSON_PATCH = "application/openstack-images-v2.1-json-patch"
# Glance's means to give an upload's size with a chunked body: glance_store allocates it at once
# (on RBD: one image of the right size, not one resized as the bytes arrive).
IMAGE_SIZE_HEADER = "X-Openstack-Image-Size"
# Glance reads an upload 64 KiB at a time (glance_store's write chunk); a chunked body sent in HTTP chunks
# of that size spares its server re-buffering larger ones: about a fifth of Glance's CPU per image here.
UPLOAD_PIECE = 64 * 1024
UPLOAD_TIMEOUT = 300  # seconds without progress on the upload connection (Glance hashes and stores at the end)

ARCHITECTURES = {
    "amd64": "x86_64",
    "i386": "i686",
    "ppc64el": "ppc64le",
    "powerpc": "ppc",
    "armhf": "armv7l",
    "arm64": "aarch64",
}
LXC_FTYPES = {"root.tar.gz": "root-tar", "root.tar.xz": "root-tar", "squashfs": "squashfs"}
QEMU_FTYPES = {"disk.img": "qcow2", "disk1.img": "qcow2"}
# Keys of the flattened source item that become top-level properties rather than metadata.
CARRIED_KEYS = ("product_name", "version_name", "item_name", "path")


def glance_architecture(arch: str) -> str:
    return ARCHITECTURES.get(arch.lower(), arch.lower())


def disk_format(ftype: str | None) -> str:
    ftype = (ftype or "").lower()
    return LXC_FTYPES.get(ftype) or QEMU_FTYPES.get(ftype) or "qcow2"


def hypervisor_type(ftype: str | None) -> str | None:
    ftype = (ftype or "").lower()
    if ftype in LXC_FTYPES:
        return "lxc"
    if ftype in QEMU_FTYPES:
        return "qemu"
    return None


def image_properties(
    image: SourceImage, content_id: str, custom: dict[str, str], hypervisor_mapping: bool
) -> dict[str, str]:
    """Properties as sstream-mirror-glance sets them, plus the operator's custom ones."""
    meta = image.metadata
    properties = {
        "content_id": content_id,
        "source_content_id": image.source_content_id,
        "product_name": image.product_name,
        "version_name": image.version_name,
        "item_name": image.item_name,
        "os_distro": meta.get("os"),
        "os_version": meta.get("version"),
    }
    if "arch" in meta:
        properties["architecture"] = glance_architecture(meta["arch"])
    if hypervisor_mapping and hypervisor_type(meta.get("ftype")):
        properties["hypervisor_type"] = hypervisor_type(meta.get("ftype"))
    properties.update(custom)
    kept = {k: v for k, v in meta.items() if k not in CARRIED_KEYS}
    properties["simplestreams_metadata"] = json.dumps(kept, sort_keys=True)
    return {key: str(value) for key, value in properties.items() if value is not None}


def _pieces(chunks: Iterable[bytes], size: int = UPLOAD_PIECE) -> Iterator[memoryview]:
    """The chunks as slices of at most `size` bytes, without copying. A chunk is only cut once the
    verifying stream has let it through, so a bad last chunk still never reaches Glance."""
    for chunk in chunks:
        view = memoryview(chunk)
        for start in range(0, len(view), size):
            yield view[start : start + size]


class ImageInUseByStore(CloudError):
    """Glance refused to delete an image because its store still uses it (RBD clones of its snapshot)."""


def _pointer(name: str) -> str:
    """The JSON pointer (RFC 6901) to an image's property."""
    return "/" + name.replace("~", "~0").replace("/", "~1")


def _plain(body: str) -> str:
    """Glance's error body (text or HTML) as one line: its status line, then the explanation."""
    return " ".join(re.sub(r"<[^>]*>", " ", body).split())


class GlanceStore:
    """The Glance side of a sync: list what we own, upload verified, delete what is wrong."""

    def __init__(self, cloud: Cloud):
        self.cloud = cloud
        self.client = glanceclient.Client(
            "2", session=cloud.session, interface=cloud.identity.interface, region_name=cloud.region
        )
        endpoint = cloud.endpoint("image")
        if not endpoint:
            raise CloudError(f"no image (Glance) endpoint in the catalog for region {cloud.region}")
        self.endpoint = endpoint.rstrip("/").removesuffix("/v2")

    def _call(self, what: str, function, *args, **kwargs):
        try:
            return function(*args, **kwargs)
        except (glance_exc.BaseException, glance_exc.ClientException, ks_exceptions.ClientException) as error:
            raise CloudError(f"glance: {what}: {describe(error)}") from None

    def _retried(self, what: str, function, *args, attempts: int = RETRY_ATTEMPTS, also_retried: tuple = (), **kwargs):
        """_call for a call that changes nothing more when repeated: tried again on TRANSIENT_ERRORS (and
        `also_retried`), up to `attempts` times in all."""
        delay = RETRY_DELAY
        for attempt in range(1, attempts + 1):
            try:
                return function(*args, **kwargs)
            except (*TRANSIENT_ERRORS, *also_retried) as error:
                if attempt == attempts:
                    raise CloudError(f"glance: {what}: {describe(error)}") from None
                LOG.warning("glance: %s failed (%s); retrying in %.1fs", what, type(error).__name__, delay)
                time.sleep(delay)
                delay *= 2
            except (glance_exc.BaseException, glance_exc.ClientException, ks_exceptions.ClientException) as error:
                raise CloudError(f"glance: {what}: {describe(error)}") from None
        raise AssertionError("unreachable")

    def owned_images(self, content_id: str) -> list[dict]:
        """Every image of our project carrying our content_id, whatever its status, hidden ones too
        (Glance lists those only when asked for them alone)."""
        listings = api.owned_image_filters(self.cloud.project_id, content_id)
        images = self._retried(
            "list images",
            lambda: [dict(image) for filters in listings for image in self.client.images.list(filters=filters)],
        )
        return [image for image in images if api.is_ours(image, self.cloud.project_id, content_id)]

    def hash_algo(self, known_images: Iterable[dict]) -> str:
        """The algorithm Glance uses for os_hash_value, learnt from an active image when there is one."""
        for image in known_images:
            if image.get("status") == "active" and image.get("os_hash_algo"):
                return image["os_hash_algo"]
        sample = self._retried(
            "list images",
            lambda: [
                dict(image) for image in self.client.images.list(limit=1, page_size=1, filters={"status": "active"})
            ],
        )
        if sample and sample[0].get("os_hash_algo"):
            return sample[0]["os_hash_algo"]
        return DEFAULT_HASH_ALGO

    def upload(
        self,
        image: SourceImage,
        name: str,
        properties: dict,
        visibility: str,
        stream: VerifyingStream,
        convert_timeout: int | None = None,
    ) -> dict:
        """Create the image, stream the verified bytes into it, check what Glance stored.

        With `convert_timeout`, the bytes are staged and imported (glance-direct) so that Glance
        converts them to raw, waiting at most that many seconds. On any error the image is deleted,
        so nothing half-made or wrong is left behind.
        """
        created = self._call(
            f"create {name}",
            self.client.images.create,
            name=name,
            disk_format=disk_format(image.metadata.get("ftype")),
            container_format="bare",
            visibility=visibility,
            **properties,
        )
        image_id = created["id"]
        try:
            if convert_timeout is None:
                self._send_data(image_id, "file", stream)
                stored = self.get(image_id)
                stream.check_stored(stored)
            else:
                self._send_data(image_id, "stage", stream)
                stored = self._import_and_wait(image_id, convert_timeout)
            self.mark_verified(image_id, stream.source_digest)
            return {**stored, VERIFIED_PROPERTY: stream.source_digest}
        except BaseException:
            self.delete_quietly(image_id)
            raise

    def _send_data(self, image_id: str, target: str, stream: VerifyingStream) -> None:
        """PUT the stream to /file (upload) or /stage (interoperable import), chunked."""
        url = f"{self.endpoint}/v2/images/{image_id}/{target}"
        try:
            headers = {
                **(self.cloud.session.get_auth_headers() or {}),
                "User-Agent": USER_AGENT,
                "Content-Type": "application/octet-stream",
                **({IMAGE_SIZE_HEADER: str(stream.image.size)} if stream.image.size is not None else {}),
            }
            status, body = chunked_put(url, _pieces(stream), headers, verify=self.cloud.verify, timeout=UPLOAD_TIMEOUT)
        except (OSError, http.client.HTTPException, ks_exceptions.ClientException) as error:
            raise CloudError(f"glance: upload of {image_id} failed: {describe(error)}") from None
        if status == 413:
            raise CloudError(self._too_large(image_id, stream.image, _plain(body)))
        if status >= 400:
            raise CloudError(f"glance: upload of {image_id} refused: HTTP {status} {_plain(body)[:300]}")

    def _too_large(self, image_id: str, image: SourceImage, answer: str) -> str:
        """What a 413 to an upload means: which of Glance's limits the image went over, and what to do."""
        what = (
            f"glance refused image {image_id} ({image.size} bytes)"
            if image.size
            else f"glance refused image {image_id}"
        )
        lowered = answer.lower()
        if "storage quota" in lowered:
            return (
                f"{what}: it would take project {self.cloud.project_id} over Glance's user_storage_quota "
                f"(Glance says: {answer}); delete images or raise user_storage_quota in glance-api.conf"
            )
        if "image_size_total" in lowered:
            return (
                f"{what}: it would take project {self.cloud.project_id} over its image_size_total limit "
                f"(Keystone unified limits; Glance says: {answer}); raise that limit or delete images"
            )
        if "too large" in lowered:
            return (
                f"{what}: larger than Glance's image_size_cap (Glance says: {answer}); raise image_size_cap "
                "in glance-api.conf, or leave the image out with item_filters"
            )
        return f"{what}: HTTP 413 {answer}"

    def _import_and_wait(self, image_id: str, timeout: int) -> dict:
        self._call(f"import {image_id}", self.client.images.image_import, image_id, method="glance-direct")
        deadline = time.monotonic() + timeout
        delay = 0.5
        while True:
            stored = self.get(image_id)
            if stored.get("status") == "active":
                if stored.get("disk_format") != "raw":
                    raise VerificationError(
                        f"Glance imported {image_id} as {stored.get('disk_format')}, "
                        "not raw: is the image_conversion import plugin enabled?"
                    )
                return stored
            if stored.get("os_glance_failed_import") or stored.get("status") == "killed":
                raise CloudError(f"glance: import of {image_id} failed (status {stored.get('status')})")
            if time.monotonic() > deadline:
                raise CloudError(
                    f"glance: import of {image_id} not finished after {timeout}s (status {stored.get('status')})"
                )
            time.sleep(delay)
            delay = min(delay * 2, 5)

    def get(self, image_id: str) -> dict:
        return dict(self._retried(f"get {image_id}", self.client.images.get, image_id))

    def delete(self, image_id: str) -> None:
        """Delete an image, retrying briefly: a busy database (500) or a conflict (409) while Glance
        still finishes an aborted upload must not leave the image behind. A 409 because the image store
        still uses the image is no passing state: ImageInUseByStore, at once."""
        self._retried(
            f"delete {image_id}",
            self._delete_once,
            image_id,
            attempts=DELETE_ATTEMPTS,
            also_retried=(glance_exc.HTTPConflict,),
        )

    def _delete_once(self, image_id: str) -> None:
        try:
            self.client.images.delete(image_id)
        except glance_exc.HTTPNotFound:
            return
        except glance_exc.HTTPConflict as error:
            if IN_USE_IN_STORE in str(error):
                raise ImageInUseByStore(f"glance: delete {image_id}: {describe(error)}") from None
            raise

    def delete_quietly(self, image_id: str) -> None:
        """Delete after a failed upload; a failure is logged (the next run cleans up what is left)."""
        try:
            self.delete(image_id)
        except CloudError as error:
            LOG.error("could not delete image %s: %s; the next sync will", image_id, error)

    def set_properties(self, image_id: str, **properties: str | bool) -> dict:
        """Set properties (or core attributes such as os_hidden) in one request; the image as it is now."""
        return self._patch(image_id, [{"op": "add", "path": _pointer(name), "value": value}
                                      for name, value in properties.items()])  # fmt: skip

    def remove_properties(self, image_id: str, *names: str) -> dict:
        """Remove properties the image has (Glance answers 409 for one it does not); the image as it is now."""
        return self._patch(image_id, [{"op": "remove", "path": _pointer(name)} for name in names])

    def _patch(self, image_id: str, operations: list[dict]) -> dict:
        """One JSON-patch PATCH (glanceclient's update would GET the image before and after it)."""
        _, image = self._retried(
            f"update {image_id}",
            self.client.http_client.patch,
            f"/v2/images/{image_id}",
            headers={"Content-Type": JSON_PATCH},
            data=json.dumps(operations),
        )
        return image

    def set_hidden(self, image_id: str, hidden: bool) -> None:
        """Hide an image from image lists (os_hidden), marked as hidden by us; or show it again."""
        if hidden:
            self.set_properties(image_id, os_hidden=True, **{HIDDEN_PROPERTY: "true"})
        else:
            self._patch(image_id, [{"op": "add", "path": "/os_hidden", "value": False},
                                   {"op": "remove", "path": _pointer(HIDDEN_PROPERTY)}])  # fmt: skip

    def mark_verified(self, image_id: str, digest: str) -> None:
        self.set_properties(image_id, **{VERIFIED_PROPERTY: digest})

    def stored_digest(self, image_id: str, algo: str) -> str:
        """Hash the bytes Glance serves for an image (used to adopt images uploaded before marking)."""
        digest = hashlib.new(algo)
        for chunk in self._call(f"download {image_id}", self.client.images.data, image_id):
            digest.update(chunk)
        return f"{algo}:{digest.hexdigest()}"
