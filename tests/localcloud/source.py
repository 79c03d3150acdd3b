"""A generated simplestreams image source, optionally GPG-signed, for tests and benchmarks.

    key = make_test_key(tmp / "gnupg")
    builder = SourceBuilder(tmp / "source", key)
    builder.add_image(release="focal", serial="20210720", size=1 << 20, seed=1)
    builder.add_image(release="focal", serial="20210720", ftype="root.tar.xz", seed=1)
    builder.write()          # streams/v1/index.{json,sjson} + products file(s)
    ...
    key.close()              # stops the gpg-agent of the throw-away home

The tree mirrors cloud-images.ubuntu.com/releases: metadata under streams/v1/, item bytes under
the item's `path` (server/releases/<release>/release-<serial>/...).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

PGP_SIGNED_MESSAGE_HEADER = "-----BEGIN PGP SIGNED MESSAGE-----"
PGP_SIGNATURE_HEADER = "-----BEGIN PGP SIGNATURE-----"

DEFAULT_CONTENT_ID = "com.ubuntu.cloud:released:download"
DEFAULT_PRODUCT_PREFIX = "com.ubuntu.cloud:server"
LICENSE = "http://www.canonical.com/intellectual-property-policy"

CHUNK_SIZE = 4 << 20
AGENT_EXIT_WAIT = 30.0  # seconds a gpg-agent gets to exit before it is killed
QCOW2_CLUSTER_SIZE = 64 << 10


# --- GPG ------------------------------------------------------------------------------------


@dataclass
class TestKey:
    """A throw-away signing key living in its own GnuPG home."""

    __test__ = False  # not a pytest test class

    home: Path
    fingerprint: str
    keyring: Path  # binary public keyring, usable with `gpgv --keyring=<file>`

    def clearsign(self, text: str) -> str:
        return _gpg(
            self.home,
            "--local-user",
            self.fingerprint,
            "--digest-algo",
            "SHA512",
            "--clearsign",
            stdin=text,
        )

    def close(self) -> None:
        """Stop the gpg-agent (and any other daemon) started for this home, and wait until they are gone
        (`gpgconf --kill` only asks them to exit); what still runs after a while is killed."""
        subprocess.run(
            ["gpgconf", "--homedir", str(self.home), "--kill", "all"],
            env=_gpg_env(self.home),
            capture_output=True,
            check=False,
        )
        deadline = time.monotonic() + AGENT_EXIT_WAIT
        while (pids := processes_mentioning(str(self.home))) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def __enter__(self) -> TestKey:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def processes_mentioning(text: str) -> list[int]:
    """PIDs of the processes whose command line contains `text`."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if proc.name.isdigit() and text in cmdline:
            pids.append(int(proc.name))
    return pids


def make_test_key(gnupg_home: Path, name: str = "Test Image Signer") -> TestKey:
    """Generate an unprotected ed25519 signing key in a private GnuPG home."""
    gnupg_home = Path(gnupg_home).resolve()
    gnupg_home.mkdir(parents=True, exist_ok=True)
    gnupg_home.chmod(0o700)
    user_id = f"{name} <image-signer@example.invalid>"
    _gpg(gnupg_home, "--quick-gen-key", user_id, "ed25519", "sign", "never")
    fingerprint = _first_fingerprint(_gpg(gnupg_home, "--with-colons", "--list-secret-keys"))
    keyring = gnupg_home / "exported-public-keyring.gpg"
    exported = subprocess.run(
        ["gpg", "--batch", "--export", fingerprint],
        env=_gpg_env(gnupg_home),
        capture_output=True,
        check=True,
    )
    keyring.write_bytes(exported.stdout)
    return TestKey(home=gnupg_home, fingerprint=fingerprint, keyring=keyring)


def _gpg_env(home: Path) -> dict[str, str]:
    return {**os.environ, "GNUPGHOME": str(home)}


def _gpg(home: Path, *args: str, stdin: str | None = None) -> str:
    cmd = ["gpg", "--batch", "--yes", "--pinentry-mode", "loopback", "--passphrase", "", *args]
    done = subprocess.run(
        cmd,
        env=_gpg_env(home),
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr}")
    return done.stdout


def _first_fingerprint(colon_listing: str) -> str:
    for line in colon_listing.splitlines():
        fields = line.split(":")
        if fields[0] == "fpr":
            return fields[9]
    raise RuntimeError(f"no fingerprint in gpg output:\n{colon_listing}")


# --- item bytes -----------------------------------------------------------------------------


class QemuImgMissing(RuntimeError):
    pass


def qemu_img_available() -> bool:
    return shutil.which("qemu-img") is not None


