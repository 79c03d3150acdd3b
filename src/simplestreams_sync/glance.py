"""Glance: the images this tool owns, as an adapter over glanceclient that raises CloudError."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable

import glanceclient
from glanceclient import exc as glance_exc
from keystoneauth1 import exceptions as ks_exceptions

from . import api, in_flight
from .glance_transport import send_image_data
from .image_listing import RETRY_ATTEMPTS, RETRY_DELAY, ImageInUseByStore, glance_endpoint, listed_hash_algo
from .openstack import Cloud, CloudError, describe
from .plan import HIDDEN_PROPERTY, VERIFIED_PROPERTY, VERIFIED_STORED_PROPERTY
from .retry import retried
from .transfer import VerifyingStream

LOG = logging.getLogger(__name__)
# What Glance's 409 to a DELETE says when the image store (RBD) still has clones of the image.
IN_USE_IN_STORE = "because it is in use"
DEFAULT_HASH_ALGO = "sha512"
DELETE_ATTEMPTS = 5
# Worth another try: Glance busy or restarting, or the connection dropped (glanceclient raises
# CommunicationError for what keystoneauth calls ConnectFailure, which its own requests raise).
TRANSIENT_ERRORS = (
    glance_exc.HTTPInternalServerError,
    glance_exc.HTTPServiceUnavailable,
    glance_exc.CommunicationError,
    ks_exceptions.ConnectFailure,
)
CLIENT_ERRORS = (glance_exc.BaseException, glance_exc.ClientException, ks_exceptions.ClientException)
JSON_PATCH = "application/openstack-images-v2.1-json-patch"


def _pointer(name: str) -> str:
    """The JSON pointer (RFC 6901) to an image's property."""
    return "/" + name.replace("~", "~0").replace("/", "~1")


