"""Read and verify a simplestreams source, then select what to mirror.

Reading, signature checking and item filters are the simplestreams library's; this module adds the
per-product `max` selection and a flat `SourceImage` record per item to mirror, over source_http.py's
honest HTTP.
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

from ._simplestreams import contentsource, filters, mirrors, util
from .config import MirrorSpec, SyncConfig
from .source_http import HttpSession, SourceError, open_url_chunks

LOG = logging.getLogger(__name__)


# Root tarballs are preferred over squashfs of the same version (as sstream-mirror-glance does).
ROOT_TARBALLS = ("root.tar.gz", "root.tar.xz")


@dataclass(frozen=True)
class SourceImage:
    """One item of the source that should exist in Glance."""

    source_content_id: str
    product_name: str
    version_name: str
    item_name: str
    url: str
    size: int | None
    sha256: str | None
    md5: str | None
    metadata: dict  # the flattened simplestreams data of the item (products_exdata)

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.source_content_id, self.product_name, self.version_name, self.item_name)

    @property
    def pubname(self) -> str:
        name = self.metadata.get("pubname") or self.metadata.get("name") or self.product_name
        if not name.endswith(self.item_name):
            name = f"{name}-{self.item_name}"
        return name


class SourceReader(mirrors.MirrorReader):
    """A simplestreams MirrorReader that fetches with `HttpSession` and verifies with a keyring."""

    def __init__(self, mirror: MirrorSpec, keyring: str | None, http: HttpSession):
        self.base_url = mirror.url if mirror.url.endswith("/") else mirror.url + "/"
        self.http = http
        self.keyring = keyring
        policy = self._read_signed if mirror.signed else self._read_unsigned
        super().__init__(policy=policy)

    def source(self, path: str) -> contentsource.ContentSource:
        url = self.base_url + path
        chunks, close = open_url_chunks(url, self.http)
        try:
            content = b"".join(chunks)
        finally:
            close()
        self.http.observations.source_document(url, content, self.http.proxy_for(url))
        return contentsource.MemoryContentSource(url=url, content=content)

    def _read_signed(self, content: str, path: str) -> str:
        try:
            return util.read_signed(content, keyring=self.keyring)
        except util.SignatureMissingException:
            raise SourceError(
                f"{self.base_url}{path}: not signed (a .sjson path requires a signature; "
                "use a .json path for an unsigned source)"
            ) from None
        except subprocess.CalledProcessError as error:
            detail = _gpg_reason(error)
            raise SourceError(
                f"{self.base_url}{path}: signature check failed against keyring {self.keyring}: {detail}"
            ) from None

    @staticmethod
    def _read_unsigned(content: str, path: str) -> str:
        return content


def _gpg_reason(error: subprocess.CalledProcessError) -> str:
    output = error.output if isinstance(error.output, tuple) else ("", "")
    stderr = output[1] if len(output) > 1 else ""
    if isinstance(stderr, bytes):
        stderr = stderr.decode(errors="replace")
    for marker in ("BAD signature", "No public key", "Can't check signature", "no valid OpenPGP data"):
        if marker.lower() in stderr.lower():
            return marker
    lines = [line for line in stderr.splitlines() if line.strip()]
    return lines[-1] if lines else f"gpg exited with {error.returncode}"


def check_keyring(mirror: MirrorSpec, keyring: str) -> None:
    if mirror.signed and not os.path.isfile(keyring):
        raise SourceError(f"keyring {keyring} does not exist (needed to verify {mirror.url}{mirror.path})")


def read_mirrors(
    config: SyncConfig, http: HttpSession, on_error: Callable[[str], None]
) -> tuple[list[SourceImage], dict[tuple, str], bool]:
    """The images every mirror selects (the first mirror listing an item names it), their Glance names by
    `SourceImage.key`, and whether every mirror was read; `on_error` hears each mirror that was not."""
    desired: dict[tuple, SourceImage] = {}
    names: dict[tuple, str] = {}
    all_read = True
    for mirror in config.mirror_list:
        try:
            images = read_source(mirror, config.keyring_for(mirror), http)
        except SourceError as error:
            on_error(f"mirror {mirror.url}: {error}")
            all_read = False
            continue
        for image in images:
            if image.key not in desired:
                desired[image.key] = image
                names[image.key] = config.prefix_for(mirror) + image.pubname
    return list(desired.values()), names, all_read


def read_source(mirror: MirrorSpec, keyring: str, http: HttpSession) -> list[SourceImage]:
    """Every image of the mirror that passes its filters, newest `max` versions per product."""
    check_keyring(mirror, keyring)
    reader = SourceReader(mirror, keyring if mirror.signed else None, http)
    index = _load(reader, mirror.path)
    item_filters = filters.get_filters(mirror.item_filters)
    selected: list[SourceImage] = []
    for _content_id, entry in index.get("index", {}).items():
        if entry.get("datatype") != "image-downloads" or entry.get("format") != "products:1.0":
            continue
        products = _load(reader, entry["path"])
        selected.extend(select_images(products, item_filters, mirror.max, reader.base_url))
    if not selected:
        LOG.warning("%s%s: no item passes the filters %s", mirror.url, mirror.path, mirror.item_filters)
    return selected


def _load(reader: SourceReader, path: str) -> dict:
    util.assert_safe_path(path)
    _, content = reader.read_json(path)
    try:
        tree = util.load_content(content)
    except ValueError as error:
        raise SourceError(f"{reader.base_url}{path}: not valid JSON: {error}") from None
    util.expand_tree(tree)
    return tree


def select_images(products: dict, item_filters: list, max_versions: int, base_url: str) -> list[SourceImage]:
    """Per product, the items of the newest `max_versions` versions that have an item passing the filters."""
    content_id = products.get("content_id", "")
    selected = []
    for product_name, product in products.get("products", {}).items():
        versions = product.get("versions", {})
        kept = 0
        for version_name in sorted(versions, reverse=True):
            items = _passing_items(products, product_name, version_name, item_filters)
            if not items:
                continue
            for item_name, flat in items.items():
                selected.append(_source_image(content_id, product_name, version_name, item_name, flat, base_url))
            kept += 1
            if kept == max_versions:
                break
    return selected


def _passing_items(products: dict, product_name: str, version_name: str, item_filters: list) -> dict:
    items = products["products"][product_name]["versions"][version_name].get("items", {})
    passing = {}
    for item_name in items:
        pedigree = (product_name, version_name, item_name)
        if not filters.filter_item(item_filters, None, products, pedigree):
            continue
        flat = util.products_exdata(products, pedigree, include_top=False)
        if "path" in flat:
            passing[item_name] = flat
    if any(flat.get("ftype") in ROOT_TARBALLS for flat in passing.values()):
        passing = {name: flat for name, flat in passing.items() if flat.get("ftype") != "squashfs"}
    return passing


def _source_image(content_id, product_name, version_name, item_name, flat, base_url) -> SourceImage:
    size = flat.get("size")
    return SourceImage(
        source_content_id=content_id,
        product_name=product_name,
        version_name=version_name,
        item_name=item_name,
        url=base_url + flat["path"],
        size=int(size) if size is not None else None,
        sha256=flat.get("sha256"),
        md5=flat.get("md5"),
        metadata=flat,
    )
