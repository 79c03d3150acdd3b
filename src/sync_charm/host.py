"""The charm's files on the machine: where they live, how they are written, who owns them, the config
files the sync reads, the keyring and CAs it trusts, the system user it runs as, and the Debian
packages it needs.

Every path hangs off `PATHS`, and every command and the sync's user name are module constants, so
tests point them at a temporary directory, fake programs and an existing user (see
tests/charm/conftest.py); nothing here reads Juju.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import jinja2
from pydantic import BaseModel

from simplestreams_sync.config import dump_yaml

PACKAGES = ["ca-certificates", "gpgv", "ubuntu-cloudimage-keyring", "cron", "sudo"]  # sudo: image-modifier
UPDATE_CA_CERTIFICATES = ["update-ca-certificates"]
# The sync runs as this system user (its own group of the same name); the charm creates it when missing.
SYNC_USER = "glance-simplestreams-sync"
ADD_SYSTEM_USER = [
    "useradd",
    "--system",
    "--user-group",
    "--no-create-home",
    "--shell",
    "/usr/sbin/nologin",
    "--comment",
    "glance-simplestreams-sync charm, image sync",
]
CLASSIC_FREQUENCIES = ("hourly", "daily", "weekly")
TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates"
TRUST_STORE_PREFIX = "glance-simplestreams-sync-"
# The model's proxy settings, as Juju gives them to the charm (the sync reads them from mirrors.yaml).
PROXY_VARIABLES = {
    "http": "JUJU_CHARM_HTTP_PROXY",
    "https": "JUJU_CHARM_HTTPS_PROXY",
    "no_proxy": "JUJU_CHARM_NO_PROXY",
}
CONFIG_HEADER = (
    "{name} for the simplestreams sync, written by the glance-simplestreams-sync charm ({unit}).\n"
    "Changes are overwritten: set the charm's options with `juju config` instead."
)


@dataclass(frozen=True)
class Paths:
    config_dir: Path
    cron_file: Path
    logrotate_file: Path
    state_dir: Path
    log_file: Path
    ca_dir: Path
    nrpe_dir: Path
    nrpe_plugin_dir: Path
    nginx_sites_available: Path
    nginx_sites_enabled: Path
    sudoers_file: Path
    metrics_unit: Path

    @classmethod
    def under(cls, root: str | Path) -> Paths:
        root = Path(root)
        return cls(
            config_dir=root / "etc/glance-simplestreams-sync",
            cron_file=root / "etc/cron.d/glance-simplestreams-sync",
            logrotate_file=root / "etc/logrotate.d/glance-simplestreams-sync",
            state_dir=root / "var/lib/glance-simplestreams-sync",
            log_file=root / "var/log/glance-simplestreams-sync.log",
            ca_dir=root / "usr/local/share/ca-certificates",
            nrpe_dir=root / "etc/nagios/nrpe.d",
            nrpe_plugin_dir=root / "usr/local/lib/nagios/plugins",
            nginx_sites_available=root / "etc/nginx/sites-available",
            nginx_sites_enabled=root / "etc/nginx/sites-enabled",
            sudoers_file=root / "etc/sudoers.d/glance-simplestreams-sync",
            metrics_unit=root / "etc/systemd/system/glance-simplestreams-sync-metrics.service",
        )

    @property
    def mirrors(self) -> Path:
        return self.config_dir / "mirrors.yaml"

    @property
    def identity(self) -> Path:
        return self.config_dir / "identity.yaml"

    @property
    def keyring(self) -> Path:
        return self.config_dir / "custom-keyring.gpg"

    @property
    def ca_bundle(self) -> Path:
        return self.config_dir / "ca-bundle.pem"

    @property
    def first_sync_marker(self) -> Path:
        return self.state_dir / "charm-first-sync.json"

    @property
    def nrpe_check_marker(self) -> Path:
        """When the check began expecting scheduled syncs (read by src/sync_charm/nrpe_check_sync.py)."""
        return self.state_dir / "charm-nrpe-check.json"

    @property
    def classic_cron_files(self) -> list[Path]:
        """Where the classic charm put its cron files: the scheduled sync, and the every-minute poll until
        its first sync."""
        etc = self.cron_file.parent.parent
        scheduled = [etc / f"cron.{frequency}" / "glance_simplestreams_sync" for frequency in CLASSIC_FREQUENCIES]
        return [*scheduled, etc / "cron.d" / "glance_simplestreams_sync_fastpoll"]

    @property
    def served_dir(self) -> Path:
        """The image metadata the unit serves itself (serve_metadata)."""
        return self.state_dir / "metadata"

    @property
    def served_certificate(self) -> Path:
        return self.config_dir / "metadata-server.pem"

    @property
    def served_key(self) -> Path:
        return self.config_dir / "metadata-server-key.pem"

    @property
    def nginx_site(self) -> Path:
        return self.nginx_sites_available / "glance-simplestreams-sync"

    @property
    def nginx_site_link(self) -> Path:
        return self.nginx_sites_enabled / "glance-simplestreams-sync"

    @property
    def nginx_earlier_site(self) -> Path:
        """Where earlier revisions of the charm put the site."""
        return self.nginx_sites_available.parent / "conf.d" / "glance-simplestreams-sync.conf"

    @property
    def nginx_default_site_link(self) -> Path:
        """Ubuntu's nginx package enables its own site on port 80 with this link."""
        return self.nginx_sites_enabled / "default"

    @property
    def nginx_installed_marker(self) -> Path:
        """Exists when the charm installed nginx (and so disabled its default site)."""
        return self.config_dir / "nginx-installed-by-charm"

    @property
    def nrpe_server_config(self) -> Path:
        """Exists when the nrpe subordinate installed nagios-nrpe-server."""
        return self.nrpe_dir.parent / "nrpe.cfg"