class GlanceStore:
    """The Glance side of a sync: list what we own, create, fill, mark, hide and delete images."""

    def __init__(self, cloud: Cloud):
        self.cloud = cloud
        self.client = glanceclient.Client(
            "2", session=cloud.session, interface=cloud.identity.interface, region_name=cloud.region
        )
        self.endpoint = glance_endpoint(cloud)

    def _call(self, what: str, call: Callable, *, attempts: int = 1, also_retried: tuple = ()):
        """`call()`, its client errors as CloudError; tried up to `attempts` times on TRANSIENT_ERRORS
        (and `also_retried`), for a call that changes nothing more when repeated."""
        try:
            transient = (*TRANSIENT_ERRORS, *also_retried)
            return retried(
                call, what=f"glance: {what}", attempts=attempts, first_delay=RETRY_DELAY, transient=transient
            )
        except CLIENT_ERRORS as error:
            raise CloudError(f"glance: {what}: {describe(error)}") from None

    def _list(self, **kwargs) -> list[dict]:
        return self._call(
            "list images", lambda: [dict(i) for i in self.client.images.list(**kwargs)], attempts=RETRY_ATTEMPTS
        )

    def hash_algo(self, known_images: Iterable[dict]) -> str:
        """The algorithm Glance uses for os_hash_value, learnt from an active image when there is one."""
        listed = listed_hash_algo(known_images)
        if listed:
            return listed
        sample = self._list(limit=1, page_size=1, filters={"status": "active"})
        if sample and sample[0].get("os_hash_algo"):
            return sample[0]["os_hash_algo"]
        return DEFAULT_HASH_ALGO

    def create(self, name: str, disk_format: str, visibility: str, properties: dict) -> dict:
        """A plain POST (Glance checks the fields): glanceclient's model fetches the schema, then checks the
        whole image against it again for each property set."""
        fields = {"name": name, "disk_format": disk_format, "container_format": "bare", "visibility": visibility}
        post = self.client.http_client.post
        return self._image(f"create {name}", lambda: post("/v2/images", data={**fields, **properties}))

    def send_data(self, image_id: str, target: str, stream: VerifyingStream) -> None:
        """PUT the stream to /file (upload) or /stage (interoperable import)."""
        url = f"{self.endpoint}/v2/images/{image_id}/{target}"
        send_image_data(self.cloud, url, image_id, stream, between_pieces=in_flight.beats(self, image_id))

    def start_import(self, image_id: str) -> None:
        image_import = self.client.images.image_import
        self._call(f"import {image_id}", lambda: image_import(image_id, method="glance-direct"))

    def get(self, image_id: str) -> dict:
        get = self.client.http_client.get
        return self._image(f"get {image_id}", lambda: get(f"/v2/images/{image_id}"), attempts=RETRY_ATTEMPTS)

    def _image(self, what: str, call: Callable, attempts: int = 1) -> dict:
        """The image in the answer of an http_client `call` (a link to itself left out, as glanceclient does)."""
        _, image = self._call(what, call, attempts=attempts)
        for field in api.UNLISTED_FIELDS:
            image.pop(field, None)
        return image

    def delete(self, image_id: str) -> None:
        """Delete an image, retrying briefly: a busy database (500) or a conflict (409) while Glance
        still finishes an aborted upload must not leave the image behind. A 409 because the image store
        still uses the image is no passing state: ImageInUseByStore, at once."""
        conflict = (glance_exc.HTTPConflict,)
        self._call(
            f"delete {image_id}", lambda: self._delete_once(image_id), attempts=DELETE_ATTEMPTS, also_retried=conflict
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

    def set_properties(self, image_id: str, **properties: str | bool) -> dict:
        """Set properties (or core attributes such as os_hidden) in one request; the image as it is now."""
        return self._patch(image_id, [{"op": "add", "path": _pointer(name), "value": value}
                                      for name, value in properties.items()])  # fmt: skip

    def remove_properties(self, image_id: str, *names: str) -> dict:
        """Remove properties; one already gone is removed too (a retry after Glance applied the first
        try finds it gone). The image as it is now."""
        operations = [{"op": "remove", "path": _pointer(name)} for name in names]
        return self._patch(image_id, operations, done=lambda image: not set(names) & set(image))

    def _patch(self, image_id: str, operations: list[dict], done: Callable[[dict], bool] | None = None) -> dict:
        """One JSON-patch PATCH (glanceclient's update would GET the image before and after it). A 409
        (a removal of what is not there) is success when `done(the image as it is)` says so."""
        patch = self.client.http_client.patch
        body = json.dumps(operations)
        what = f"update {image_id}"
        try:
            _, image = retried(
                lambda: patch(f"/v2/images/{image_id}", headers={"Content-Type": JSON_PATCH}, data=body),
                what=f"glance: {what}",
                attempts=RETRY_ATTEMPTS,
                first_delay=RETRY_DELAY,
                transient=TRANSIENT_ERRORS,
            )
        except glance_exc.HTTPConflict as error:
            if done is not None and done(current := self.get(image_id)):
                return current
            raise CloudError(f"glance: {what}: {describe(error)}") from None
        except CLIENT_ERRORS as error:
            raise CloudError(f"glance: {what}: {describe(error)}") from None
        return image

    def set_hidden(self, image_id: str, hidden: bool) -> None:
        """Hide an image from image lists (os_hidden), marked as hidden by us; or show it again."""
        if hidden:
            self.set_properties(image_id, os_hidden=True, **{HIDDEN_PROPERTY: "true"})
        else:
            operations: list[dict] = [{"op": "add", "path": "/os_hidden", "value": False},
                          {"op": "remove", "path": _pointer(HIDDEN_PROPERTY)}]  # fmt: skip
            self._patch(image_id, operations, done=lambda i: not i.get("os_hidden") and HIDDEN_PROPERTY not in i)

    def mark_verified(self, image_id: str, source_digest: str, stored_digest: str = "") -> dict:
        """Mark the image verified against `source_digest`, and with `stored_digest` ("algo:hex" of the
        bytes this run sent) when there is one; the image as Glance answers."""
        marks = {
            VERIFIED_PROPERTY: source_digest,
            **({VERIFIED_STORED_PROPERTY: stored_digest} if stored_digest else {}),
        }
        return self.set_properties(image_id, **marks)

    def stored_digest(self, image_id: str, algo: str) -> str:
        """Hash the bytes Glance serves for an image (used to adopt images uploaded before marking)."""
        digest = hashlib.new(algo)

        def read() -> None:
            for chunk in self.client.images.data(image_id):
                digest.update(chunk)

        self._call(f"download {image_id}", read)
        return f"{algo}:{digest.hexdigest()}"
