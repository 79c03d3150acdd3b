"""What a run does to images Glance already has: adopt (verify and mark), delete, mark the latest, hide
and show again; each effect said and recorded through the run's report."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .image_listing import ImageInUseByStore
from .openstack import CloudError
from .plan import GlanceImage, Plan
from .report import RunReport

if TYPE_CHECKING:  # glanceclient loads only once a run changes Glance (engine.SyncRun.glance)
    from .glance import GlanceStore


def adopt(glance: GlanceStore, images: list[GlanceImage], report: RunReport) -> tuple[set, dict, set]:
    """Hash the bytes Glance serves for unmarked images of ours (a run died before marking them, or an
    older tool made them) and mark those that match the source: (adopted ids, id -> how its bytes differ,
    ids that could not be hashed)."""
    adopted, mismatched, not_verified = set(), {}, set()
    for image in images:
        assert image.source_digest is not None
        try:
            actual = glance.stored_digest(image.id, image.source_digest.split(":")[0])
            if actual == image.source_digest:
                glance.mark_verified(image.id, image.source_digest)
                adopted.add(image.id)
            else:
                mismatched[image.id] = f"its bytes ({actual}) do not match the source ({image.source_digest})"
        except CloudError as error:
            report.error(f"could not verify existing image {image.id}: {error}")
            not_verified.add(image.id)
    return adopted, mismatched, not_verified


def mark_latest(glance: GlanceStore, images: list[GlanceImage], report: RunReport) -> None:
    """`latest=true` on the newest image of each source + os_version + architecture, off the others."""
    newest: dict[tuple, GlanceImage] = {}
    for image in images:
        group = (image.source_content_id, image.properties.get("os_version"), image.properties.get("architecture"))
        if group not in newest or image.version_name > newest[group].version_name:
            newest[group] = image
    latest_ids = {image.id for image in newest.values()}
    for image in images:
        try:
            if image.id in latest_ids and image.properties.get("latest") != "true":
                glance.set_properties(image.id, latest="true")
            elif image.id not in latest_ids and "latest" in image.properties:
                glance.remove_properties(image.id, "latest")
        except CloudError as error:
            report.error(f"could not update the latest property of {image.id}: {error}")


def hide_and_show(glance: GlanceStore, plan: Plan, report: RunReport) -> None:
    """Hide what the plan keeps only because it is in use; show again what it publishes once more."""
    for image, hidden in [*((i, True) for i in plan.hide), *((i, False) for i in plan.unhide)]:
        try:
            glance.set_hidden(image.id, hidden)
        except CloudError as error:
            report.error(f"could not {'hide' if hidden else 'show'} image {image.id}: {error}")


def delete(glance: GlanceStore, image: GlanceImage, reason: str, report: RunReport) -> bool | type[ImageInUseByStore]:
    """Delete one of our images and say so; True when it is gone, ImageInUseByStore when the image
    store refused because it still uses it."""
    try:
        glance.delete(image.id)
    except ImageInUseByStore:
        return ImageInUseByStore
    except CloudError as error:
        report.error(f"could not delete image {image.id} ({reason}): {error}")
        return False
    report.deleted(image, reason)
    return True
