"""Which of our images to delete after a sync, and which to keep and say why.

Per product of a mirror, the versions the source selection keeps (newest `max` passing the filters)
stay; older versions of ours are superseded and deleted, but only once every selected item of that
product is active and verified in Glance, and never when the image is protected or a server uses it.
Images whose product no longer passes any mirror's filters are never deleted: they are listed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .source import SourceImage


@dataclass
class RetentionPlan:
    delete: list[dict] = field(default_factory=list)
    keep: list[tuple[dict, str]] = field(default_factory=list)  # (image, why it is kept although not selected)


def _group(image: dict) -> tuple:
    return (image.get("source_content_id"), image.get("product_name"))


def plan_retention(desired: list[SourceImage], verified: list[dict], in_use: set[str],
                   all_sources_read: bool = True) -> RetentionPlan:
    selected_versions: dict[tuple, set[str]] = {}
    selected_items: dict[tuple, set[tuple]] = {}
    for image in desired:
        group = (image.source_content_id, image.product_name)
        selected_versions.setdefault(group, set()).add(image.version_name)
        selected_items.setdefault(group, set()).add((image.version_name, image.item_name))
    present: dict[tuple, set[tuple]] = {}
    for image in verified:
        present.setdefault(_group(image), set()).add((image.get("version_name"), image.get("item_name")))

    plan = RetentionPlan()
    for image in verified:
        group = _group(image)
        version = image.get("version_name")
        if group not in selected_versions:
            plan.keep.append((image, "its product is no longer selected by any mirror's filters; not deleted"
                              if all_sources_read else "not offered by the mirrors read in this run"))
        elif version in selected_versions[group]:
            continue
        elif version > max(selected_versions[group]):
            plan.keep.append((image, "newer than anything the source offers; not deleted"))
        elif not selected_items[group] <= present.get(group, set()):
            plan.keep.append((image, "superseded, kept until its replacement is active and verified"))
        elif str(image.get("protected")).lower() == "true":
            plan.keep.append((image, "superseded but protected"))
        elif image["id"] in in_use:
            plan.keep.append((image, "superseded but in use by a server"))
        else:
            plan.delete.append(image)
    return plan