PATHS = Paths.under("/")


@dataclass(frozen=True)
class Account:
    """A user and its primary group, as the system knows them."""

    name: str
    uid: int
    group: str
    gid: int
    home: str


def sync_account() -> Account:
    """The system user the sync runs as, created with its own group (home: the state dir) when missing."""
    try:
        return _account(SYNC_USER)
    except KeyError:
        pass
    argv = [*ADD_SYSTEM_USER, "--home-dir", str(PATHS.state_dir), SYNC_USER]
    process = subprocess.run(argv, capture_output=True, text=True)
    if process.returncode != 0:
        raise RuntimeError(
            f"cannot create the system user {SYNC_USER} the sync runs as: {' '.join(argv)} exited "
            f"with {process.returncode}: {process.stderr.strip()}"
        )
    try:
        return _account(SYNC_USER)
    except KeyError:
        raise RuntimeError(
            f"{' '.join(argv)} succeeded but the system does not know the user {SYNC_USER}; check /etc/nsswitch.conf"
        ) from None


def _account(name: str) -> Account:
    entry = pwd.getpwnam(name)
    return Account(
        name=entry.pw_name,
        uid=entry.pw_uid,
        group=grp.getgrgid(entry.pw_gid).gr_name,
        gid=entry.pw_gid,
        home=entry.pw_dir,
    )


def install_packages() -> None:
    from charmlibs import apt  # only on the machine: importing it is harmless, running it is not

    apt.add_package(PACKAGES)


# --- files ----------------------------------------------------------------------------------------


def write_file(
    path: Path, content: str | bytes, mode: int = 0o600, owner: Account | None = None, group: int | None = None
) -> bool:
    """Write atomically with `mode` (created so, never world-readable in between), owned by the charm's
    user or `owner`, with its group or `group`; True if it changed."""
    data = content.encode() if isinstance(content, str) else content
    uid = owner.uid if owner is not None else -1
    gid = owner.gid if owner is not None else (group if group is not None else -1)
    try:
        status = path.stat()
        if (
            path.read_bytes() == data
            and (status.st_mode & 0o777) == mode
            and uid in (-1, status.st_uid)
            and gid in (-1, status.st_gid)
        ):
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as stream:
        if (uid, gid) != (-1, -1):
            os.fchown(stream.fileno(), uid, gid)
        os.fchmod(stream.fileno(), mode)
        stream.write(data)
    os.replace(tmp, path)
    return True


