"""Which of our images to delete after a sync, and which to keep and say why.

Per product of a mirror, the versions the source selection keeps (newest `max` passing the filters)
stay; older versions of ours are superseded and deleted, but only once every selected item of that
product is active and verified in Glance, and never when the image is protected or a server uses it.
Images whose product no longer passes any mirror's filters are never deleted: they are listed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from .source import SourceImage


class Kept(NamedTuple):
    """An image kept although not selected, why, and whether that stays true for as long as Glance and the
    sources stay as they are (settled): the quick check observes those, not Nova's servers."""

    image: dict
    reason: str
    settled: bool


@dataclass
class RetentionPlan:
    delete: list[dict] = field(default_factory=list)
    keep: list[Kept] = field(default_factory=list)


def is_protected(image: dict) -> bool:
    return str(image.get("protected")).lower() == "true"


def _group(image: dict) -> tuple:
    return (image.get("source_content_id"), image.get("product_name"))


def plan_retention(
    desired: list[SourceImage], verified: list[dict], in_use: set[str], all_sources_read: bool = True
) -> RetentionPlan:
    selected_versions: dict[tuple, set[str]] = {}
    selected_items: dict[tuple, set[tuple]] = {}
    for wanted in desired:
        group = (wanted.source_content_id, wanted.product_name)
        selected_versions.setdefault(group, set()).add(wanted.version_name)
        selected_items.setdefault(group, set()).add((wanted.version_name, wanted.item_name))
    present: dict[tuple, set[tuple]] = {}
    for image in verified:
        present.setdefault(_group(image), set()).add((image.get("version_name"), image.get("item_name")))

    plan = RetentionPlan()
    for image in verified:
        group = _group(image)
        version = image.get("version_name") or ""
        if group not in selected_versions:
            plan.keep.append(
                Kept(image, "its product is no longer selected by any mirror's filters; not deleted", True)
                if all_sources_read
                else Kept(image, "not offered by the mirrors read in this run", False)
            )
        elif version in selected_versions[group]:
            continue
        elif version > max(selected_versions[group]):
            plan.keep.append(Kept(image, "newer than anything the source offers; not deleted", True))
        elif not selected_items[group] <= present.get(group, set()):
            plan.keep.append(Kept(image, "superseded, kept until its replacement is active and verified", False))
        elif is_protected(image):
            plan.keep.append(Kept(image, "superseded but protected", True))
        elif image["id"] in in_use:
            plan.keep.append(Kept(image, "superseded but in use by a server", False))
        else:
            plan.delete.append(image)
    return plan
