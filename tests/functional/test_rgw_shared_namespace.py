"""The sync against Ceph RGW as the ceph-radosgw charm sets it up by default (namespace-tenants=false):
the catalog's object-store URL has no account, and all projects' containers share one namespace.
"""

from __future__ import annotations

import re

import pytest
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3 as ks_identity
from keystoneclient.v3 import client as keystone_client

from tests.functional.conftest import created_ids
from tests.functional.test_rgw import container_url, empty_and_delete_container

# Publishing, and Juju's anonymous reads through the catalog's URL, work in the shared namespace too.
from tests.functional.test_sync import (  # noqa: F401
    test_metadata_in_swift_lists_exactly_the_active_images_and_is_public,
)
from tests.localcloud.cloud import LocalCloud

pytestmark = pytest.mark.functional


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    with LocalCloud(tmp_path_factory.mktemp("rgw-shared-cloud"), object_store="rgw",
                    rgw_namespace_tenants=False) as rgw_cloud:  # fmt: skip
        yield rgw_cloud


@pytest.fixture
def other_project_session(cloud):
    """A session of a user of another project (member role), removed again afterwards."""
    keystone = keystone_client.Client(session=cloud.admin_session())
    project = keystone.projects.create("other-project", domain="default")
    user = keystone.users.create("other-user", domain="default", password="other-password", default_project=project)
    keystone.roles.grant(keystone.roles.list(name="member")[0], user=user, project=project)
    auth = ks_identity.Password(auth_url=cloud.auth_url, username="other-user", password="other-password",
                                project_name="other-project", user_domain_name="Default",
                                project_domain_name="Default")  # fmt: skip
    try:
        yield ks_session.Session(auth=auth)
    finally:
        keystone.users.delete(user)
        keystone.projects.delete(project)


def test_a_container_of_the_same_name_in_another_project_stops_the_publish_and_is_named(
    source, sync, cloud, other_project_session
):
    assert cloud.swift_url.endswith("/swift/v1")  # as the charm registers it: no account in the URL
    empty_and_delete_container(cloud)
    other_project_session.put(container_url(cloud))
    source.add_image(seed=950)
    source.write()
    try:
        result = sync.run([sync.mirror(source.url)])
    finally:
        other_project_session.delete(container_url(cloud))

    assert result.returncode == 1
    assert len(created_ids(result.stdout)) == 1  # the images are synced all the same
    assert "error: metadata not published" in result.stderr
    refusal = (
        rf"{re.escape(container_url(cloud))}\S*: "
        r"HTTP (403 Forbidden: AccessDenied|409 Conflict: BucketAlreadyExists)"
    )
    assert re.search(refusal, result.stderr), result.stderr  # RGW's reason, named
