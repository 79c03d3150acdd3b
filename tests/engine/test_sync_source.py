"""Reading, verifying and selecting from real published simplestreams metadata (no network)."""

from pathlib import Path

import pytest

from simplestreams_sync.config import MirrorSpec
from simplestreams_sync.source import HttpSession, SourceError, read_source

DATA = Path(__file__).resolve().parent.parent / "data" / "realstreams"
UBUNTU_KEYRING = str(DATA / "keyring" / "ubuntu-cloudimage-keyring.gpg")
HTTP = HttpSession("test")


def releases_2016(**overrides) -> MirrorSpec:
    fields = {
        "url": (DATA / "releases-2016").as_uri() + "/",
        "path": "streams/v1/index.sjson",
        "max": 1,
        "item_filters": ["release~(trusty|xenial)", "arch~(x86_64|amd64)", "ftype~(disk1.img|disk.img)"],
    }
    return MirrorSpec(**{**fields, **overrides})


def test_signed_catalog_selects_newest_version_per_product():
    images = read_source(releases_2016(), UBUNTU_KEYRING, HTTP)
    assert sorted((i.product_name, i.version_name, i.item_name) for i in images) == [
        ("com.ubuntu.cloud:server:14.04:amd64", "20161020", "disk1.img"),
        ("com.ubuntu.cloud:server:16.04:amd64", "20161020", "disk1.img"),
    ]


def test_max_keeps_that_many_newest_versions():
    images = read_source(releases_2016(max=3), UBUNTU_KEYRING, HTTP)
    xenial = sorted(i.version_name for i in images if i.product_name.endswith("16.04:amd64"))
    assert xenial == ["20161011", "20161013", "20161020"]


def test_selected_item_carries_checksums_url_and_public_name():
    image = next(i for i in read_source(releases_2016(), UBUNTU_KEYRING, HTTP) if "16.04" in i.product_name)
    assert image.sha256 and len(image.sha256) == 64
    assert image.size and image.size > 100 * 1024 * 1024
    assert image.url.endswith("server/releases/xenial/release-20161020/ubuntu-16.04-server-cloudimg-amd64-disk1.img")
    assert image.pubname == "ubuntu-xenial-16.04-amd64-server-20161020-disk1.img"
    assert image.source_content_id == "com.ubuntu.cloud:released:download"


def test_negated_filter_excludes_matches():
    images = read_source(
        releases_2016(item_filters=["release=xenial", "arch!=amd64", "ftype=disk1.img"]), UBUNTU_KEYRING, HTTP
    )
    assert {i.metadata["arch"] for i in images} == {"arm64", "armhf", "i386", "ppc64el", "powerpc", "s390x"}


def test_index_signed_by_unknown_key_is_refused():
    mirror = releases_2016(url=(DATA / "resigned-2020").as_uri() + "/")
    with pytest.raises(SourceError, match=r"signature check failed.*No public key"):
        read_source(mirror, UBUNTU_KEYRING, HTTP)


def test_tampered_index_is_refused(tmp_path):
    tree = tmp_path / "streams" / "v1"
    tree.mkdir(parents=True)
    for name in ("index.sjson", "com.ubuntu.cloud:released:download.sjson"):
        (tree / name).write_bytes((DATA / "releases-2016" / "streams" / "v1" / name).read_bytes())
    index = tree / "index.sjson"
    index.write_text(index.read_text().replace("Fri, 04 Nov 2016", "Sat, 05 Nov 2016", 1))
    with pytest.raises(SourceError, match="BAD signature"):
        read_source(releases_2016(url=tmp_path.as_uri() + "/"), UBUNTU_KEYRING, HTTP)


def test_missing_keyring_is_named():
    with pytest.raises(SourceError, match=r"keyring /nonexistent\.gpg does not exist"):
        read_source(releases_2016(), "/nonexistent.gpg", HTTP)


def test_unsigned_json_path_is_read_without_a_keyring(tmp_path):
    tree = tmp_path / "streams" / "v1"
    tree.mkdir(parents=True)
    (tree / "minimal.json").write_bytes((DATA / "canonical-minimal-images.json").read_bytes())
    (tree / "index.json").write_text(
        '{"format": "index:1.0", "index": {"com.ubuntu.cloud:released:download": {"datatype": '
        '"image-downloads", "format": "products:1.0", "path": "streams/v1/minimal.json", "products": []}}}'
    )
    mirror = MirrorSpec(
        url=tmp_path.as_uri(), path="streams/v1/index.json", max=2, item_filters=["release=jammy", "ftype=disk1.img"]
    )
    images = read_source(mirror, "/not/needed", HTTP)
    assert sorted(i.version_name for i in images) == ["20231025", "20231030"]
    assert {i.product_name for i in images} == {"com.ubuntu.cloud:minimal:22.04:amd64"}


def test_sjson_path_serving_unsigned_content_is_refused(tmp_path):
    tree = tmp_path / "streams" / "v1"
    tree.mkdir(parents=True)
    (tree / "index.sjson").write_text('{"format": "index:1.0", "index": {}}')
    with pytest.raises(SourceError, match="not signed"):
        read_source(releases_2016(url=tmp_path.as_uri()), UBUNTU_KEYRING, HTTP)
