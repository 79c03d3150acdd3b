"""What the charm does to the machine and asks of its relations: plain functions of the event's snapshot.

`reconcile` makes the machine match the snapshot (config files, CAs, cron, the metadata server, the
Nagios check) and returns what the relations should say; the charm writes that relation data. Nothing
here reads Juju's model.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from simplestreams_sync import quick_check
from simplestreams_sync.config import LocalMetadata

from . import (
    certificates,
    cos_agent,
    host,
    identity_service,
    image_modifier,
    leadership,
    metadata_server,
    nrpe,
    sync_process,
)
from .config import CharmConfig
from .snapshot import Snapshot

logger = logging.getLogger(__name__)


@dataclass
class Outcome:
    """What one reconcile leaves for the charm: relation data to set, and a problem for the status."""

    identity_unit: dict[str, str] | None = None
    identity_app: dict[str, str] = field(default_factory=dict)
    vault_unit: dict[str, str] | None = None
    nrpe_unit: dict[str, str] | None = None
    served_problem: str | None = None


def install() -> None:
    """What a new unit needs, and a unit the classic charm leaves: packages, no classic cron files, and
    the engine's bytecode."""
    host.install_packages()
    sync_process.remove_classic_cron_files()
    sync_process.compile_engine()


def upgrade() -> None:
    """Also what switching from the classic charm runs (install does not run again): what install does,
    and no earlier version's token in the quick check's record; the reconcile makes the sync's user and
    directories."""
    install()
    if quick_check.drop_token(host.PATHS.state_dir):
        logger.info("removed the Keystone token an earlier version kept in the quick check's record")


def remove() -> None:
    """Undo what the charm wrote on the machine: cron, the Nagios check, the metrics service, the served
    metadata and its site,
    the sudoers rule, the config files (the password among them), CAs and state. The sync log stays."""
    sync_process.write_cron(None)
    nrpe.remove_check()
    cos_agent.stop()
    metadata_server.stop_serving()
    image_modifier.forbid()
    host.remove_files()


def reconcile(snapshot: Snapshot, first_sync: bool = True) -> Outcome:
    """Make the machine match the snapshot. Invalid config (or a bad image-modifier) leaves the files and
    cron as they are; `first_sync` starts the first sync in the background once the unit can sync."""
    outcome = Outcome()
    if not snapshot.leader:  # only the leader syncs: whatever the config, no password, no schedule
        leadership.stand_by(host.PATHS)
    config = snapshot.config
    outcome.nrpe_unit = _reconcile_nrpe(snapshot, config)
    if config is None:
        logger.warning("invalid config, leaving files and cron as they are: %s", snapshot.config_problem)
        return outcome
    if snapshot.modifier_problem:
        logger.warning("%s; leaving files and cron as they are", snapshot.modifier_problem)
        return outcome
    account = host.sync_account()
    host.prepare_sync_paths(account)
    cas = _ca_certificates(snapshot, config)
    host.install_trusted_cas(cas)
    ca_file = host.write_ca_bundle(cas, account)
    keyring = host.write_keyring(config.custom_keyring, account)
    served_urls = None
    if snapshot.serves_metadata:
        served_urls, outcome.served_problem = _serve(snapshot, config, account)
    elif not _hands_over_serving(snapshot, config):
        metadata_server.stop_serving()
    modify_hook = _allow_image_modifier(snapshot, account)
    machine = {
        "state_dir": str(host.PATHS.state_dir),
        "modify_hook": modify_hook,
        "source_proxy": host.model_proxy(),
        "frequency": config.frequency if config.run else None,  # retries back off up to its period
        **({"keyring": keyring} if keyring else {}),
        **({"local_metadata": _local_metadata(served_urls)} if served_urls else {}),
    }
    host.write_config_file(host.PATHS.mirrors, config.sync_config(**machine), snapshot.unit_name, account)
    identity = None
    if snapshot.keystone_v3 and snapshot.leader:
        identity = snapshot.credentials.identity_config(  # type: ignore[union-attr]
            region=config.region, interface=config.interface, ca_file=ca_file
        )
    host.write_config_file(host.PATHS.identity, identity, snapshot.unit_name, account)
    if snapshot.identity_related:
        _endpoint_requests(snapshot, config, outcome, can_publish=identity is not None, served=served_urls)
    if snapshot.vault_related:
        outcome.vault_unit = _certificate_request(snapshot)
    sync_process.write_cron(
        sync_process.cron_entry(config.frequency, snapshot.unit_name, snapshot.charm_dir)
        if snapshot.scheduled
        else None
    )
    if snapshot.scheduled and first_sync:
        start_first_sync(snapshot)
    return outcome


