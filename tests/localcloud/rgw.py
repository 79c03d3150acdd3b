"""Ceph for LocalCloud: one monitor and one OSD (memstore) on 127.0.0.1, holding the RBD pools of a Glance on
Ceph (`images`, and `volumes` for Cinder-style clones) and/or radosgw serving the Swift API with Keystone auth,
configured and registered as the ceph-radosgw charm does with its `namespace-tenants` option true (each
project's containers in its own namespace, the account in the URL) or false (the charm's default: one
namespace for all projects' containers, no account in the URL). One cluster serves both when a cloud has
Glance on RBD and RGW as its object store (an "all-Ceph" cloud).

Debian's Ceph packages (ceph-mon, ceph-osd, radosgw, ceph-common, python3-rbd; scripts/bootstrap installs
them): no mgr, no cephx, no systemd, no containers. Every file (config, monitor and OSD data, admin sockets,
crash dumps) lives under the given directory; the daemons log to stderr, which LocalCloud sends to its logs.
Objects live in the OSD's memory: they are gone when the OSD stops (radosgw alone restarts with its data kept).

The monitor and the pools are driven with Debian's python3-rados from /usr/bin/python3 (a venv does not
have it) in a short child process, which is faster than one `ceph` command per step. Glance's RBD driver
needs Debian's `rados` and `rbd` C extensions: `python_modules_dir` makes a directory holding only those two,
for Glance's PYTHONPATH. The `rbd` command line does what Cinder and Nova would do to images (clones).
Known pitfalls are explained (PITFALL:) where they are handled.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# (name, ready path) in start order, as in cloud.SERVICES; None: not HTTP (see CephCluster.ready_checks).
CEPH_SERVICES = (("ceph-mon", None), ("ceph-osd", None))
RGW_SERVICES = (("rgw", "/"),)
PACKAGES = ("ceph-mon", "ceph-osd", "radosgw", "ceph-common", "python3-rbd")
SYSTEM_PYTHON = "/usr/bin/python3"  # has Debian's `rados` and `rbd` modules
SYSTEM_PYTHON_MODULES = ("rados", "rbd")  # the C extensions Glance's RBD driver imports
# The pools of a Glance on Ceph: its images, and where Cinder would make volumes (clones of images).
IMAGES_POOL = "images"
VOLUMES_POOL = "volumes"
RBD_POOLS = (IMAGES_POOL, VOLUMES_POOL)
MON_ID = "a"
OSD_ID = 0
RGW_NAME = "client.rgw"
# PITFALL: pools radosgw would create on first use cost ~2 s on the first PUTs; made beforehand instead.
RGW_POOLS = (".rgw.root", "default.rgw.control", "default.rgw.meta", "default.rgw.log",
             "default.rgw.buckets.index", "default.rgw.buckets.data", "default.rgw.buckets.non-ec")  # fmt: skip
PG_NUM = 8
OSD_PORTS = 16  # the block of ports the OSD's messengers bind in (it takes 4)
ADMIN_TIMEOUT = 10  # seconds for one monitor command or connection

# argv: CONF TIMEOUT ACTION ARGS... ; exits 0 when done, non-zero with the reason on stderr.
_ADMIN_SCRIPT = """
import json, sys, time
import rados
conf, timeout, action, args = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4:]
cluster = rados.Rados(conffile=conf)
for option in ("client_mount_timeout", "rados_mon_op_timeout"):
    cluster.conf_set(option, str(int(timeout)))
cluster.connect(timeout=int(timeout))

def command(**cmd):
    ret, out, err = cluster.mon_command(json.dumps(cmd), b"")
    if ret != 0:
        sys.exit(f"ceph {cmd['prefix']}: {err or 'error'} ({ret})")
    return out

if action == "osd-new":
    command(prefix="osd new", uuid=args[0], id=int(args[1]))
elif action == "pools":  # PG_NUM APPLICATION POOL...
    for pool in args[2:]:
        command(prefix="osd pool create", pool=pool, pg_num=int(args[0]), pgp_num=int(args[0]))
        command(prefix="osd pool application enable", pool=pool, app=args[1])
elif action == "osd-up":
    deadline = time.monotonic() + timeout
    while json.loads(command(prefix="osd stat", format="json"))["num_up_osds"] < 1:
        if time.monotonic() > deadline:
            sys.exit("no OSD up yet")
        time.sleep(0.05)
elif action != "connect":
    sys.exit(f"unknown action {action}")
