#!/usr/bin/env python3
"""Juju machine charm that keeps Glance in sync with simplestreams image sources.

The sync itself is `simplestreams_sync` (cron and the `sync-images` action run it); this charm turns
options and relation data into its two config files, the cron entry and the machine's CA trust, and
reports the sync's progress and results in `juju status`.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone

import ops
import pydantic
from charmlibs.interfaces.certificate_transfer import CertificateTransferRequires

from simplestreams_sync import quick_check
from simplestreams_sync.config import LocalMetadata
from simplestreams_sync.state import INTERFACES, utc_now
from simplestreams_sync.text import shorten
from sync_charm import certificates, cos_agent, host, identity_service, metadata_server, nrpe, sync_process
from sync_charm.config import CharmConfig, format_errors
from sync_charm.sync_report import (
    action_failure,
    action_results,
    decisions_summary,
    failed_sync_summary,
    last_sync_summary,
    next_try_summary,
    progress_message,
    sync_failed,
)

logger = logging.getLogger(__name__)

IDENTITY = "identity-service"
CERTIFICATES = "certificates"
RECEIVE_CA = "receive-ca-cert"
IMAGE_MODIFIER = "image-modifier"
NRPE = "nrpe-external-master"
PROGRESS_INTERVAL = 10.0  # seconds between status updates while the action syncs


class GlanceSimplestreamsSyncCharm(ops.CharmBase):
    """Renders the sync's config, schedules it on the leader, and reports on it."""

    def __init__(self, framework: ops.Framework) -> None:
        super().__init__(framework)
        framework.observe(self.on.collect_unit_status, self._on_collect_status)
        framework.observe(self.on.install, self._on_install)
        framework.observe(self.on.remove, self._on_remove)
        framework.observe(self.on.sync_images_action, self._on_sync_images)
        self._ca_transfer = CertificateTransferRequires(self, RECEIVE_CA)
        framework.observe(self._ca_transfer.on.certificate_set_updated, self._on_reconcile)
        framework.observe(self._ca_transfer.on.certificates_removed, self._on_reconcile)
        framework.observe(self.on.config_changed, self._on_config_changed)
        framework.observe(self.on.upgrade_charm, self._on_upgrade_charm)
        for event in (
            self.on.start,
            self.on.leader_elected,
            self.on.leader_settings_changed,
            self.on.update_status,
        ):
            framework.observe(event, self._on_reconcile)
        for endpoint in (IDENTITY, CERTIFICATES, IMAGE_MODIFIER, NRPE, cos_agent.ENDPOINT):
            events = self.on[endpoint]
            for event in (
                events.relation_joined,
                events.relation_changed,
                events.relation_departed,
                events.relation_broken,
            ):
                framework.observe(event, self._on_reconcile)

    # --- event handlers ---------------------------------------------------------------------------

    def _on_install(self, event: ops.InstallEvent) -> None:
        host.install_packages()
        sync_process.remove_classic_cron_files()
        self._reconcile()

    def _on_upgrade_charm(self, event: ops.UpgradeCharmEvent) -> None:
        """Also what switching from the classic charm runs (install does not run again): the packages
        install asks for, its cron files go, and no earlier version's quick-check record keeps a token;
        the reconcile makes the sync's user and directories."""
        host.install_packages()
        sync_process.remove_classic_cron_files()
        if quick_check.drop_token(host.PATHS.state_dir):
            logger.info("removed the Keystone token an earlier version kept in the quick check's record")
        self._reconcile()

    def _on_reconcile(self, event: ops.EventBase) -> None:
        self._reconcile()

    def _on_config_changed(self, event: ops.ConfigChangedEvent) -> None:
        config, _ = self._load_config()
        for warning in config.ignored_classic_options() if config is not None else []:
            logger.warning(warning)
        self._reconcile()

    def _on_remove(self, event: ops.RemoveEvent) -> None:
        """Undo what the charm wrote: everything but the sync log."""
        sync_process.write_cron(None)
        nrpe.remove_check()
        cos_agent.stop()
        metadata_server.stop_serving()
        host.remove_files()

    def _on_collect_status(self, event: ops.CollectStatusEvent) -> None:
        config, problem = self._load_config()
        if problem:
            event.add_status(ops.BlockedStatus(shorten(f"Invalid config: {problem}", 200)))
        _, modifier_problem = self._image_modifier()
        if modifier_problem:
            event.add_status(ops.BlockedStatus(modifier_problem))
        identity_problem = self._identity_problem()
        if identity_problem:
            event.add_status(identity_problem)
        certificates_relation = self._relation(CERTIFICATES)
        if certificates_relation is not None and not self._vault_cas(certificates_relation):
            event.add_status(ops.WaitingStatus("Waiting for vault to send its CA on certificates"))
        for relation in self.model.relations[RECEIVE_CA]:
            if relation.active and relation.app and not self._ca_transfer.get_all_certificates(relation.id):
                event.add_status(ops.WaitingStatus(f"Waiting for {relation.app.name} to send its CA on {RECEIVE_CA}"))
        if not self.unit.is_leader():
            event.add_status(ops.ActiveStatus("Standby: only the leader unit syncs images"))
        elif config is not None:
            event.add_status(self._sync_status(config))
        event.add_status(ops.ActiveStatus())

    def _on_sync_images(self, event: ops.ActionEvent) -> None:
        if not self.unit.is_leader():
            event.fail(f"Only the leader unit syncs images: run the action on {self.app.name}/leader")
            return
        config, problem = self._load_config()
        if config is None:
            event.fail(f"Invalid config, fix it first: {problem}")
            return
        self._reconcile(first_sync=False)  # this is a sync: no background one to race with
        identity_problem = self._identity_problem()
        if identity_problem:
            event.fail(f"Cannot sync yet: {identity_problem.message}")
            return
        dry_run = bool(event.params.get("dry-run", False))
        started = utc_now()
        outcome = sync_process.run_sync(
            self.charm_dir,
            dry_run=dry_run,
            full_check=bool(event.params.get("full-check", False)),
            on_line=event.log,
            on_tick=self._show_progress,
            tick=PROGRESS_INTERVAL,
        )
        result = sync_process.read_result()
        if result is not None and result.started < started:
            result = None  # left by an earlier run
        event.set_results(action_results(outcome.stdout_lines, result, dry_run))
        failure = action_failure(outcome.returncode, result, outcome.stderr)
        if failure:
            event.fail(failure)
        if not dry_run:
            self._reconcile(first_sync=False)  # point the endpoint at freshly published metadata

    def _show_progress(self) -> None:
        """While the action runs no hook can update the status: show the sync's progress from here."""
        progress = sync_process.read_progress()
        if progress is not None:
            self.unit.status = ops.ActiveStatus(progress_message(progress))

    # --- reconciling the machine and the relations with config and relation data ------------------

    def _reconcile(self, first_sync: bool = True) -> None:
        config, problem = self._load_config()
        self._reconcile_nrpe(config)
        if config is None:
            logger.warning("invalid config, leaving files and cron as they are: %s", problem)
            return
        modify_hook, modifier_problem = self._image_modifier()
        if modifier_problem:
            logger.warning("%s; leaving files and cron as they are", modifier_problem)
            return
        credentials = self._credentials()
        account = host.sync_account()
        host.prepare_sync_paths(account)
        cos_agent.reconcile(self, config.metrics_port, config.frequency if config.run else None)
        cas = self._ca_certificates(config, credentials)
        host.install_trusted_cas(cas)
        ca_file = host.write_ca_bundle(cas, account)
        keyring = host.write_keyring(config.custom_keyring, account)
        served_urls = self._reconcile_metadata_server(config, account)
        machine = {
            "state_dir": str(host.PATHS.state_dir),
            "modify_hook": modify_hook,
            "source_proxy": host.model_proxy(),
            "frequency": config.frequency if config.run else None,  # retries back off up to its period
            **({"keyring": keyring} if keyring else {}),
            **({"local_metadata": self._local_metadata(served_urls)} if served_urls else {}),
        }
        host.write_config_file(host.PATHS.mirrors, config.sync_config(**machine), self.unit.name, account)
        identity = None
        if credentials is not None and credentials.v3:
            identity = credentials.identity_config(region=config.region, interface=config.interface, ca_file=ca_file)
        host.write_config_file(host.PATHS.identity, identity, self.unit.name, account)
        self._send_requests(config, can_publish=identity is not None and config.publishes_metadata, served=served_urls)
        scheduled = identity is not None and config.run and self.unit.is_leader()
        entry = sync_process.cron_entry(config.frequency, self.unit.name, self.charm_dir) if scheduled else None
        sync_process.write_cron(entry)
        if scheduled and first_sync:
            self._start_first_sync()

    def _start_first_sync(self) -> None:
        """Sync once soon after the unit can, instead of waiting for the first cron slot."""
        result = sync_process.read_result()
        synced_before = result is not None and not result.dry_run
        if synced_before or sync_process.first_sync_requested() or sync_process.read_progress():
            return
        pid = sync_process.start_background_sync(self.charm_dir)
        sync_process.mark_first_sync_requested(pid)

    def _send_requests(self, config: CharmConfig, can_publish: bool, served: dict[str, str] | None) -> None:
        identity = self._relation(IDENTITY)
        if identity is not None:
            if served is not None:
                if can_publish and not metadata_server.has_published():
                    published = sync_process.publish_empty_metadata(self.charm_dir)
                    if published is not None:
                        identity_service.remember(identity.data[self.app], published[0], None)
                identity.data[self.unit].update(identity_service.request(config.region, served))
            elif self.unit.is_leader():
                urls = self._product_streams_urls(identity, can_publish)
                if urls is None:
                    urls = identity_service.same_url(identity_service.placeholder_url(self._address(identity)))
                identity.data[self.unit].update(identity_service.request(config.region, urls))
            else:
                identity.data[self.unit].update(identity_service.withdrawn())
        vault = self._relation(CERTIFICATES)
        if vault is not None:
            sans = [self._address(vault)]
            if config.serve_metadata and self.unit.is_leader():
                sans += [address for binding in self._served_bindings() for address in binding.addresses]
            vault.data[self.unit].update(certificates.request(self.unit.name, host.hostname(), sans))

    def _reconcile_metadata_server(self, config: CharmConfig, account: host.Account) -> dict[str, str] | None:
        """With serve_metadata the leader serves the metadata from its own web server (over HTTPS once
        vault issued its certificate); the URLs by interface. Other units serve nothing: keystone
        points at the leader only, and a new leader publishes before it is registered."""
        if not (config.serve_metadata and self.unit.is_leader()):
            metadata_server.stop_serving()
            return None
        certificate = self._server_certificate()
        tls = certificate is not None
        port = config.serve_metadata_https_port if tls else config.serve_metadata_http_port
        bindings = self._served_bindings()
        listen = metadata_server.listen_addresses(bindings, port)
        metadata_server.serve(self.unit.name, listen, certificate, account)
        return {binding.interface: metadata_server.url(binding.ingress_address, port, tls) for binding in bindings}

    def _local_metadata(self, served_urls: dict[str, str]) -> LocalMetadata:
        """What the sync needs to publish to the served directory and read it back as Juju does."""
        return LocalMetadata(directory=str(host.PATHS.served_dir), url=served_urls["public"])

    def _served_bindings(self) -> list[metadata_server.Binding]:
        bindings = []
        for interface in INTERFACES:  # keystone's URLs, each served on the binding of its name
            binding = self.model.get_binding(interface)
            network = binding.network if binding is not None else None
            bind = str(network.bind_address) if network is not None and network.bind_address else None
            ingress = str(network.ingress_address) if network is not None and network.ingress_address else None
            bind = bind or ingress or host.hostname()
            bindings.append(metadata_server.Binding(interface, bind, ingress or bind))
        return bindings

    def _server_certificate(self) -> metadata_server.ServerCertificate | None:
        vault = self._relation(CERTIFICATES)
        if vault is None:
            return None
        issued = certificates.read_server_certificate(self._units_data(vault), self.unit.name, host.hostname())
        return metadata_server.ServerCertificate(*issued) if issued else None

    def _reconcile_nrpe(self, config: CharmConfig | None) -> None:
        """With nrpe-external-master: the Nagios check of the last sync in nrpe.d and `monitors` for the
        subordinate; without: no check. Invalid config leaves an installed check as it is."""
        relations = self.model.relations[NRPE]
        if not relations:
            nrpe.remove_check()
            return
        if config is None:
            return
        standby = not self.unit.is_leader()
        argv = nrpe.check_argv(config.frequency, run=config.run, standby=standby)
        servicegroups = config.nagios_servicegroups or config.nagios_context
        nrpe.install_check(
            nrpe.check_config(argv, servicegroups, self.unit.name), expects_syncs=config.run and not standby
        )
        settings = nrpe.relation_settings(config.nagios_context, self.unit.name)
        for relation in relations:
            data = relation.data[self.unit]
            changed = {key: value for key, value in settings.items() if data.get(key) != value}
            if changed:
                data.update(changed)

    def _product_streams_urls(self, identity: ops.Relation, can_publish: bool) -> dict[str, str] | None:
        """Where keystone's product-streams endpoint should point, per interface: the URLs in
        last-sync.json (every sync's, cron's included, applied by the next event: update-status at the
        latest), remembered in our application data on the relation so that a new leader keeps them.
        Before any sync has published, or when only an earlier revision's single URL is known, the
        engine publishes (empty metadata, if none yet) and names them; until it can, an earlier
        revision's URL serves every interface, or None: nothing is published yet."""
        remembered = identity.data[self.app]
        result = sync_process.read_result()
        if result is not None and result.metadata_url:
            identity_service.remember(remembered, result.metadata_url, result.product_streams_urls or None)
        urls = identity_service.remembered_urls(remembered)
        if urls is None and can_publish:
            published = sync_process.publish_empty_metadata(self.charm_dir)
            if published is not None:
                identity_service.remember(remembered, *published)
                urls = published[1]
        if urls is None and remembered.get("metadata_url"):
            urls = identity_service.same_url(remembered["metadata_url"])
        return urls

    # --- reading config and relations -------------------------------------------------------------

    def _load_config(self) -> tuple[CharmConfig | None, str | None]:
        try:
            return self.load_config(CharmConfig), None
        except pydantic.ValidationError as error:
            names = {key.replace("-", "_"): key for key in self.config}
            return None, format_errors(error, names)

    def _relation(self, endpoint: str) -> ops.Relation | None:
        relations = self.model.relations[endpoint]
        return relations[0] if relations else None

    def _units_data(self, relation: ops.Relation) -> list[ops.RelationDataContent]:
        return [relation.data[unit] for unit in sorted(relation.units, key=lambda unit: unit.name)]

    def _address(self, relation: ops.Relation) -> str:
        binding = self.model.get_binding(relation)
        address = binding.network.ingress_address if binding is not None else None
        return str(address) if address is not None else host.hostname()

    def _credentials(self) -> identity_service.Credentials | None:
        relation = self._relation(IDENTITY)
        if relation is None:
            return None
        return identity_service.read_credentials(self._units_data(relation))

    def _identity_problem(self) -> ops.StatusBase | None:
        if self._relation(IDENTITY) is None:
            return ops.BlockedStatus(f"Missing relation: juju integrate {self.app.name}:{IDENTITY} keystone:{IDENTITY}")
        credentials = self._credentials()
        if credentials is None:
            return ops.WaitingStatus(f"Waiting for keystone to send service credentials on {IDENTITY}")
        if not credentials.v3:
            return ops.BlockedStatus(
                f"Keystone offers API v{credentials.api_version}, the sync needs v3: "
                "juju config keystone preferred-api-version=3"
            )
        return None

    def _vault_cas(self, relation: ops.Relation) -> list[str]:
        return certificates.read_ca_certificates(self._units_data(relation))

    def _ca_certificates(self, config: CharmConfig, credentials: identity_service.Credentials | None) -> list[str]:
        """Every CA the sync must trust: ssl_ca, vault's CA and chain, the CAs sent on receive-ca-cert,
        and keystone's ca_cert."""
        cas = certificates.split_pem(config.ssl_ca or "")
        vault = self._relation(CERTIFICATES)
        if vault is not None:
            cas += self._vault_cas(vault)
        for pem in sorted(self._ca_transfer.get_all_certificates()):
            cas += certificates.split_pem(pem)
        if credentials is not None and credentials.ca_cert:
            cas += certificates.split_pem(credentials.ca_cert)
        return list(dict.fromkeys(cas))

    def _image_modifier(self) -> tuple[str | None, str | None]:
        """(the subordinate's `script-path`, or a problem when more than one is related)."""
        relations = self.model.relations[IMAGE_MODIFIER]
        if len(relations) > 1:
            names = ", ".join(sorted(relation.app.name for relation in relations if relation.app))
            return None, f"Only one image-modifier subordinate is supported, remove all but one of: {names}"
        for relation in relations:
            for data in self._units_data(relation):
                if data.get("script-path"):
                    return data["script-path"], None
        return None, None

    def _sync_status(self, config: CharmConfig) -> ops.StatusBase:
        progress = sync_process.read_progress()
        if progress is not None:
            return ops.ActiveStatus(progress_message(progress))
        result = sync_process.read_result()
        if result is None:
            if config.run:
                return ops.ActiveStatus(f"Unit is ready (first sync pending, log: {host.PATHS.log_file})")
            return ops.ActiveStatus("Unit is ready (no sync yet: set run=true or run the sync-images action)")
        if config.use_swift and not config.serve_metadata and result.object_store_missing:
            return ops.BlockedStatus(
                "No object-store endpoint in keystone: images sync but no metadata is "
                "published; add swift or ceph-radosgw, or set serve_metadata=true (or use_swift=false)"
            )
        if sync_failed(result, publishing=config.publishes_metadata):
            retry = "run sync-images"
            if config.run:
                next_try = next_try_summary(result, datetime.now(timezone.utc))
                next_try = next_try or f"next try {sync_process.cron_description(config.frequency, self.unit.name)}"
                retry = f"{next_try}, or {retry}"
            return ops.BlockedStatus(f"{failed_sync_summary(result)}; {retry}")
        decisions = decisions_summary(result)
        if decisions:
            return ops.ActiveStatus(f"Unit is ready ({last_sync_summary(result)}); {decisions}")
        return ops.ActiveStatus(f"Unit is ready ({last_sync_summary(result)})")


if __name__ == "__main__":  # pragma: nocover
    ops.main(GlanceSimplestreamsSyncCharm)