def start_first_sync(snapshot: Snapshot) -> None:
    """Sync once soon after the unit can, instead of waiting for the first cron slot; and at once when it
    has become the leader again (what it synced before may be long out of date)."""
    took_over = leadership.took_over(host.PATHS.state_dir)
    if snapshot.progress is not None or (not took_over and (snapshot.synced_before or snapshot.first_sync_requested)):
        return
    pid = sync_process.start_background_sync(snapshot.charm_dir)
    sync_process.mark_first_sync_requested(pid)
    leadership.synced_after_takeover(host.PATHS.state_dir)


def _serve(snapshot: Snapshot, config: CharmConfig, account: host.Account) -> tuple[dict[str, str], str | None]:
    """With serve_metadata the leader serves the metadata from its own web server (over HTTPS once vault
    issued its certificate): the URLs by interface, and why nginx does not run, if it does not."""
    tls = snapshot.server_certificate is not None
    port = config.serve_metadata_https_port if tls else config.serve_metadata_http_port
    listen = metadata_server.listen_addresses(list(snapshot.bindings), port)
    problem = metadata_server.serve(snapshot.unit_name, listen, snapshot.server_certificate, account)
    urls = {binding.interface: metadata_server.url(binding.ingress_address, port, tls) for binding in snapshot.bindings}
    return urls, problem


def _hands_over_serving(snapshot: Snapshot, config: CharmConfig) -> bool:
    """Whether the leader keeps serving, with serve_metadata switched off, until the metadata is in the
    object store and keystone points there (see `_endpoint_requests`)."""
    return snapshot.leader and snapshot.keystone_v3 and config.use_swift and metadata_server.is_serving()


def _local_metadata(served_urls: dict[str, str]) -> LocalMetadata:
    """What the sync needs to publish to the served directory and read it back as Juju does."""
    return LocalMetadata(directory=str(host.PATHS.served_dir), url=served_urls["public"])


def _allow_image_modifier(snapshot: Snapshot, account: host.Account) -> list[str] | None:
    """The command the sync runs the subordinate's script with, as root through sudo; no rule without one."""
    if snapshot.modifier_script is None:
        image_modifier.forbid()
        return None
    image_modifier.allow(snapshot.modifier_script, account.name, snapshot.unit_name)
    return image_modifier.command(snapshot.modifier_script)


def _endpoint_requests(
    snapshot: Snapshot, config: CharmConfig, outcome: Outcome, can_publish: bool, served: dict[str, str] | None
) -> None:
    """Where keystone's product-streams endpoint points: the leader's served URLs, or where the sync
    published; non-leaders withdraw. A leader that stops serving keeps its web server until the object
    store has the metadata, so that the endpoint never points at nothing."""
    if not snapshot.leader:
        outcome.identity_unit = identity_service.withdrawn()
        return
    remembered = dict(snapshot.remembered)
    if served is not None:
        if can_publish and not metadata_server.has_published():
            published = sync_process.publish_empty_metadata(snapshot.charm_dir)
            if published is not None:
                identity_service.remember(remembered, published[0], None)
        remembered["served_metadata_url"] = served["public"]
        outcome.identity_unit = identity_service.request(config.region, served)
    else:
        handing_over = metadata_server.is_serving()  # the object store is checked before keystone moves
        urls = None if handing_over else _published_urls(snapshot, remembered)
        if urls is None and can_publish and config.use_swift:
            urls = _publish_first(snapshot, remembered)
        earlier_url = remembered.get("metadata_url") not in (None, "", remembered.get("served_metadata_url"))
        if urls is None and earlier_url and not handing_over:
            urls = identity_service.same_url(remembered["metadata_url"])  # an earlier revision's single URL
        if urls is None and handing_over:
            outcome.identity_app = _changed(snapshot.remembered, remembered)
            return  # the object store has nothing yet: keystone keeps pointing at the served copy
        metadata_server.stop_serving()
        remembered.pop("served_metadata_url", None)
        if urls is None:
            urls = identity_service.same_url(identity_service.placeholder_url(snapshot.identity_address))
        outcome.identity_unit = identity_service.request(config.region, urls)
    outcome.identity_app = _changed(snapshot.remembered, remembered)