cluster.shutdown()
"""


def missing_programs(rgw: bool = True, rbd: bool = False) -> list[str]:
    """The Ceph programs (and Python modules) this needs that are not installed."""
    programs = ("ceph-mon", "ceph-osd", "monmaptool", *(("radosgw",) if rgw else ()), *(("rbd",) if rbd else ()))
    missing = [name for name in programs if not shutil.which(name)]
    for module in ("rados", "rbd") if rbd else ("rados",):
        if (
            not Path(SYSTEM_PYTHON).exists()
            or subprocess.run([SYSTEM_PYTHON, "-c", f"import {module}"], capture_output=True, timeout=60).returncode
        ):
            missing.append(f"{SYSTEM_PYTHON}'s {module} module")
    return missing


def python_modules_dir(directory: Path) -> Path:
    """`directory`, holding links to the system Python's `rados` and `rbd` extension modules and nothing else:
    what Glance's RBD driver imports, without the rest of Debian's dist-packages on Glance's path."""
    found = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import rados, rbd; print(rados.__file__); print(rbd.__file__)"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.split()  # fmt: skip
    directory.mkdir(parents=True, exist_ok=True)
    for module in found:
        link = directory / Path(module).name
        link.unlink(missing_ok=True)
        link.symlink_to(module)
    return directory


@dataclass
class KeystoneForRgw:
    """How radosgw checks tokens: Keystone's URL (no /v3) and a service user allowed to validate them."""

    url: str
    user: str
    password: str
    project: str
    domain: str
    accepted_roles: str = "admin,member,Member"


