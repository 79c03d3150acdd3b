"""Verification on the stream, Glance properties and the published image-ids tree."""

import hashlib
import json

import pytest
from simplestreams import util

from simplestreams_sync.image_properties import image_properties
from simplestreams_sync.publish import image_ids_tree
from simplestreams_sync.source import SourceImage
from simplestreams_sync.transfer import CHECKSUM, VerificationError, VerifyingStream, expected_source_digest

DATA = b"x" * 3000 + b"y" * 3000


def source_image(data=DATA, **overrides) -> SourceImage:
    fields = {
        "source_content_id": "com.ubuntu.cloud:released:download",
        "product_name": "com.ubuntu.cloud:server:20.04:amd64",
        "version_name": "20210720",
        "item_name": "disk1.img",
        "url": "http://127.0.0.1/x.img",
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "md5": None,
        "metadata": {
            "arch": "amd64",
            "os": "ubuntu",
            "version": "20.04",
            "release": "focal",
            "ftype": "disk1.img",
            "pubname": "ubuntu-focal-20.04-amd64-server-20210720",
            "path": "server/x.img",
            "sha256": hashlib.sha256(data).hexdigest(),
            "size": str(len(data)),
            "item_name": "disk1.img",
        },
    }
    fields.update(overrides)
    return SourceImage(**fields)


def chunks(data, size=1000):
    return [data[i : i + size] for i in range(0, len(data), size)]


def test_matching_stream_passes_all_bytes_and_computes_the_digest_glance_must_store():
    stream = VerifyingStream(source_image(), chunks(DATA), "sha512")
    assert b"".join(stream) == DATA
    assert stream.stored_digest == "sha512:" + hashlib.sha512(DATA).hexdigest()
    assert stream.source_digest == "sha256:" + hashlib.sha256(DATA).hexdigest()


def test_glance_hashing_with_the_sources_algorithm_is_checked_with_the_same_digest():
    stream = VerifyingStream(source_image(), chunks(DATA), "sha256")
    assert b"".join(stream) == DATA
    assert stream.stored_digest == "sha256:" + hashlib.sha256(DATA).hexdigest()
    stream.check_stored(
        {
            "id": "i",
            "status": "active",
            "size": len(DATA),
            "os_hash_algo": "sha256",
            "os_hash_value": hashlib.sha256(DATA).hexdigest(),
        }
    )


def test_an_md5_the_source_lists_is_checked_on_the_stream_too():
    stream = VerifyingStream(source_image(md5="0" * 32), chunks(DATA), CHECKSUM)
    passed = []
    with pytest.raises(VerificationError, match=r"md5 [0-9a-f]{32} does not match the source's 0{32}"):
        for chunk in stream:
            passed.append(chunk)
    assert len(b"".join(passed)) < len(DATA)


def test_the_stored_image_is_checked_by_glances_md5_checksum_when_that_is_the_stored_algorithm():
    stream = VerifyingStream(source_image(md5=hashlib.md5(DATA).hexdigest()), chunks(DATA), CHECKSUM)
    list(stream)
    stored = {"id": "i2", "status": "active", "size": len(DATA), "checksum": "0" * 32, "os_hash_algo": "sha512"}
    with pytest.raises(VerificationError, match=r"Glance stored image i2 wrongly: md5 checksum 0{32} != "):
        stream.check_stored(stored)
    stream.check_stored({**stored, "checksum": hashlib.md5(DATA).hexdigest()})
    assert stream.stored_digest == "md5:" + hashlib.md5(DATA).hexdigest()
    assert expected_source_digest(stream.image) == stream.source_digest


def test_wrong_bytes_raise_before_the_last_chunk_is_passed_on():
    corrupted = DATA[:-1] + b"z"
    stream = VerifyingStream(source_image(), chunks(corrupted), "sha512")
    passed = []
    with pytest.raises(VerificationError, match=r"sha256 .* does not match"):
        for chunk in stream:
            passed.append(chunk)
    assert len(b"".join(passed)) < len(DATA)


def test_short_stream_is_refused():
    stream = VerifyingStream(source_image(), chunks(DATA[:-10]), "sha512")
    with pytest.raises(VerificationError, match="got 5990 bytes, the source lists 6000"):
        list(stream)


def test_long_stream_is_refused_as_soon_as_it_exceeds_the_size():
    stream = VerifyingStream(source_image(), chunks(DATA + b"more"), "sha512")
    with pytest.raises(VerificationError, match="more than the 6000 bytes"):
        list(stream)


def test_stored_image_with_other_hash_is_refused():
    stream = VerifyingStream(source_image(), chunks(DATA), "sha512")
    list(stream)
    stored = {"id": "i1", "status": "active", "size": len(DATA), "os_hash_algo": "sha512", "os_hash_value": "0" * 128}
    with pytest.raises(VerificationError, match="Glance stored image i1 wrongly"):
        stream.check_stored(stored)
    stream.check_stored({**stored, "os_hash_value": hashlib.sha512(DATA).hexdigest()})


def test_properties_follow_sstream_mirror_glance():
    props = image_properties(source_image(), "auto.sync", {"hw_firmware_type": "uefi"}, hypervisor_mapping=True)
    assert props["content_id"] == "auto.sync"
    assert props["source_content_id"] == "com.ubuntu.cloud:released:download"
    assert props["architecture"] == "x86_64"
    assert props["os_distro"] == "ubuntu" and props["os_version"] == "20.04"
    assert props["hypervisor_type"] == "qemu"
    assert props["hw_firmware_type"] == "uefi"
    metadata = json.loads(props["simplestreams_metadata"])
    assert "path" not in metadata and metadata["sha256"] == hashlib.sha256(DATA).hexdigest()


def test_image_ids_tree_lists_each_image_with_id_region_endpoint():
    props = image_properties(source_image(), "auto.sync", {}, hypervisor_mapping=True)
    glance_image = {**props, "id": "abc", "name": "auto-sync/x"}
    tree = image_ids_tree("auto.sync", [glance_image], "RegionOne", "http://ks/v3", hypervisor_mapping=True)
    assert tree["datatype"] == "image-ids"
    pedigree = ("com.ubuntu.cloud:server:20.04:amd64", "20210720", "disk1.img")
    item = tree["products"][pedigree[0]]["versions"][pedigree[1]]["items"][pedigree[2]]
    assert (item["id"], item["region"], item["endpoint"]) == ("abc", "RegionOne", "http://ks/v3")
    inherited = util.products_exdata(tree, pedigree)  # values condensed up the tree apply to the item
    assert (inherited["virt"], inherited["arch"], inherited["version"]) == ("kvm", "amd64", "20.04")


def test_tls_errors_are_described_by_openssls_reason_not_cut_off():
    from keystoneauth1 import exceptions as ks_exceptions

    from simplestreams_sync.openstack import describe

    long_host = "glance." + "x" * 300 + ".example"
    error = ks_exceptions.SSLError(
        f"SSL exception connecting to https://{long_host}:9292/v2/images: HTTPSConnectionPool(host="
        f"'{long_host}', port=9292): Max retries exceeded (Caused by SSLError(SSLCertVerificationError(1, "
        "'[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: unable to get local issuer "
        "certificate (_ssl.c:1006)')))"
    )
    assert describe(error) == "TLS certificate verify failed: unable to get local issuer certificate"
