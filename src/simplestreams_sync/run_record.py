"""What a clean run observed, as the next run's quick check compares it (quick_check.Record)."""

from __future__ import annotations

import logging
from concurrent.futures import Future

from .config import SyncConfig
from .glance import GlanceStore
from .openstack import Cloud, CloudError
from .plan import Plan
from .publish import Publisher, SwiftPublisher
from .quick_check import (
    Observations,
    Record,
    catalog_fingerprint,
    code_fingerprint,
    glance_fingerprint,
    glance_list_url,
)
from .report import RunReport

LOG = logging.getLogger(__name__)


def record_of_run(
    config: SyncConfig,
    glance: GlanceStore,
    observed: Observations,
    final_listing: Future,
    publisher: Publisher | None,
    plan: Plan,
    report: RunReport,
) -> Record | None:
    """The record of a clean run: our images as Glance lists them once the run is done (`final_listing`),
    the catalog of its token, what `publisher` published (None: no metadata), what `plan` published and
    what `report` says and records. None when Glance or Keystone could not be asked."""
    cloud: Cloud = glance.cloud
    try:
        images = final_listing.result()
        catalog = cloud.catalog()
    except CloudError as error:
        LOG.info("no quick check for the next run: %s", error)
        return None
    identity = cloud.identity
    result = report.result
    return Record(
        code=code_fingerprint(),
        inputs={},
        user_agent=config.user_agent,
        source=[{"url": url, **document} for url, document in observed.source.items()],
        identity_file="",
        keystone={
            "token_url": identity.auth_url.rstrip("/") + "/auth/tokens",  # as keystoneauth's v3.Password
            "user": identity.username,
            "user_domain": identity.user_domain_name,
            "project": identity.project_name,
            "project_domain": identity.project_domain_name,
        },
        verify=cloud.verify,
        glance_list_url=glance_list_url(glance.endpoint, cloud.project_id, config.content_id),
        glance_images=glance_fingerprint(images, config.content_id, cloud.project_id),
        content_id=config.content_id,
        project_id=cloud.project_id,
        swift_objects=observed.objects,
        swift_container=observed.container_url,
        swift_read_acl=observed.read_acl,
        swift_proxy=cloud.object_store_proxy(publisher.storage_url) if isinstance(publisher, SwiftPublisher) else None,
        local_files=observed.local_files,
        served_files=observed.served_files,
        metadata_url=publisher.metadata_url if publisher else "",
        product_streams_urls=result.product_streams_urls,
        catalog_url=f"{cloud.auth_url.rstrip('/')}/auth/catalog",
        catalog=catalog_fingerprint(catalog),
        image_count=len(plan.publish),
        said=report.settled_lines,
        kept=result.kept,
        needs_decision=result.needs_decision,
    )