@dataclass
class CephCluster:
    directory: Path  # everything Ceph writes goes here
    mon_port: int
    rgw_port: int | None = None  # None: no radosgw
    keystone: KeystoneForRgw | None = None  # with radosgw
    namespace_tenants: bool = True
    rbd: bool = False  # the RBD pools of a Glance on Ceph
    osd_bytes: int = 1 << 30  # what the in-memory OSD holds; writes wait forever once it is full
    fsid: str = field(default_factory=lambda: str(uuid.uuid4()))
    osd_uuid: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def conf(self) -> Path:
        return self.directory / "ceph.conf"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.rgw_port}"

    def swift_url_template(self) -> str:
        """The object-store endpoint, as the ceph-radosgw charm registers it."""
        return f"{self.url}/swift/v1/AUTH_$(project_id)s" if self.namespace_tenants else f"{self.url}/swift/v1"

    # ------------------------------------------------------------------ config

    def write_config(self) -> None:
        """A fresh cluster each time: new directories (the OSD's data was in memory anyway) and ceph.conf."""
        shutil.rmtree(self.directory, ignore_errors=True)
        for sub in ("mon", f"osd/ceph-{OSD_ID}", "run", "crash", "rgw"):  # mkfs makes the monitor's
            (self.directory / sub).mkdir(parents=True)
        lines = []
        for section, options in self._config().items():
            lines.append(f"[{section}]")
            lines.extend(f"{key} = {value}" for key, value in options.items())
            lines.append("")
        self.conf.write_text("\n".join(lines))

    def _config(self) -> dict[str, dict[str, str]]:
        d = self.directory
        port_min = _free_port_block(OSD_PORTS)
        config = {
            "global": {
                "fsid": self.fsid,
                "mon host": f"v2:127.0.0.1:{self.mon_port}",
                # PITFALL: without `cluster addr` the OSD binds 0.0.0.0.
                "public addr": "127.0.0.1",
                "cluster addr": "127.0.0.1",
                "ms bind msgr1": "false",
                "ms bind port min": str(port_min),
                "ms bind port max": str(port_min + OSD_PORTS - 1),
                "auth cluster required": "none",
                "auth service required": "none",
                "auth client required": "none",
                "keyring": "/dev/null",
                # PITFALL: radosgw asks the monitor for `secure` mode by default, which auth none cannot give:
                # it loops on "get_initial_auth_request returned -13".
                "ms mon client mode": "crc secure",
                "osd pool default size": "1",
                "osd pool default min size": "1",
                "osd pool default pg num": str(PG_NUM),
                "osd pool default pgp num": str(PG_NUM),
                "osd pool default pg autoscale mode": "off",
                "osd crush chooseleaf type": "0",
                "mon allow pool size one": "true",
                "mon max pg per osd": "1000",
                "mon warn on pool no redundancy": "false",
                "mon warn on insecure global id reclaim allowed": "false",
                # PITFALL: by default the monitor shuts itself down when the disk has under 5 % free.
                "mon data avail warn": "1",
                "mon data avail crit": "0",
                "paxos propose interval": "0.05",  # every map change waits for it (default 1 s)
                "mon data": f"{d}/mon/$cluster-$id",
                "osd data": f"{d}/osd/$cluster-$id",
                "run dir": f"{d}/run",
                "admin socket": f"{d}/run/$cluster-$name.$pid.asok",
                "crash dir": f"{d}/crash",
                "log to file": "false",
                "log to stderr": "true",
                "err to stderr": "true",
                "mon cluster log to file": "false",
            },
            "osd": {"osd objectstore": "memstore", "memstore device bytes": str(self.osd_bytes)},
        }
        if self.rgw_port is not None:
            config[RGW_NAME] = self._rgw_config()
        return config

    def _rgw_config(self) -> dict[str, str]:
        if self.keystone is None:
            raise ValueError("radosgw needs `keystone`")
        ks = self.keystone
        return {
            "rgw frontends": f"beast endpoint=127.0.0.1:{self.rgw_port}",
            "rgw data": f"{self.directory}/rgw",
            "rgw thread pool size": "32",
            "rgw swift account in url": str(self.namespace_tenants).lower(),
            "rgw keystone implicit tenants": str(self.namespace_tenants).lower(),
            "rgw keystone url": ks.url,
            "rgw keystone api version": "3",
            "rgw keystone admin user": ks.user,
            "rgw keystone admin password": ks.password,
            "rgw keystone admin project": ks.project,
            "rgw keystone admin domain": ks.domain,
            "rgw keystone accepted roles": ks.accepted_roles,
            "rgw keystone verify ssl": "false",
            "rgw s3 auth use keystone": "false",
        }

    # ---------------------------------------------------------------- commands

    def argv(self) -> dict[str, list[str]]:
        """Each daemon's command line, in the foreground."""
        conf = str(self.conf)
        argv = {
            "ceph-mon": [_program("ceph-mon"), "-c", conf, "-i", MON_ID, "-f"],
            "ceph-osd": [_program("ceph-osd"), "-c", conf, "-i", str(OSD_ID), "-f"],
        }
        if self.rgw_port is not None:
            argv["rgw"] = [_program("radosgw"), "-c", conf, "-n", RGW_NAME, "-f"]
        return argv

    def monitor_setup_commands(self) -> list[list[str]]:
        """Run before the monitor starts: its map and data directory."""
        monmap = str(self.directory / "monmap")
        return [
            [_program("monmaptool"), "--create", "--fsid", self.fsid,
             "--addv", MON_ID, f"[v2:127.0.0.1:{self.mon_port}]", monmap],
            [_program("ceph-mon"), "-c", str(self.conf), "--mkfs", "-i", MON_ID, "--monmap", monmap],
        ]  # fmt: skip

    def osd_setup_commands(self) -> list[list[str]]:
        """Run once the monitor answers: the OSD in the osdmap, its (memory) store, and the pools."""
        commands = [
            self.admin_command("osd-new", self.osd_uuid, str(OSD_ID)),
            [_program("ceph-osd"), "-c", str(self.conf), "-i", str(OSD_ID), "--mkfs", "--osd-uuid", self.osd_uuid],
        ]
        if self.rgw_port is not None:
            commands.append(self.admin_command("pools", str(PG_NUM), "rgw", *RGW_POOLS))
        if self.rbd:
            commands.append(self.admin_command("pools", str(PG_NUM), "rbd", *RBD_POOLS))
        return commands

    def rbd_command(self, *args: str) -> list[str]:
        """The `rbd` command line on this cluster, with these arguments (e.g. "children", "images/ID@snap")."""
        return [_program("rbd"), "-c", str(self.conf), *args]

    def admin_command(self, action: str, *args: str) -> list[str]:
        return [SYSTEM_PYTHON, "-c", _ADMIN_SCRIPT, str(self.conf), str(ADMIN_TIMEOUT), action, *args]

    def ready_checks(self, env: dict) -> dict[str, Callable[[], bool]]:
        """For the daemons that are not HTTP servers: a check that is True once the daemon serves."""
        return {"ceph-mon": lambda: self._admin_succeeds(env, "connect"),
                "ceph-osd": lambda: self._admin_succeeds(env, "osd-up")}  # fmt: skip

    def _admin_succeeds(self, env: dict, action: str) -> bool:
        try:
            return (
                subprocess.run(
                    self.admin_command(action),
                    env=env,
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    timeout=ADMIN_TIMEOUT * 2,
                ).returncode
                == 0
            )
        except subprocess.TimeoutExpired:
            return False


def _program(name: str) -> str:
    """The absolute path of a Ceph program (LocalCloud runs bare names from the venv's bin)."""
    return shutil.which(name) or f"/usr/bin/{name}"


def _free_port_block(count: int) -> int:
    """The first of `count` consecutive ports free now, below the kernel's ephemeral range (so the ports
    LocalCloud's other servers got from the kernel are never in it). The OSD skips any taken meanwhile."""
    low, _ = (int(n) for n in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    for _ in range(100):
        first = random.randrange(10000, low - count)
        sockets = []
        try:
            for port in range(first, first + count):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError(f"no block of {count} free ports between 10000 and {low}")
