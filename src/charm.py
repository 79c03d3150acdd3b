#!/usr/bin/env python3
"""Juju machine charm that keeps Glance in sync with simplestreams image sources.

The sync itself is `simplestreams_sync` (cron and the `sync-images` action run it). Each event reads
its snapshot once (`sync_charm.snapshot`), makes the machine match it (`sync_charm.workload`) and
reports it (`sync_charm.status`).
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime, timezone

import ops
from charmlibs.interfaces.certificate_transfer import CertificateTransferRequires

from simplestreams_sync.state import utc_now
from sync_charm import cos_agent, identity_service, snapshot, status, sync_process, workload
from sync_charm.snapshot import CERTIFICATES, IDENTITY, IMAGE_MODIFIER, NRPE, RECEIVE_CA, Snapshot
from sync_charm.sync_report import action_failure, action_results, progress_message

logger = logging.getLogger(__name__)

PROGRESS_INTERVAL = 10.0  # seconds between status updates while the action syncs


class GlanceSimplestreamsSyncCharm(ops.CharmBase):
    """Renders the sync's config, schedules it on the leader, and reports on it."""

    def __init__(self, framework: ops.Framework) -> None:
        super().__init__(framework)
        self._ca_transfer = CertificateTransferRequires(self, RECEIVE_CA)
        self._snapshot: Snapshot | None = None
        self._served_problem: str | None = None
        framework.observe(self.on.collect_unit_status, self._on_collect_status)
        framework.observe(self.on.install, self._on_install)
        framework.observe(self.on.upgrade_charm, self._on_upgrade_charm)
        framework.observe(self.on.config_changed, self._on_config_changed)
        framework.observe(self.on.stop, self._on_remove)
        framework.observe(self.on.remove, self._on_remove)
        framework.observe(self.on[IDENTITY].relation_broken, self._on_identity_broken)
        framework.observe(self.on.sync_images_action, self._on_sync_images)
        framework.observe(self._ca_transfer.on.certificate_set_updated, self._on_reconcile)
        framework.observe(self._ca_transfer.on.certificates_removed, self._on_reconcile)
        for event in (self.on.start, self.on.leader_elected, self.on.leader_settings_changed, self.on.update_status):
            framework.observe(event, self._on_reconcile)
        for endpoint in (IDENTITY, CERTIFICATES, IMAGE_MODIFIER, NRPE, cos_agent.ENDPOINT):
            events = self.on[endpoint]
            for event in (events.relation_joined, events.relation_changed, events.relation_departed):
                framework.observe(event, self._on_reconcile)
        for endpoint in (CERTIFICATES, IMAGE_MODIFIER, NRPE, cos_agent.ENDPOINT):
            framework.observe(self.on[endpoint].relation_broken, self._on_reconcile)

    def _read(self) -> Snapshot:
        """The snapshot of the event, read on first use."""
        if self._snapshot is None:
            self._snapshot = snapshot.read(self, self._ca_transfer)
        return self._snapshot

    # --- events -----------------------------------------------------------------------------------

    def _on_install(self, event: ops.InstallEvent) -> None:
        workload.install()
        self._reconcile()

    def _on_upgrade_charm(self, event: ops.UpgradeCharmEvent) -> None:
        workload.upgrade()
        self._reconcile()

    def _on_reconcile(self, event: ops.EventBase) -> None:
        self._reconcile()

    def _on_config_changed(self, event: ops.ConfigChangedEvent) -> None:
        config = self._read().config
        for warning in config.ignored_classic_options() if config is not None else []:
            logger.warning(warning)
        self._reconcile()

    def _on_identity_broken(self, event: ops.RelationBrokenEvent) -> None:
        self._withdraw_endpoint(event.relation)
        self._reconcile()

    def _on_remove(self, event: ops.EventBase) -> None:
        """The unit goes: nothing of the charm's stays on the machine, nor registered through keystone."""
        workload.remove()
        for relation in self.model.relations[IDENTITY]:
            self._withdraw_endpoint(relation)

    def _on_collect_status(self, event: ops.CollectStatusEvent) -> None:
        now = datetime.now(timezone.utc)
        for unit_status in status.unit_statuses(self._read(), now, self._served_problem):
            event.add_status(unit_status)

    def _on_sync_images(self, event: ops.ActionEvent) -> None:
        state = self._read()
        if not state.leader:
            event.fail(f"Only the leader unit syncs images: run the action on {self.app.name}/leader")
            return
        if state.config is None:
            event.fail(f"Invalid config, fix it first: {state.config_problem}")
            return
        self._reconcile(first_sync=False)  # this is a sync: no background one to race with
        identity_problem = status.identity_problem(state)
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
        if not dry_run:  # point the endpoint at freshly published metadata
            self._snapshot = dataclasses.replace(state, result=result or state.result, progress=None)
            self._reconcile(first_sync=False)

    def _show_progress(self) -> None:
        """While the action runs no hook can update the status: show the sync's progress from here."""
        progress = sync_process.read_progress()
        if progress is not None:
            self.unit.status = ops.ActiveStatus(progress_message(progress))

    # --- effects ----------------------------------------------------------------------------------

    def _reconcile(self, first_sync: bool = True) -> None:
        state = self._read()
        outcome = workload.reconcile(state, first_sync)
        self._served_problem = outcome.served_problem
        if state.config is not None and not state.modifier_problem:  # the sync's user and state dir exist
            cos_agent.reconcile(self, state.config.metrics_port, state.config.frequency if state.config.run else None)
        identity = self._active_relation(IDENTITY)
        if identity is not None and outcome.identity_unit is not None:
            identity.data[self.unit].update(outcome.identity_unit)
        if identity is not None and outcome.identity_app:
            identity.data[self.app].update(outcome.identity_app)
        vault = self._active_relation(CERTIFICATES)
        if vault is not None and outcome.vault_unit is not None:
            vault.data[self.unit].update(outcome.vault_unit)
        for relation in self.model.relations[NRPE]:
            data = relation.data[self.unit]
            data.update({key: value for key, value in (outcome.nrpe_unit or {}).items() if data.get(key) != value})

    def _withdraw_endpoint(self, relation: ops.Relation) -> None:
        """Clear what we asked keystone to register, and what we remembered for the next leader (Juju
        may no longer take relation data from a relation that is going: then there is nothing to clear)."""
        try:
            relation.data[self.unit].update(identity_service.withdrawn())
            if self.unit.is_leader():
                relation.data[self.app].update(dict.fromkeys(relation.data[self.app], ""))
        except ops.ModelError as error:
            logger.info("cannot clear the identity-service relation's data: %s", error)

    def _active_relation(self, endpoint: str) -> ops.Relation | None:
        relations = [relation for relation in self.model.relations[endpoint] if relation.active]
        return relations[0] if relations else None


if __name__ == "__main__":  # pragma: nocover
    ops.main(GlanceSimplestreamsSyncCharm)
