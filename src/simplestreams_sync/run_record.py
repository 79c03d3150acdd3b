"""What a clean run observed, as the next run's quick check compares it (quick_check.Record)."""

from __future__ import annotations

from .config import SyncConfig
from .glance import GlanceStore
from .openstack import Cloud
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


def record_of_run(
    config: SyncConfig,
    glance: GlanceStore,
    observed: Observations,
    images: list[dict],
    catalog: list[dict],
    publisher: Publisher | None,
    image_count: int,
    report: RunReport,
) -> Record:
    """The record of a clean run: `images` as Glance lists ours once the run is done, the `catalog` of
    its token, what `publisher` published (None: no metadata), and what `report` says and records."""
    cloud: Cloud = glance.cloud
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
        image_count=image_count,
        said=report.settled_lines,
        kept=result.kept,
        needs_decision=result.needs_decision,
    )