def make_qcow2(path: Path, size_bytes: int, seed: int | None, incompressible: bool = False) -> None:
    """Write a valid qcow2 (v3, no backing file, no data-file) whose content depends on seed.

    size_bytes is the virtual disk size, rounded up to a multiple of 64 KiB; every cluster
    holds data, so the file is that size plus a little metadata (~0.02%). seed=None means a
    random seed. The same seed and size give the same bytes (so the same sha256).
    incompressible=True fills the disk with pseudo-random bytes, otherwise with a short
    seed-specific pattern that compresses to almost nothing.
    """
    if not qemu_img_available():
        raise QemuImgMissing("qemu-img not found: install Debian's qemu-utils (apt-get install -y qemu-utils)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    virtual_size = -(-size_bytes // QCOW2_CLUSTER_SIZE) * QCOW2_CLUSTER_SIZE
    raw = path.with_name(path.name + ".raw.tmp")
    try:
        write_filler(raw, virtual_size, seed, incompressible)
        subprocess.run(
            ["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(path)],
            capture_output=True,
            check=True,
        )
    finally:
        raw.unlink(missing_ok=True)


def write_filler(path: Path, size: int, seed: int | None, incompressible: bool) -> None:
    """Stream `size` seed-dependent bytes to path in 4 MiB chunks (never all zero)."""
    if seed is None:
        seed = random.SystemRandom().getrandbits(64)
    rng = random.Random(seed)
    pattern = hashlib.sha256(f"filler seed {seed}".encode()).digest() * (CHUNK_SIZE // 32)
    with open(path, "wb") as out:
        remaining = size
        while remaining > 0:
            n = min(CHUNK_SIZE, remaining)
            out.write(rng.randbytes(n) if incompressible else pattern[:n])
            remaining -= n


# --- products ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Release:
    version: str
    codename: str
    title: str
    support_eol: str
    aliases: str


# Values as published on cloud-images.ubuntu.com/releases.
KNOWN_RELEASES = {
    "xenial": Release("16.04", "Xenial Xerus", "16.04 LTS", "2021-04-21", "16.04,x,xenial"),
    "bionic": Release("18.04", "Bionic Beaver", "18.04 LTS", "2023-05-31", "18.04,b,bionic"),
    "focal": Release("20.04", "Focal Fossa", "20.04 LTS", "2025-05-29", "20.04,f,focal"),
    "jammy": Release("22.04", "Jammy Jellyfish", "22.04 LTS", "2027-06-01", "22.04,j,jammy"),
    "noble": Release("24.04", "Noble Numbat", "24.04 LTS", "2029-05-31", "24.04,default,lts,n,noble"),
}

# How cloud-images names each ftype's file: ubuntu-<version>-server-cloudimg-<arch><suffix>
FTYPE_FILE_SUFFIX = {
    "disk1.img": ".img",
    "uefi1.img": "-uefi1.img",
    "disk-kvm.img": "-disk-kvm.img",
    "root.tar.xz": "-root.tar.xz",
    "lxd.tar.xz": "-lxd.tar.xz",
    "squashfs": ".squashfs",
    "manifest": ".manifest",
    "tar.gz": ".tar.gz",
}


def release_info(release: str, version: str) -> Release:
    known = KNOWN_RELEASES.get(release)
    if known and known.version == version:
        return known
    return Release(version, release.capitalize(), version, "2099-12-31", f"{version},{release}")


def item_file_name(version: str, arch: str, ftype: str) -> str:
    suffix = FTYPE_FILE_SUFFIX.get(ftype, f"-{ftype}")
    return f"ubuntu-{version}-server-cloudimg-{arch}{suffix}"


@dataclass(frozen=True)
class SourceItem:
    """One downloadable file of the source, as listed in the products file."""

    product_id: str
    serial: str
    ftype: str
    path: str  # relative to the source root and to the mirror URL
    sha256: str
    md5: str
    size: int

    @property
    def key(self) -> tuple[str, str, str]:
        return self.product_id, self.serial, self.ftype

    def as_metadata(self) -> dict:
        return {
            "ftype": self.ftype,
            "path": self.path,
            "sha256": self.sha256,
            "md5": self.md5,
            "size": self.size,
        }


@dataclass
class SourceBuilder:
    root: Path
    key: TestKey | None
    content_id: str = DEFAULT_CONTENT_ID
    product_prefix: str = DEFAULT_PRODUCT_PREFIX
    products: dict[str, dict] = field(default_factory=dict)
    items: list[SourceItem] = field(default_factory=list)

    def add_image(
        self,
        release: str = "focal",
        version: str = "20.04",
        arch: str = "amd64",
        serial: str = "20210720",
        ftype: str = "disk1.img",
        size: int = 1 << 20,
        seed: int | None = None,
        incompressible: bool = False,
    ) -> SourceItem:
        """Create the item's bytes under root and list it; `*.img` ftypes are qcow2 disks,
        anything else (root.tar.xz, lxd.tar.xz, manifest...) is `size` seeded filler bytes."""
        product_id = f"{self.product_prefix}:{version}:{arch}"
        path = f"server/releases/{release}/release-{serial}/{item_file_name(version, arch, ftype)}"
        file = self.root / path
        if ftype.endswith(".img"):
            make_qcow2(file, size, seed, incompressible)
        else:
            file.parent.mkdir(parents=True, exist_ok=True)
            write_filler(file, size, seed, incompressible)
        sha256, md5, real_size = file_digests(file)
        item = SourceItem(product_id, serial, ftype, path, sha256, md5, real_size)
        self._version_entry(product_id, release, version, arch, serial)["items"][ftype] = item.as_metadata()
        self.items = [i for i in self.items if i.key != item.key] + [item]
        return item

    def remove_version(self, product_id: str, serial: str) -> None:
        """Drop a version from the metadata (its files stay on disk); call write() after."""
        versions = self.products[product_id]["versions"]
        del versions[serial]
        if not versions:
            del self.products[product_id]
        self.items = [i for i in self.items if (i.product_id, i.serial) != (product_id, serial)]

    def write(self, updated: str | None = None) -> Path:
        """Write the metadata for everything added so far; returns the index to point a
        mirror at (streams/v1/index.sjson when signed, else index.json)."""
        updated = updated or time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime())
        streams = self.root / "streams" / "v1"
        streams.mkdir(parents=True, exist_ok=True)
        products_text = dump_json(self.products_document(updated))
        index_json = dump_json(self.index_document(updated, self.products_path(".json")))
        (streams / f"{self.content_id}.json").write_text(products_text)
        (streams / "index.json").write_text(index_json)
        if self.key is None:
            return streams / "index.json"
        index_sjson = dump_json(self.index_document(updated, self.products_path(".sjson")))
        (streams / f"{self.content_id}.sjson").write_text(self.key.clearsign(products_text))
        (streams / "index.sjson").write_text(self.key.clearsign(index_sjson))
        return streams / "index.sjson"

    def products_path(self, suffix: str) -> str:
        return f"streams/v1/{self.content_id}{suffix}"

    def products_document(self, updated: str) -> dict:
        return {
            "content_id": self.content_id,
            "datatype": "image-downloads",
            "format": "products:1.0",
            "license": LICENSE,
            "products": self.products,
            "updated": updated,
        }

    def index_document(self, updated: str, products_path: str) -> dict:
        entry = {
            "datatype": "image-downloads",
            "format": "products:1.0",
            "path": products_path,
            "products": sorted(self.products),
            "updated": updated,
        }
        return {"format": "index:1.0", "index": {self.content_id: entry}, "updated": updated}

    def _version_entry(self, product_id, release, version, arch, serial) -> dict:
        info = release_info(release, version)
        product = self.products.setdefault(
            product_id,
            {
                "aliases": info.aliases,
                "arch": arch,
                "os": "ubuntu",
                "release": release,
                "release_codename": info.codename,
                "release_title": info.title,
                "support_eol": info.support_eol,
                "supported": True,
                "version": version,
                "versions": {},
            },
        )
        return product["versions"].setdefault(
            serial,
            {
                "items": {},
                "label": "release",
                "pubname": f"ubuntu-{release}-{version}-{arch}-server-{serial}",
            },
        )


def dump_json(data: dict) -> str:
    # The layout simplestreams itself writes (util.dump_data).
    return json.dumps(data, indent=1, sort_keys=True, separators=(",", ": ")) + "\n"


def file_digests(path: Path) -> tuple[str, str, int]:
    sha256, md5, size = hashlib.sha256(), hashlib.md5(), 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_SIZE):
            sha256.update(chunk)
            md5.update(chunk)
            size += len(chunk)
    return sha256.hexdigest(), md5.hexdigest(), size


# --- tampering ------------------------------------------------------------------------------


def tamper_signed_file(path: Path) -> None:
    """Change one digit of the JSON payload of a clearsigned file, keeping the signature block.

    The JSON stays valid, so only the signature check can catch it.
    """
    path = Path(path)
    text = path.read_text()
    body_start = text.index("\n\n", text.index(PGP_SIGNED_MESSAGE_HEADER)) + 2
    body_end = text.index(PGP_SIGNATURE_HEADER)
    for i in range(body_start, body_end):
        if text[i].isdigit():
            replacement = "1" if text[i] != "1" else "2"
            path.write_text(text[:i] + replacement + text[i + 1 :])
            return
    raise ValueError(f"no digit to change in the payload of {path}")


def corrupt_item(root: Path, path: str) -> None:
    """Invert the last 16 bytes of an item file: same size, different sha256.

    The qcow2 header is left alone, so the file still looks like a qcow2 image.
    """
    file = Path(root) / path
    count = min(16, file.stat().st_size)
    with open(file, "r+b") as f:
        f.seek(-count, os.SEEK_END)
        tail = f.read(count)
        f.seek(-count, os.SEEK_END)
        f.write(bytes(b ^ 0xFF for b in tail))
