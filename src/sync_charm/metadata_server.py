"""The unit's own web server for the image metadata (option serve_metadata), for clouds without an
object store: nginx from the Ubuntu archive, run by systemd, with one site the charm writes.

The site serves one directory (the sync's user writes it, the web server's group reads it, nobody
else) at /simplestreams/data, read-only, without listings, `.json` as application/json; over HTTPS
when vault gave a server certificate, else HTTP. Nothing here reads Juju.
"""

from __future__ import annotations

import grp
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass

from simplestreams_sync.metadata_layout import INDEX_PATH

from . import host

logger = logging.getLogger(__name__)

PACKAGE = "nginx"
SERVICE = "nginx"
SYSTEMCTL = ["systemctl"]
WEB_SERVER_GROUP = "www-data"  # nginx's workers run as www-data on Debian and Ubuntu
URL_PATH = "/simplestreams/data"  # as in Swift (container simplestreams, prefix data/): Juju reads the same paths
SERVED_DIR_MODE = 0o2750  # setgid: what the sync creates in it gets the web server's group


@dataclass(frozen=True)
class Binding:
    """Where one of the endpoint's interfaces (public, internal, admin) is served."""

    interface: str
    bind_address: str  # the unit's own address on the binding's network: nginx listens there
    ingress_address: str  # what others reach it at: the URL keystone registers

    @property
    def addresses(self) -> list[str]:
        """What the server certificate must name."""
        return list(dict.fromkeys((self.ingress_address, self.bind_address)))


@dataclass(frozen=True)
class ServerCertificate:
    certificate: str  # PEM: the server certificate, then vault's chain
    key: str  # PEM


def install() -> bool:
    """Install nginx when missing; True if this call installed it."""
    from charmlibs import apt  # only on the machine: importing it is harmless, running it is not

    try:
        apt.DebianPackage.from_installed_package(PACKAGE)
        return False
    except apt.PackageNotFoundError:
        apt.add_package([PACKAGE])
        return True


def url(address: str, port: int, tls: bool) -> str:
    """The served metadata's URL at an address, without the scheme's default port."""
    scheme, default_port = ("https", 443) if tls else ("http", 80)
    host_part = f"[{address}]" if ":" in address else address
    port_part = "" if port == default_port else f":{port}"
    return f"{scheme}://{host_part}{port_part}{URL_PATH}"


def listen_addresses(bindings: list[Binding], port: int) -> list[str]:
    """The `listen` addresses of the site: each binding's own address (once), at the port."""
    addresses = dict.fromkeys(binding.bind_address for binding in bindings)
    return [f"[{address}]:{port}" if ":" in address else f"{address}:{port}" for address in addresses]


def site_config(unit_name: str, listen: list[str], tls: bool) -> str:
    paths = host.PATHS
    files = {"certificate": str(paths.served_certificate), "key": str(paths.served_key)} if tls else None
    return host.render_template(
        "nginx-site.conf.j2",
        unit=unit_name,
        listen=listen,
        tls=files,
        url_path=URL_PATH,
        directory=str(paths.served_dir),
    )


def serve(
    unit_name: str, listen: list[str], certificate: ServerCertificate | None, account: host.Account
) -> str | None:
    """Install nginx, prepare the served directory, write the TLS files and the site, and have systemd
    run nginx with it (reloaded when something changed); why nginx does not run, or None."""
    paths = host.PATHS
    if install():
        host.write_file(paths.nginx_installed_marker, "", mode=0o644)
    if paths.nginx_installed_marker.exists() and paths.nginx_default_site_link.is_symlink():
        paths.nginx_default_site_link.unlink()  # the package's own site would answer on port 80
    prepare_served_dir(account)
    changed = False
    if certificate is not None:
        changed |= host.write_file(paths.served_certificate, certificate.certificate, mode=0o644)
        changed |= host.write_file(paths.served_key, certificate.key, mode=0o600)
    else:
        changed |= host.remove_file(paths.served_certificate) | host.remove_file(paths.served_key)
    changed |= host.write_file(paths.nginx_site, site_config(unit_name, listen, certificate is not None), mode=0o644)
    changed |= _enable_site() | host.remove_file(paths.nginx_earlier_site)
    try:
        _systemctl("enable", SERVICE)
        _systemctl("reload-or-restart" if changed else "start", SERVICE)
    except RuntimeError as error:
        logger.error("nginx does not serve the metadata: %s", error)
        return str(error)
    return None


def _enable_site() -> bool:
    link = host.PATHS.nginx_site_link
    if link.is_symlink() and os.readlink(link) == str(host.PATHS.nginx_site):
        return False
    link.parent.mkdir(parents=True, exist_ok=True)
    host.remove_file(link)
    link.symlink_to(host.PATHS.nginx_site)
    return True


def prepare_served_dir(account: host.Account) -> None:
    """The sync's user's, readable by the web server's group only."""
    directory = host.PATHS.served_dir
    directory.mkdir(parents=True, exist_ok=True)
    group = grp.getgrnam(WEB_SERVER_GROUP).gr_gid
    status = directory.stat()
    if (status.st_uid, status.st_gid) != (account.uid, group):
        os.chown(directory, account.uid, group)
    if status.st_mode & 0o7777 != SERVED_DIR_MODE:
        directory.chmod(SERVED_DIR_MODE)


def has_published() -> bool:
    """Whether the served directory has an index yet."""
    return (host.PATHS.served_dir / INDEX_PATH).is_file()


def is_serving() -> bool:
    """Whether the charm's site is in place (serve_metadata was on here)."""
    return host.PATHS.nginx_site.exists()


def stop_serving() -> None:
    """Remove the site, its TLS files and the served files; stop and disable nginx if the charm had
    set it up (the package stays, with its default site back if the charm had installed it)."""
    paths = host.PATHS
    host.remove_file(paths.nginx_site_link)
    had_site = host.remove_file(paths.nginx_site) | host.remove_file(paths.nginx_earlier_site)
    if host.remove_file(paths.nginx_installed_marker) and not paths.nginx_default_site_link.is_symlink():
        paths.nginx_default_site_link.symlink_to(paths.nginx_sites_available / "default")
    host.remove_file(paths.served_certificate)
    host.remove_file(paths.served_key)
    shutil.rmtree(paths.served_dir, ignore_errors=True)
    if had_site:
        try:
            _systemctl("disable", "--now", SERVICE)
        except RuntimeError as error:
            logger.warning("nginx may still run: %s", error)


def _systemctl(*args: str) -> None:
    argv = [*SYSTEMCTL, *args]
    process = subprocess.run(argv, capture_output=True, text=True)
    if process.returncode != 0:
        raise RuntimeError(f"systemctl {' '.join(args)} exited with {process.returncode}: {process.stderr.strip()}")
