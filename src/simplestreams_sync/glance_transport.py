"""An image's bytes sent to Glance below glanceclient: one chunked PUT, and what Glance's refusal means."""

from __future__ import annotations

import http.client
import re
from collections.abc import Iterable, Iterator

from keystoneauth1 import exceptions as ks_exceptions

from . import timeouts
from .openstack import USER_AGENT, Cloud, CloudError, describe
from .raw_http import chunked_put
from .source import SourceImage
from .transfer import VerifyingStream

# Glance's means to give an upload's size with a chunked body: glance_store allocates it at once
# (on RBD: one image of the right size, not one resized as the bytes arrive).
IMAGE_SIZE_HEADER = "X-Openstack-Image-Size"
# Glance reads an upload 64 KiB at a time (glance_store's write chunk); a chunked body sent in HTTP chunks
# of that size spares its server re-buffering larger ones: about a fifth of Glance's CPU per image here.
UPLOAD_PIECE = 64 * 1024


def send_image_data(cloud: Cloud, url: str, image_id: str, stream: VerifyingStream) -> None:
    """PUT the verified stream to `url` (an image's /file or /stage), chunked; CloudError when Glance
    refuses it or the connection fails."""
    try:
        headers = {
            **(cloud.session.get_auth_headers() or {}),
            "User-Agent": USER_AGENT,
            "Content-Type": "application/octet-stream",
            **({IMAGE_SIZE_HEADER: str(stream.image.size)} if stream.image.size is not None else {}),
        }
        status, body = chunked_put(url, pieces(stream), headers, verify=cloud.verify, timeout=timeouts.UPLOAD_ANSWER)
    except (OSError, http.client.HTTPException, ks_exceptions.ClientException) as error:
        raise CloudError(f"glance: upload of {image_id} failed: {describe(error)}") from None
    if status == 413:
        raise CloudError(too_large(image_id, stream.image, cloud.project_id, plain(body)))
    if status >= 400:
        raise CloudError(f"glance: upload of {image_id} refused: HTTP {status} {plain(body)[:300]}")


def pieces(chunks: Iterable[bytes], size: int = UPLOAD_PIECE) -> Iterator[memoryview]:
    """The chunks as slices of at most `size` bytes, without copying. A chunk is only cut once the
    verifying stream has let it through, so a bad last chunk still never reaches Glance."""
    for chunk in chunks:
        view = memoryview(chunk)
        for start in range(0, len(view), size):
            yield view[start : start + size]


def plain(body: str) -> str:
    """Glance's error body (text or HTML) as one line: its status line, then the explanation."""
    return " ".join(re.sub(r"<[^>]*>", " ", body).split())


def too_large(image_id: str, image: SourceImage, project_id: str, answer: str) -> str:
    """What a 413 to an upload means: which of Glance's limits the image went over, and what to do."""
    what = f"glance refused image {image_id} ({image.size} bytes)" if image.size else f"glance refused image {image_id}"
    lowered = answer.lower()
    if "storage quota" in lowered:
        return (
            f"{what}: it would take project {project_id} over Glance's user_storage_quota "
            f"(Glance says: {answer}); delete images or raise user_storage_quota in glance-api.conf"
        )
    if "image_size_total" in lowered:
        return (
            f"{what}: it would take project {project_id} over its image_size_total limit "
            f"(Keystone unified limits; Glance says: {answer}); raise that limit or delete images"
        )
    if "too large" in lowered:
        return (
            f"{what}: larger than Glance's image_size_cap (Glance says: {answer}); raise image_size_cap "
            "in glance-api.conf, or leave the image out with item_filters"
        )
    return f"{what}: HTTP 413 {answer}"
