"""`--publish-only`: sync nothing, make the metadata location serve a valid index (an empty image list for
our content id until a sync publishes ours) and print its URLs (state.publish_only_lines)."""

from __future__ import annotations

import logging

from . import EXIT_CONFIG, EXIT_FAILED, EXIT_OK
from .state import publish_only_lines


def run(args, _print, _print_err) -> int:
    """Publish an empty image list for our content id unless the index already lists it, and print
    where: the URL the sync writes through, then the URL of each interface the product-streams endpoint
    should point at (the same a sync reports), see `publish_only_lines`."""
    from keystoneauth1 import exceptions as ks_exceptions

    from .config import ConfigError, load_identity, load_sync_config
    from .openstack import Cloud, CloudError, describe
    from .publish import INDEX_PATH, SwiftPublisher

    try:
        config = load_sync_config(args.mirrors)
        identity = load_identity(args.identity)
    except ConfigError as error:
        _print_err(f"error: {error}")
        return EXIT_CONFIG
    if config.local_metadata is not None:
        return _locally(config, identity, _print, _print_err)
    if not config.use_swift:
        _print_err(f"error: use_swift is false in {args.mirrors}: no metadata is published")
        return EXIT_CONFIG
    try:
        cloud = Cloud(identity, config.object_store_proxies())
        publisher = SwiftPublisher(cloud)
    except CloudError as error:
        _print_err(f"error: metadata not published: {error}")
        return EXIT_FAILED
    index_url = f"{publisher.metadata_url}/{INDEX_PATH}"

    def listed() -> set[str]:
        try:
            response = publisher.session.request(index_url, "GET", raise_exc=False)
        except ks_exceptions.ClientException as error:
            raise CloudError(f"swift: GET {index_url}: {describe(error)}") from None
        if response.status_code not in (200, 404):
            raise CloudError(f"swift: GET {index_url}: HTTP {response.status_code}")
        return _listed_content_ids(response) if response.status_code == 200 else set()

    return _publish_empty_unless_listed(
        publisher,
        listed,
        index_url,
        config,
        cloud.region,
        cloud.public_auth_url,
        publisher.product_streams_urls,
        _print,
        _print_err,
    )


def _locally(config, identity, _print, _print_err) -> int:
    """--publish-only when the unit serves the metadata: the same, into the served directory."""
    from .openstack import system_ca_certificates
    from .publish import INDEX_PATH
    from .publish_local import LocalPublisher
    from .state import INTERFACES

    local = config.local_metadata
    verify = identity.ca_file or system_ca_certificates()
    publisher = LocalPublisher(local.directory, local.url, identity.region, identity.auth_url, verify)

    def listed() -> set[str]:
        return set(publisher.read(INDEX_PATH).get("index") or {})

    def served_urls() -> dict[str, str]:  # the charm registers its bindings' URLs itself
        return dict.fromkeys(INTERFACES, publisher.metadata_url)

    index_url = publisher.url_of(INDEX_PATH)
    auth_url = identity.public_auth_url or identity.auth_url  # no keystone session here: no catalog to read
    return _publish_empty_unless_listed(
        publisher, listed, index_url, config, identity.region, auth_url, served_urls, _print, _print_err
    )


def _publish_empty_unless_listed(
    publisher, listed, index_url: str, config, region: str, auth_url: str, product_streams_urls, _print, _print_err
) -> int:
    """Publish an empty image list for our content id unless `listed()` (the content ids the index
    lists) has it; print the metadata URL and `product_streams_urls()` (see `publish_only_lines`)."""
    from .openstack import CloudError
    from .publish import image_ids_tree

    try:
        if config.content_id in listed():
            logging.info("%s already lists %s: left as it is", index_url, config.content_id)
        else:
            tree = image_ids_tree(config.content_id, [], region, auth_url, config.hypervisor_mapping)
            publisher.publish(tree, config.cloud_name)
            logging.info("published an empty image list for %s to %s", config.content_id, publisher.metadata_url)
        urls = product_streams_urls()
    except CloudError as error:
        _print_err(f"error: metadata not published: {error}")
        return EXIT_FAILED
    for line in publish_only_lines(publisher.metadata_url, urls):
        _print(line)
    return EXIT_OK


def _listed_content_ids(response) -> set[str]:
    try:
        index = response.json().get("index")
    except (ValueError, AttributeError):
        return set()
    return set(index) if isinstance(index, dict) else set()
