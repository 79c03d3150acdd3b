"""What Cinder and Nova do to a Glance image on RBD, done with the `rbd` command line (LocalCloud with
glance_store="rbd"): copy-on-write clones of the image's snapshot into the `volumes` pool, and a look at
the images pool (its images, their clones, its trash).

Clone format 1 (the default while the cluster's require_min_compat_client is below mimic, as here)
keeps the parent's snapshot protected: Glance cannot delete the image (409, "in use through the backend
store"). Format 2 lets Glance delete it, and glance_store then moves the RBD image to the trash instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from tests.localcloud.cloud import LocalCloud
from tests.localcloud.rgw import IMAGES_POOL, VOLUMES_POOL

SNAPSHOT = "snap"  # glance_store's name for the protected snapshot of every image


@dataclass(frozen=True)
class Clone:
    cloud: LocalCloud
    name: str  # pool/image, e.g. volumes/volume-1

    def remove(self) -> None:
        self.cloud.rbd("rm", "--no-progress", self.name)

    def parent(self) -> dict:
        """The clone's parent: {"pool", "image", "snapshot", "trash": whether the parent is in the trash}."""
        return json.loads(self.cloud.rbd("info", "--format", "json", self.name))["parent"]


def clone_image(cloud: LocalCloud, image_id: str, volume: str, clone_format: int = 1) -> Clone:
    """A volume cloned from the image's snapshot as Cinder makes one: volumes/volume-<volume>."""
    name = f"{VOLUMES_POOL}/volume-{volume}"
    cloud.rbd("clone", "--rbd-default-clone-format", str(clone_format), snapshot_spec(image_id), name)
    return Clone(cloud, name)


def snapshot_spec(image_id: str) -> str:
    return f"{IMAGES_POOL}/{image_id}@{SNAPSHOT}"


def rbd_images(cloud: LocalCloud) -> set[str]:
    """The names of the RBD images in the images pool (Glance image ids), trash not included."""
    return set(cloud.rbd("ls", IMAGES_POOL).split())


def snapshots(cloud: LocalCloud, image_id: str) -> list[dict]:
    """The image's RBD snapshots ({"name", "protected", ...})."""
    return json.loads(cloud.rbd("snap", "ls", "--format", "json", f"{IMAGES_POOL}/{image_id}"))


def children(cloud: LocalCloud, image_id: str) -> list[str]:
    """pool/image of every clone of the image's snapshot (an image in the trash has no name to ask by)."""
    listed = json.loads(cloud.rbd("children", "--format", "json", snapshot_spec(image_id)))
    return sorted(f"{child['pool']}/{child['image']}" for child in listed)


def trash(cloud: LocalCloud) -> dict[str, str]:
    """The images pool's trash: {RBD id: image name (the Glance image id)}."""
    return {
        entry["id"]: entry["name"] for entry in json.loads(cloud.rbd("trash", "ls", "--format", "json", IMAGES_POOL))
    }


def purge_trash(cloud: LocalCloud) -> None:
    """`rbd trash purge images`: what an operator does to free the space of images trashed with clones gone."""
    cloud.rbd("trash", "purge", "--no-progress", IMAGES_POOL)