def _published_urls(snapshot: Snapshot, remembered: dict[str, str]) -> dict[str, str] | None:
    """The object store's product-streams URLs: from last-sync.json (every sync's, cron's included),
    remembered in our application data so that a new leader keeps them; a result that published to
    the unit's own web server does not count."""
    result = snapshot.result
    served_url = remembered.get("served_metadata_url")
    if result is not None and result.metadata_url and result.metadata_url.rstrip("/") != served_url:
        identity_service.remember(remembered, result.metadata_url, result.product_streams_urls or None)
    if served_url and remembered.get("metadata_url") == served_url:
        return None
    return identity_service.remembered_urls(remembered)


def _publish_first(snapshot: Snapshot, remembered: dict[str, str]) -> dict[str, str] | None:
    """Before any sync has published: the engine publishes (empty metadata, if none yet) and names the URLs."""
    published = sync_process.publish_empty_metadata(snapshot.charm_dir)
    if published is None:
        return None
    identity_service.remember(remembered, *published)
    return published[1]


def _changed(before: Mapping[str, str], after: dict[str, str]) -> dict[str, str]:
    """The application data to set: changed keys, and "" for removed ones."""
    changes = {key: value for key, value in after.items() if before.get(key) != value}
    changes.update({key: "" for key in before if key not in after})
    return changes


def _certificate_request(snapshot: Snapshot) -> dict[str, str]:
    sans = [snapshot.vault_address]
    if snapshot.serves_metadata:
        sans += [address for binding in snapshot.bindings for address in binding.addresses]
    return certificates.request(snapshot.unit_name, host.hostname(), sans)


def _ca_certificates(snapshot: Snapshot, config: CharmConfig) -> list[str]:
    """Every CA the sync must trust: ssl_ca, vault's CA and chain, the CAs sent on receive-ca-cert, and
    keystone's ca_cert."""
    cas = certificates.split_pem(config.ssl_ca or "")
    cas += snapshot.vault_cas
    for pem in snapshot.transferred_cas:
        cas += certificates.split_pem(pem)
    if snapshot.credentials is not None and snapshot.credentials.ca_cert:
        cas += certificates.split_pem(snapshot.credentials.ca_cert)
    return list(dict.fromkeys(cas))


def _reconcile_nrpe(snapshot: Snapshot, config: CharmConfig | None) -> dict[str, str] | None:
    """With nrpe-external-master: the Nagios check of the last sync in nrpe.d and `monitors` for the
    subordinate; without: no check. Invalid config leaves an installed check as it is."""
    if not snapshot.nrpe_related:
        nrpe.remove_check()
        return None
    if config is None:
        return None
    standby = not snapshot.leader
    argv = nrpe.check_argv(config.frequency, run=config.run, standby=standby)
    servicegroups = config.nagios_servicegroups or config.nagios_context
    nrpe.install_check(
        nrpe.check_config(argv, servicegroups, snapshot.unit_name), expects_syncs=config.run and not standby
    )
    return nrpe.relation_settings(config.nagios_context, snapshot.unit_name)
