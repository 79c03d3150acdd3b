"""An upload in flight, as another unit's sync sees it: its image updated every UPLOAD_BEAT seconds
while the bytes flow, and the longest it can stay unchanged (plan.py deletes an unfinished image only
once it has been unchanged for longer)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Protocol

from .openstack import CloudError
from .state import utc_now
from .timeouts import SOURCE_READ, UPLOAD_ANSWER

LOG = logging.getLogger(__name__)
# Updated only between two pieces: Glance cannot finish the upload then, and so a PATCH never overwrites
# the status and checksums its end writes.
UPLOAD_BEAT = 60.0
BEAT_PROPERTY = "sync_upload_alive"
BEAT_STATUSES = ("saving", "uploading")  # a PATCH before Glance's queued -> saving could undo that step
# Between this machine's clock and Glance's, and a beat Glance was briefly too busy to take.
CLOCK_MARGIN = timedelta(minutes=5)


class Images(Protocol):
    """What a beat needs of Glance (glance.GlanceStore)."""

    def get(self, image_id: str) -> dict: ...

    def set_properties(self, image_id: str, **properties: str | bool) -> dict: ...


def beats(glance: Images, image_id: str) -> Callable[[], None]:
    """What runs before each piece of an upload: the image updated every UPLOAD_BEAT seconds."""
    last_beat = [time.monotonic()]

    def maybe_beat() -> None:
        if time.monotonic() - last_beat[0] >= UPLOAD_BEAT:
            beat(glance, image_id)
            last_beat[0] = time.monotonic()

    return maybe_beat


def beat(glance: Images, image_id: str) -> None:
    try:
        if glance.get(image_id).get("status") in BEAT_STATUSES:
            glance.set_properties(image_id, **{BEAT_PROPERTY: utc_now()})
    except CloudError as error:
        LOG.warning("could not mark the upload of %s as in flight: %s", image_id, error)


def quiet_limit(convert_timeout: int | None) -> timedelta:
    """The longest an upload in flight leaves its image unchanged: a beat, then the next piece read
    (SOURCE_READ) and sent (UPLOAD_ANSWER), then Glance's answer (UPLOAD_ANSWER) or its import."""
    streaming = UPLOAD_BEAT + SOURCE_READ + 2 * UPLOAD_ANSWER
    return timedelta(seconds=max(streaming, convert_timeout or 0)) + CLOCK_MARGIN