def remove_file(path: Path) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def render_template(name: str, **values: object) -> str:
    """A text file of templates/ (the cron entry, logrotate, the NRPE check)."""
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        keep_trailing_newline=True,
        autoescape=False,
        undefined=jinja2.StrictUndefined,
    )
    return environment.get_template(name).render(**values)


# Files the sync reads but must not change (credentials among them): root's, readable by its group only.
SYNC_READABLE_MODE = 0o640


def write_config_file(path: Path, model: BaseModel | None, unit_name: str, account: Account) -> bool:
    """Write one of the sync's config files from its model, or remove it (None)."""
    if model is None:
        return remove_file(path)
    text = dump_yaml(model, CONFIG_HEADER.format(name=path.name, unit=unit_name))
    return write_file(path, text, mode=SYNC_READABLE_MODE, group=account.gid)


def write_keyring(keyring: bytes | None, account: Account) -> str | None:
    """The custom keyring's path, or None (engine default) after removing a previous one."""
    if keyring is None:
        remove_file(PATHS.keyring)
        return None
    write_file(PATHS.keyring, keyring, mode=SYNC_READABLE_MODE, group=account.gid)
    return str(PATHS.keyring)


def write_ca_bundle(certificates: list[str], account: Account) -> str | None:
    """The CA bundle the sync verifies keystone/glance/swift with, or None (system trust store)."""
    if not certificates:
        remove_file(PATHS.ca_bundle)
        return None
    write_file(PATHS.ca_bundle, "".join(certificates), mode=SYNC_READABLE_MODE, group=account.gid)
    return str(PATHS.ca_bundle)


def prepare_sync_paths(account: Account) -> None:
    """The state dir belongs to the sync's user, traversable by all (NRPE's check reads last-sync.json as
    nagios); when it did not yet (a new unit, or a charm that ran the sync as root), what is in it (lock,
    results) becomes the user's too; from then on the sync creates its files as that user. The log the
    sync appends to through a descriptor root opens is root's with the sync's group, readable by it only."""
    state_dir = PATHS.state_dir
    state_dir.mkdir(parents=True, exist_ok=True)
    state_dir.chmod(0o755)
    status = state_dir.stat()
    if (status.st_uid, status.st_gid) != (account.uid, account.gid):
        for path in [*state_dir.iterdir(), state_dir]:
            os.chown(path, account.uid, account.gid, follow_symlinks=False)
    log_file = PATHS.log_file
    log_file.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, SYNC_READABLE_MODE))
    status = log_file.stat()
    if status.st_gid != account.gid:
        os.chown(log_file, -1, account.gid)
    if status.st_mode & 0o777 != SYNC_READABLE_MODE:
        log_file.chmod(SYNC_READABLE_MODE)


def install_trusted_cas(certificates: list[str], fresh: bool = False) -> bool:
    """Make the machine trust exactly these extra CAs (one file each); update the store if it changed.
    `fresh` rebuilds the store's links from scratch, so none is left pointing at a removed file."""
    wanted = {f"{TRUST_STORE_PREFIX}{index}.crt": cert for index, cert in enumerate(certificates)}
    changed = False
    for name, cert in wanted.items():
        changed |= write_file(PATHS.ca_dir / name, cert, mode=0o644)
    if PATHS.ca_dir.is_dir():
        for stale in PATHS.ca_dir.glob(f"{TRUST_STORE_PREFIX}*.crt"):
            if stale.name not in wanted:
                changed |= remove_file(stale)
    if changed:
        subprocess.run([*UPDATE_CA_CERTIFICATES, *["--fresh"] * fresh], check=True, capture_output=True, text=True)
    return changed


def remove_files() -> None:
    """Remove the config files, the trust store's CAs and the state dir (the unit is being removed)."""
    install_trusted_cas([], fresh=True)
    shutil.rmtree(PATHS.config_dir, ignore_errors=True)
    shutil.rmtree(PATHS.state_dir, ignore_errors=True)


def model_proxy() -> dict[str, str]:
    """The Juju model's proxy settings (`simplestreams_sync.config.ProxySettings` fields)."""
    return {key: os.environ[variable] for key, variable in PROXY_VARIABLES.items() if os.environ.get(variable)}


def hostname() -> str:
    return socket.gethostname()
