"""The quick check: a sync finds out in a few requests that nothing changed since the last clean run.

A full run reads and verifies every source document, lists Glance, compares the metadata in Swift,
and needs keystoneauth, glanceclient and simplestreams loaded first. When a run ends clean (nothing
failed, nothing left for a later run to finish), it records what it observed in `unchanged.json`
(state dir, mode 0600; no secret: neither a token nor the password):
- the bytes of its inputs (mirrors.yaml, identity.yaml, keyrings, CA file) and of this package's code;
- the sha256 of every source document it read (index and products files);
- what Glance listed of our images at the end of the run (every field of each);
- the ETags of the metadata objects it published to Swift, and its container; or, when the unit serves
  the metadata itself, the sha256 of the files it wrote and of what the web server serves;
- the identity and object-store endpoints in Keystone's catalog (the metadata names keystone's public
  URL, and the product-streams URLs are the object store's);
- the endpoints and how to reach them (CA, proxy), and who it authenticated as (user, project).
The next run first checks every one of those observations again, all at once: one login to Keystone
(the password read from identity.yaml, as the sync reads it; no proxy, the same CAs as the sync), whose
answer carries the token and the catalog; meanwhile the source documents, the metadata objects and the
container's listing are read anonymously, as Juju reads them. The container's read ACL is checked by what
it grants: anonymous reads of its objects and of its listing succeed when it still grants what
object_store.grants_public_read asks (on Ceph RGW, which lets anyone list a container anyone may read,
an ACL that lost `.rlistings` waits for the next full run), so no authenticated request is spent on it.
With the token: the full run's listings of our images in Glance (api.py: hidden ones too). The login and
the listings are the ones the run sent as soon as it held the lock (early_login.py), when they are the
very requests the record asks for; the full run a quick check falls through to takes the same login. It
checks the same source bytes (signed by the same keyring: the signature result cannot differ), the same
images in Glance, the same objects in Swift, readable and listable by anyone. Only when all of them hold does it
stop there, since the full run would then read, plan and publish the very same things. Anything else (a
changed or unreachable source, a Glance change, Keystone refusing or unreachable, a new config, new code)
makes it fall through to the full run, which records afresh when it ends clean. It uses only the
standard library and PyYAML, so it runs before the heavy imports.

During a full run, the parts that read the source and write the metadata report what they saw to one
`Observations` object; run_record.py turns it into the `Record` when the run ends clean.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import TypeVar

from . import api, early_login, timeouts
from .raw_http import open_url
from .state import sha256_of_file, utc_now, write_atomically

T = TypeVar("T")

RECORD_FILE = "unchanged.json"
RECORD_VERSION = 4
TOKEN_FIELDS = ("token", "token_expires")  # what records of version 1 held, never written again
CATALOG_SERVICE_TYPES = ("identity", "object-store")  # what the metadata and product-streams URLs come from


@dataclass
class Observations:
    """What a full run saw of the source and of the object store, as it goes (thread-safe)."""

    source: dict[str, dict] = field(default_factory=dict)  # URL -> {"sha256", "proxy"}: documents read
    objects: dict[str, str] = field(default_factory=dict)  # object URL -> ETag, as last read or written
    container_url: str = ""
    local_files: dict[str, str] = field(default_factory=dict)  # path -> sha256: metadata the unit serves
    served_files: dict[str, str] = field(default_factory=dict)  # URL -> sha256: the same, as served
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def source_document(self, url: str, content: bytes, proxy: str | None) -> None:
        with self._lock:
            self.source[url] = {"sha256": hashlib.sha256(content).hexdigest(), "proxy": proxy}

    def metadata_object(self, url: str, etag: str) -> None:
        with self._lock:
            self.objects[url] = etag

    def local_file(self, path: str, sha256: str, url: str) -> None:
        with self._lock:
            self.local_files[path] = sha256
            self.served_files[url] = sha256

    def container(self, url: str) -> None:
        with self._lock:
            self.container_url = url


@dataclass
class Record:
    """What a clean run observed; see the module docstring."""

    code: str  # code_fingerprint() of the run that recorded it
    inputs: dict[str, str]  # path -> sha256 of its bytes
    source: list[dict]  # {"url", "sha256", "proxy"}: every source document read
    user_agent: str
    identity_file: str  # identity.yaml, where the password is read (its digest is one of the inputs)
    # {"token_url", "user", "user_domain", "project", "project_domain"}: how the run authenticated
    keystone: dict[str, str]
    verify: str | bool  # CA file/dir for the cloud's APIs, or True: the default store
    glance_endpoint: str  # where the run listed our images (api.image_list_urls: hidden ones too)
    glance_images: str  # glance_fingerprint() of them
    content_id: str
    project_id: str
    swift_objects: dict[str, str] = field(default_factory=dict)  # object URL -> ETag
    swift_container: str = ""  # URL of the metadata's container, which the run left readable by anyone
    swift_proxy: str | None = None
    local_files: dict[str, str] = field(default_factory=dict)  # path -> sha256 of the metadata the unit serves
    served_files: dict[str, str] = field(default_factory=dict)  # URL -> sha256 of the same files, as served
    metadata_url: str = ""
    product_streams_urls: dict[str, str] = field(default_factory=dict)
    # catalog_fingerprint() of Keystone's catalog: the metadata names keystone's public URL and
    # product-streams points at the object store's, both from there.
    catalog: str = ""
    image_count: int = 0
    # What the run said about images it left as they are (protected, deactivated, ...), and its result's
    # `kept` and `needs_decision`: a quick check says and records them again.
    said: list[str] = field(default_factory=list)
    kept: list[dict] = field(default_factory=list)
    needs_decision: list[dict] = field(default_factory=list)
    recorded: str = ""
    version: int = RECORD_VERSION


def code_fingerprint() -> str:
    """sha256 over this package's source files: an upgraded engine never trusts an old record."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def file_digest(path: str) -> str | None:
    try:
        return sha256_of_file(path)
    except OSError:
        return None


