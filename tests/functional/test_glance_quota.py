"""Glance says no: an image over Glance's image_size_cap or user_storage_quota fails with a message
naming that setting, leaves nothing behind, and the other images still sync."""

from __future__ import annotations

import re

import pytest

from tests.functional.conftest import UNFINISHED, assert_cloud_is_clean, created_ids, our_images
from tests.localcloud.cloud import LocalCloud

pytestmark = pytest.mark.functional

MIB = 1 << 20
IMAGE_SIZE_CAP = 6 * MIB
USER_STORAGE_QUOTA = 12 * MIB


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    options = {"image_size_cap": IMAGE_SIZE_CAP, "user_storage_quota": USER_STORAGE_QUOTA}
    with LocalCloud(tmp_path_factory.mktemp("quota-cloud"), glance_options=options) as local_cloud:
        yield local_cloud


def failures(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("failed ")]


def test_an_image_over_the_size_cap_fails_naming_it_and_the_others_sync(source, sync, glance, cloud):
    source.add_image(release="focal", version="20.04", seed=150, size=MIB)
    source.add_image(release="jammy", version="22.04", seed=151, size=8 * MIB, incompressible=True)
    source.write()

    result = sync.run([sync.mirror(source.url)])

    assert result.returncode == 1
    [failure] = failures(result.stderr)
    assert re.fullmatch(
        r"failed auto-sync/ubuntu-jammy-22\.04-amd64-server-\d+-disk1\.img: glance refused image \S+ "
        r"\(\d+ bytes\): larger than Glance's image_size_cap \(Glance says: .+\); raise image_size_cap "
        r"in glance-api\.conf, or leave the image out with item_filters",
        failure,
    ), failure
    assert len(created_ids(result.stdout)) == 1
    images = our_images(glance, sync.content_id)
    assert [(i["os_version"], i["status"]) for i in images] == [("20.04", "active")]
    assert_cloud_is_clean(glance, cloud, sync.content_id, source)


def test_an_image_over_the_storage_quota_fails_naming_it_and_the_others_sync(source, sync, glance, cloud):
    for n, (release, version) in enumerate([("focal", "20.04"), ("jammy", "22.04"), ("noble", "24.04")]):
        source.add_image(release=release, version=version, seed=160 + n, size=5 * MIB, incompressible=True)
    source.write()
    sync.settings["max_parallel"] = 1  # which image goes over the quota then depends on order only

    result = sync.run([sync.mirror(source.url)])

    assert result.returncode == 1
    [failure] = failures(result.stderr)
    assert re.fullmatch(
        r"failed auto-sync/ubuntu-noble-24\.04-amd64-server-\d+-disk1\.img: glance refused image \S+ "
        rf"\(\d+ bytes\): it would take project {cloud.services_project_id} over Glance's user_storage_quota "
        r"\(Glance says: .+\); delete images or raise user_storage_quota in glance-api\.conf",
        failure,
    ), failure
    assert len(created_ids(result.stdout)) == 2
    images = our_images(glance, sync.content_id)
    assert [i for i in images if i["status"] in UNFINISHED] == []
    assert len([i for i in images if i["status"] == "active"]) == 2
    assert_cloud_is_clean(glance, cloud, sync.content_id, source)
