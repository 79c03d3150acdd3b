"""The Glance properties of an image made from a source item, as sstream-mirror-glance sets them."""

from __future__ import annotations

import json

from .source import SourceImage

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
