"""The quick check's record of a clean run (quick_check.py), built in one place from what the run saw."""

from __future__ import annotations

import logging
from concurrent.futures import Future

from . import api
from .openstack import Cloud, CloudError
from .quick_check import Observations, Record, catalog_fingerprint, code_fingerprint, glance_fingerprint
from .state import SyncResult

LOG = logging.getLogger(__name__)


def record_of_clean_run(
    cloud: Cloud,
    glance_endpoint: str,
    final_listing: Future,
    observed: Observations,
    *,
    user_agent: str,
    content_id: str,
    storage_url: str | None,
    metadata_url: str,
    result: SyncResult,
    image_count: int,
    said: list[str],
) -> Record | None:
    """What the next run's quick check compares; None when Glance or Keystone cannot say it now.
    `storage_url`: the object store the metadata went to (None: none, or the unit serves it)."""
    try:
        images = final_listing.result()
        catalog = cloud.catalog()
    except CloudError as error:
        LOG.info("no quick check for the next run: %s", error)
        return None
    identity = cloud.identity
    return Record(
        code=code_fingerprint(),
        inputs={},
        user_agent=user_agent,
        source=[{"url": url, **document} for url, document in observed.source.items()],
        identity_file="",
        keystone={
            "token_url": api.token_url(identity.auth_url),
            "user": identity.username,
            "user_domain": identity.user_domain_name,
            "project": identity.project_name,
            "project_domain": identity.project_domain_name,
        },
        verify=cloud.verify,
        glance_endpoint=glance_endpoint,
        glance_images=glance_fingerprint(images, content_id, cloud.project_id),
        content_id=content_id,
        project_id=cloud.project_id,
        swift_objects=observed.objects,
        swift_container=observed.container_url,
        swift_proxy=cloud.object_store_proxy(storage_url) if storage_url else None,
        local_files=observed.local_files,
        served_files=observed.served_files,
        metadata_url=metadata_url,
        product_streams_urls=result.product_streams_urls,
        catalog=catalog_fingerprint(catalog),
        image_count=image_count,
        said=said,
        kept=result.kept,
        needs_decision=result.needs_decision,
    )
