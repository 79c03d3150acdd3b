"""Everything one event's decisions depend on, read once: the options (validated once), the relations,
leadership, the machine's addresses and the sync's own state files.

`read` is where an event reads Juju's model and the sync's state files (the action reads the result
once more, after its own sync); `workload` acts on the snapshot and `status` describes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import ops
import pydantic
from charmlibs.interfaces.certificate_transfer import CertificateTransferRequires

from simplestreams_sync.state import INTERFACES, Progress, SyncResult

from . import certificates, host, identity_service, image_modifier, metadata_server, sync_process
from .config import CharmConfig, format_errors

IDENTITY = "identity-service"
CERTIFICATES = "certificates"
RECEIVE_CA = "receive-ca-cert"
IMAGE_MODIFIER = "image-modifier"
NRPE = "nrpe-external-master"


@dataclass(frozen=True)
class Snapshot:
    unit_name: str
    app_name: str
    charm_dir: Path
    leader: bool
    config: CharmConfig | None
    config_problem: str | None
    identity_related: bool = False
    credentials: identity_service.Credentials | None = None
    identity_address: str = ""
    remembered: Mapping[str, str] = field(default_factory=dict)  # our app data on identity-service
    vault_related: bool = False
    vault_address: str = ""
    vault_cas: tuple[str, ...] = ()
    server_certificate: metadata_server.ServerCertificate | None = None
    transferred_cas: tuple[str, ...] = ()
    waiting_ca_senders: tuple[str, ...] = ()  # receive-ca-cert apps that sent no CA yet
    modifier_apps: tuple[str, ...] = ()  # the image-modifier subordinates related
    modifier_script: str | None = None  # the first one's `script-path`
    nrpe_related: bool = False
    bindings: tuple[metadata_server.Binding, ...] = ()
    result: SyncResult | None = None
    progress: Progress | None = None
    first_sync_requested: bool = False

    @property
    def modifier_problem(self) -> str | None:
        return image_modifier.relation_problem(self.modifier_apps, self.modifier_script)

    @property
    def serves_metadata(self) -> bool:
        """Whether the unit serves the metadata itself: serve_metadata, on the leader."""
        return self.config is not None and self.config.serve_metadata and self.leader

    @property
    def scheduled(self) -> bool:
        """Cron runs the sync on this unit."""
        config = self.config
        return config is not None and config.run and self.leader and self.keystone_v3

    @property
    def keystone_v3(self) -> bool:
        return self.credentials is not None and self.credentials.v3

    @property
    def synced_before(self) -> bool:
        return self.result is not None and not self.result.dry_run


def read(charm: ops.CharmBase, ca_transfer: CertificateTransferRequires) -> Snapshot:
    """The snapshot of this event."""
    config, problem = _config(charm)
    leader = charm.unit.is_leader()
    identity = _relation(charm, IDENTITY)
    vault = _relation(charm, CERTIFICATES)
    modifier_apps, script = _image_modifier(charm)
    return Snapshot(
        unit_name=charm.unit.name,
        app_name=charm.app.name,
        charm_dir=charm.charm_dir,
        leader=leader,
        config=config,
        config_problem=problem,
        identity_related=identity is not None,
        credentials=identity_service.read_credentials(_units_data(identity)) if identity else None,
        identity_address=_address(charm, identity) if identity else "",
        remembered=dict(identity.data[charm.app]) if identity and leader else {},
        vault_related=vault is not None,
        vault_address=_address(charm, vault) if vault else "",
        vault_cas=tuple(certificates.read_ca_certificates(_units_data(vault))) if vault else (),
        server_certificate=_server_certificate(charm, vault),
        transferred_cas=tuple(sorted(ca_transfer.get_all_certificates())),
        waiting_ca_senders=_waiting_ca_senders(charm, ca_transfer),
        modifier_apps=modifier_apps,
        modifier_script=script,
        nrpe_related=bool(charm.model.relations[NRPE]),
        bindings=_served_bindings(charm) if config is not None and config.serve_metadata and leader else (),
        result=sync_process.read_result(),
        progress=sync_process.read_progress(),
        first_sync_requested=sync_process.first_sync_requested(),
    )


def _config(charm: ops.CharmBase) -> tuple[CharmConfig | None, str | None]:
    try:
        return charm.load_config(CharmConfig), None
    except pydantic.ValidationError as error:
        names = {key.replace("-", "_"): key for key in charm.config}
        return None, format_errors(error, names)


def _relation(charm: ops.CharmBase, endpoint: str) -> ops.Relation | None:
    relations = [relation for relation in charm.model.relations[endpoint] if relation.active]
    return relations[0] if relations else None


def _units_data(relation: ops.Relation | None) -> list[ops.RelationDataContent]:
    if relation is None:
        return []
    return [relation.data[unit] for unit in sorted(relation.units, key=lambda unit: unit.name)]


def _address(charm: ops.CharmBase, relation: ops.Relation) -> str:
    binding = charm.model.get_binding(relation)
    address = binding.network.ingress_address if binding is not None else None
    return str(address) if address is not None else host.hostname()


def _server_certificate(charm: ops.CharmBase, vault: ops.Relation | None) -> metadata_server.ServerCertificate | None:
    if vault is None:
        return None
    issued = certificates.read_server_certificate(_units_data(vault), charm.unit.name, host.hostname())
    return metadata_server.ServerCertificate(*issued) if issued else None


def _waiting_ca_senders(charm: ops.CharmBase, ca_transfer: CertificateTransferRequires) -> tuple[str, ...]:
    return tuple(
        relation.app.name
        for relation in charm.model.relations[RECEIVE_CA]
        if relation.active and relation.app and not ca_transfer.get_all_certificates(relation.id)
    )


def _image_modifier(charm: ops.CharmBase) -> tuple[tuple[str, ...], str | None]:
    """(the image-modifier apps related, the first `script-path` one of their units sent)."""
    relations = [relation for relation in charm.model.relations[IMAGE_MODIFIER] if relation.active]
    apps = tuple(sorted(relation.app.name for relation in relations if relation.app))
    scripts = [data.get("script-path") for relation in relations for data in _units_data(relation)]
    return apps, next((script for script in scripts if script), None)


def _served_bindings(charm: ops.CharmBase) -> tuple[metadata_server.Binding, ...]:
    bindings = []
    for interface in INTERFACES:  # keystone's URLs, each served on the binding of its name
        binding = charm.model.get_binding(interface)
        network = binding.network if binding is not None else None
        bind = str(network.bind_address) if network is not None and network.bind_address else None
        ingress = str(network.ingress_address) if network is not None and network.ingress_address else None
        bind = bind or ingress or host.hostname()
        bindings.append(metadata_server.Binding(interface, bind, ingress or bind))
    return tuple(bindings)