def input_digests(paths: list[str]) -> dict[str, str]:
    return {path: file_digest(path) or "" for path in sorted(set(paths))}


def glance_fingerprint(images: list[dict], content_id: str, project_id: str) -> str:
    """A digest of our images as Glance lists them, every field: a property set within the second
    of the last change leaves updated_at as it was. The same from glanceclient's dicts and raw JSON."""
    ours = sorted(
        (
            {key: value for key, value in image.items() if key not in api.UNLISTED_FIELDS}
            for image in images
            if api.is_ours(image, project_id, content_id)
        ),
        key=lambda image: image["id"],
    )
    return hashlib.sha256(json.dumps(ours, sort_keys=True).encode()).hexdigest()


def catalog_fingerprint(catalog: list) -> str:
    """A digest of the identity and object-store endpoints of a Keystone v3 catalog (its `catalog` list,
    from a token or GET /v3/auth/catalog), all regions and interfaces, in any order."""
    endpoints = sorted(
        [str(service.get("type")), *(str(endpoint.get(key) or "") for key in ("region_id", "interface", "url"))]
        for service in catalog
        if service.get("type") in CATALOG_SERVICE_TYPES
        for endpoint in service.get("endpoints", [])
    )
    return hashlib.sha256(json.dumps(endpoints).encode()).hexdigest()


def save(state_dir: str | Path, record: Record) -> None:
    """Write the record (0600: only the sync reads it), replacing the previous one in one step."""
    record.recorded = utc_now()
    write_atomically(Path(state_dir) / RECORD_FILE, json.dumps(asdict(record)), mode=0o600)


def forget(state_dir: str | Path) -> None:
    """Drop the record: the run that is about to change things makes it stale."""
    with contextlib.suppress(FileNotFoundError):
        (Path(state_dir) / RECORD_FILE).unlink()


def drop_token(state_dir: str | Path) -> bool:
    """Rewrite a record of an earlier version, which held its run's Keystone token, without the token
    (same owner); True when there was one."""
    path = Path(state_dir) / RECORD_FILE
    try:
        data = json.loads(path.read_text())
        owner = path.stat()
    except (OSError, ValueError):
        return False
    if not isinstance(data, dict) or not any(name in data for name in TOKEN_FIELDS):
        return False
    write_atomically(path, json.dumps({k: v for k, v in data.items() if k not in TOKEN_FIELDS}), mode=0o600)
    with contextlib.suppress(PermissionError):  # only root gives a file away; the sync's own stays its own
        os.chown(path, owner.st_uid, owner.st_gid)
    return True


def load(state_dir: str | Path) -> Record | None:
    drop_token(state_dir)
    try:
        data = json.loads((Path(state_dir) / RECORD_FILE).read_text())
        if data.get("version") != RECORD_VERSION:
            return None
        return Record(**data)
    except (OSError, ValueError, TypeError, AttributeError):  # missing, or not a record of this version
        return None


