"""Where the metadata goes, chosen in one place for a run and for `--publish-only`: the unit's own web
server when the charm serves it (config.local_metadata), else the object store (Swift or Ceph RGW).
Either names the catalog's public identity URL (Cloud.public_auth_url), as Juju's cloud does."""

from __future__ import annotations

import logging

from .config import SyncConfig
from .object_store import CONTAINER, PUBLIC_READ_ACL
from .openstack import Cloud, CloudError
from .plan import GlanceImage
from .publish import ObjectStoreMissing, Publisher, SwiftPublisher, image_ids_tree
from .publish_local import LocalPublisher
from .quick_check import Observations
from .report import RunReport
from .state import publish_only_lines

LOG = logging.getLogger(__name__)


def make_publisher(config: SyncConfig, cloud: Cloud, observations: Observations | None = None) -> Publisher:
    """The publisher the config names; CloudError (ObjectStoreMissing) when the catalog lacks its store."""
    local = config.local_metadata
    if local is not None:
        return LocalPublisher(
            local.directory, local.url, cloud.region, cloud.public_auth_url, cloud.verify, observations
        )
    return SwiftPublisher(cloud, observations)


def metadata_tree(config: SyncConfig, cloud: Cloud, images: list[dict]) -> dict:
    return image_ids_tree(config.content_id, images, cloud.region, cloud.public_auth_url, config.hypervisor_mapping)


def publish_images(
    config: SyncConfig, cloud: Cloud, images: list[GlanceImage], observed: Observations, report: RunReport
) -> Publisher | None:
    """Publish the metadata naming `images`, say so and record it in the result; None when it failed."""
    result = report.result
    try:
        publisher = make_publisher(config, cloud, observed)
        changed = publisher.publish(
            metadata_tree(config, cloud, [dict(i.properties) for i in images]), config.cloud_name
        )
    except CloudError as error:
        result.object_store_missing = isinstance(error, ObjectStoreMissing)
        report.error(f"metadata not published: {error}")
        return None
    result.published = True
    result.metadata_url = publisher.metadata_url
    if isinstance(publisher, SwiftPublisher):
        result.product_streams_urls = publisher.product_streams_urls()
        if publisher.repaired_acl is not None:
            report.out(
                f"repaired the read ACL of container {CONTAINER}: it was {publisher.repaired_acl!r}, "
                f"anonymous readers need {PUBLIC_READ_ACL!r}"
            )
    if changed:
        report.out(f"published metadata for {len(images)} images to {publisher.metadata_url}")
    else:
        report.out(f"metadata for {len(images)} images at {publisher.metadata_url} is up to date")
    return publisher


def publish_empty_unless_listed(config: SyncConfig, cloud: Cloud) -> list[str]:
    """`--publish-only`: an empty image list for our content id unless the index already lists it; the
    lines that say where (state.publish_only_lines). CloudError when it could not."""
    publisher = make_publisher(config, cloud)
    if config.content_id in publisher.listed_content_ids():
        LOG.info("%s already lists %s: left as it is", publisher.index_url, config.content_id)
    else:
        publisher.publish(metadata_tree(config, cloud, []), config.cloud_name)
        LOG.info("published an empty image list for %s to %s", config.content_id, publisher.metadata_url)
    return publish_only_lines(publisher.metadata_url, publisher.product_streams_urls())
