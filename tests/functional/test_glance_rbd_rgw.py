"""The Glance-on-RBD tests that involve the object store, again in an "all-Ceph" cloud: Glance on RBD and
RGW as the object store, one Ceph cluster for both (one cloud for the module)."""

from __future__ import annotations

import pytest

from tests.functional.test_glance_rbd import (  # noqa: F401
    test_a_superseded_image_with_a_format_1_clone_is_kept_hidden_then_deleted_once_the_clone_is_gone,
    test_a_sync_stores_each_image_in_rbd_with_its_snapshot_and_direct_url,
)
from tests.functional.test_quick_check import test_nothing_changed_stops_at_the_quick_check  # noqa: F401
from tests.localcloud.cloud import LocalCloud

pytestmark = pytest.mark.functional


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    with LocalCloud(
        tmp_path_factory.mktemp("rbd-rgw-cloud"), glance_store="rbd", object_store="rgw", image_conversion=True
    ) as all_ceph_cloud:
        yield all_ceph_cloud