def still_current(state_dir: str | Path) -> Record | None:
    """The record when every observation in it still holds (nothing to do), else None."""
    record = load(state_dir)
    if record is None or record.code != code_fingerprint():
        return None
    if any(file_digest(path) != digest for path, digest in record.inputs.items()):
        return None
    if any(file_digest(path) != digest for path, digest in record.local_files.items()):
        return None
    anonymous = len(record.source) + len(record.swift_objects) + len(record.served_files)
    with ThreadPoolExecutor(max_workers=anonymous + 3) as pool:
        login = pool.submit(login_of, record)  # Glance's listings wait for its token
        # One listing after the other: Glance validates the new token with Keystone once, on the first.
        listings = pool.submit(_or_none, partial(listings_of, record, lambda: login.result()[0]))
        checks: list[Callable[[], bool]] = [partial(_source_unchanged, record, doc) for doc in record.source]
        checks += [partial(object_unchanged, record, url, etag) for url, etag in record.swift_objects.items()]
        checks += [partial(_served_unchanged, record, url, digest) for url, digest in record.served_files.items()]
        checks += [partial(_container_lists_anonymously, record), partial(_catalog_unchanged, record, login)]
        held = all(list(pool.map(_safely, checks)))
        images = listings.result()
    if not held or images is None:
        return None
    return record if glance_fingerprint(images, record.content_id, record.project_id) == record.glance_images else None


def login_of(record: Record) -> tuple[str, list]:
    """A token of the recorded user, scoped to the recorded project, with its catalog: the login
    early_login sent if it is this very request, else one POST to Keystone (no proxy, the sync's CAs)."""
    keystone = record.keystone
    body = api.password_login(
        keystone["user"],
        keystone["user_domain"],
        _password(record.identity_file),
        keystone["project"],
        keystone["project_domain"],
    )
    key = early_login.login_key(keystone["token_url"], body, record.verify)
    token, answer = early_login.login_answer(key) or early_login.login(key)
    if answer["token"]["project"]["id"] != record.project_id:
        raise ValueError("keystone gave a token for another project")
    return token, answer["token"]["catalog"]


def _password(identity_file: str) -> str:
    """The password in identity.yaml (the caller has checked its bytes are those of the recorded run)."""
    import yaml

    from .yaml_file import read_yaml

    try:
        password = read_yaml(identity_file)["password"]  # type: ignore[index]
    except yaml.YAMLError as error:
        raise ValueError(f"{identity_file}: {error}") from None
    if not isinstance(password, str):
        raise ValueError(f"{identity_file}: no password")
    return password


def _safely(check: Callable[[], bool]) -> bool:
    """A check that cannot be made (unreachable, refused, unreadable answer) does not hold."""
    return _or_none(check) is True


def _or_none(call: Callable[[], T]) -> T | None:
    try:
        return call()
    except (OSError, http.client.HTTPException, ValueError, KeyError, TypeError):
        return None


def _source_unchanged(record: Record, doc: dict) -> bool:
    headers = {"User-Agent": record.user_agent}
    with _open(doc["url"], headers, proxy=doc.get("proxy"), verify=True, timeout=timeouts.SOURCE_READ) as response:
        digest = hashlib.sha256()
        while chunk := response.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest() == doc["sha256"]


def listings_of(record: Record, token: Callable[[], str]) -> list[dict]:
    """Our images as the full run lists them: every listing of api.image_list_urls, all their pages."""
    urls = api.image_list_urls(record.glance_endpoint, record.project_id, record.content_id)
    return [image for url in urls for image in listing(record, url, token)]


def listing(record: Record, url: str | None, token: Callable[[], str]) -> list[dict]:
    """Every page of one of the full run's listings of our images (api.image_list_urls), as early_login
    listed them with this token, or read now."""
    listed_early = early_login.listing(url, token()) if url else None
    if listed_early is not None:
        return listed_early
    images: list[dict] = []
    while url:
        headers = {"X-Auth-Token": token(), "Accept": "application/json"}
        with _open(url, headers, verify=record.verify) as response:
            page = json.load(response)
        images.extend(page.get("images", []))
        url = record.glance_endpoint + page["next"] if page.get("next") else None
    return images


def _catalog_unchanged(record: Record, login: Future[tuple[str, list]]) -> bool:
    return catalog_fingerprint(login.result()[1]) == record.catalog


def object_unchanged(record: Record, url: str, etag: str) -> bool:
    """A metadata object as anonymous readers (Juju) get it, through the object store's proxy."""
    with _open(url, {}, method="HEAD", proxy=record.swift_proxy, verify=record.verify) as response:
        return response.headers.get("ETag", "").strip('"') == etag


def _served_unchanged(record: Record, url: str, digest: str) -> bool:
    """The unit's web server still serves that file, anonymously."""
    with _open(url, {}, verify=record.verify) as response:
        return hashlib.sha256(response.read()).hexdigest() == digest


def _container_lists_anonymously(record: Record) -> bool:
    """The container still lets anyone list it (its objects' anonymous reads are checked one by one)."""
    if not record.swift_container:
        return True
    with _open(record.swift_container, {}, method="HEAD", proxy=record.swift_proxy, verify=record.verify) as response:
        return 200 <= response.status < 300


def _open(url: str, headers: dict, timeout: float = timeouts.READ, **options):
    return open_url(url, headers, timeout=timeout, **options)
