"""The quick check: a sync finds out in a few requests that nothing changed since the last clean run.

A full run reads and verifies every source document, lists Glance, compares the metadata in Swift,
and needs keystoneauth, glanceclient and simplestreams loaded first. When a run ends clean (nothing
failed, nothing left for a later run to finish), it records what it observed in `unchanged.json`
(state dir, mode 0600; no secret: neither a token nor the password):
- the bytes of its inputs (mirrors.yaml, identity.yaml, keyrings, CA file) and of this package's code;
- the sha256 of every source document it read (index and products files);
- what Glance listed of our images at the end of the run (every field of each);
- the ETags of the metadata objects it published to Swift, and the container's read ACL; or, when the
  unit serves the metadata itself, the sha256 of the files it wrote and of what the web server serves;
- the identity and object-store endpoints in Keystone's catalog (the metadata names keystone's public
  URL, and the product-streams URLs are the object store's);
- the endpoints and how to reach them (CA, proxy), and who it authenticated as (user, project).
The next run first checks every one of those observations again, all at once, with a token of its own:
one request to Keystone (the password read from identity.yaml, as the sync reads it; no proxy, the
same CAs as the sync), made while the source documents are fetched. It checks:
the same source bytes (signed by the same keyring: the signature result cannot differ), the same
images in Glance, the same objects in Swift readable by the same ACL. Only when all of them hold does
it stop there, since the full run would then read, plan and publish the very same things. Anything else (a changed or
unreachable source, a Glance change, Keystone refusing or unreachable, a new config, new code) makes it
fall through to the full run, which records afresh when it ends clean. It uses only the standard
library and PyYAML, so it runs before the heavy imports.

During a full run, the parts that read the source and write the metadata report what they saw to one
`Observations` object; the run turns it into the `Record` when it ends clean.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import threading
import urllib.parse
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

from .raw_http import open_url
from .state import sha256_of_file, utc_now, write_atomically

RECORD_FILE = "unchanged.json"
RECORD_VERSION = 2
TOKEN_FIELDS = ("token", "token_expires")  # what records of version 1 held, never written again
TIMEOUT = 10  # seconds per request; a slow answer just means the full run goes ahead
UNCOMPARED_FIELDS = ("self",)  # a link that glanceclient's image objects leave out
CATALOG_SERVICE_TYPES = ("identity", "object-store")  # what the metadata and product-streams URLs come from


@dataclass
class Observations:
    """What a full run saw of the source and of the object store, as it goes (thread-safe)."""

    source: dict[str, dict] = field(default_factory=dict)  # URL -> {"sha256", "proxy"}: documents read
    objects: dict[str, str] = field(default_factory=dict)  # object URL -> ETag, as last read or written
    container_url: str = ""
    read_acl: str = ""
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

    def container(self, url: str, read_acl: str) -> None:
        with self._lock:
            self.container_url, self.read_acl = url, read_acl


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
    glance_list_url: str  # first page of our images (filtered by owner and content_id)
    glance_images: str  # glance_fingerprint() of them
    content_id: str
    project_id: str
    swift_objects: dict[str, str] = field(default_factory=dict)  # object URL -> ETag
    swift_container: str = ""  # URL of the metadata's container ...
    swift_read_acl: str = ""  # ... and its X-Container-Read, as the run left it
    swift_proxy: str | None = None
    local_files: dict[str, str] = field(default_factory=dict)  # path -> sha256 of the metadata the unit serves
    served_files: dict[str, str] = field(default_factory=dict)  # URL -> sha256 of the same files, as served
    metadata_url: str = ""
    product_streams_urls: dict[str, str] = field(default_factory=dict)
    # Keystone's catalog (GET with the token) and catalog_fingerprint() of it: the metadata names
    # keystone's public URL and product-streams points at the object store's, both from there.
    catalog_url: str = ""
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
            {key: value for key, value in image.items() if key not in UNCOMPARED_FIELDS}
            for image in images
            if image.get("content_id") == content_id and image.get("owner") == project_id
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


def glance_list_url(endpoint: str, project_id: str, content_id: str) -> str:
    query = urllib.parse.urlencode({"owner": project_id, "content_id": content_id, "limit": 100})
    return f"{endpoint}/v2/images?{query}"


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
    workers = len(record.source) + len(record.served_files) + 4
    with ThreadPoolExecutor(max_workers=workers) as pool:
        token = pool.submit(_new_token, record)  # Glance's and Swift's checks wait for it
        checks: list[Callable[[], bool]] = [partial(_source_unchanged, record, doc) for doc in record.source]
        checks += [partial(_glance_unchanged, record, token), partial(_swift_all_unchanged, record, token)]
        checks.append(partial(_catalog_unchanged, record, token))
        checks += [partial(_served_unchanged, record, url, digest) for url, digest in record.served_files.items()]
        results = list(pool.map(_safely, checks))
    return record if all(results) else None


def _new_token(record: Record) -> str:
    """A token of the recorded user, scoped to the recorded project: one POST to Keystone's token URL
    (no proxy, the sync's CAs, no catalog: the record has the endpoints)."""
    keystone = record.keystone
    auth = {
        "identity": {
            "methods": ["password"],
            "password": {
                "user": {
                    "name": keystone["user"],
                    "domain": {"name": keystone["user_domain"]},
                    "password": _password(record.identity_file),
                }
            },
        },
        "scope": {"project": {"name": keystone["project"], "domain": {"name": keystone["project_domain"]}}},
    }
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    body = json.dumps({"auth": auth}).encode()
    with _open(
        f"{keystone['token_url']}?nocatalog", headers, method="POST", data=body, verify=record.verify
    ) as response:
        token = response.headers["X-Subject-Token"]
        scoped_to = json.load(response)["token"]["project"]["id"]
    if not token or scoped_to != record.project_id:
        raise ValueError("keystone gave a token for another project")
    return token


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
    try:
        return check()
    except (OSError, http.client.HTTPException, ValueError, KeyError, TypeError):
        return False


def _source_unchanged(record: Record, doc: dict) -> bool:
    with _open(doc["url"], {"User-Agent": record.user_agent}, proxy=doc.get("proxy"), verify=True) as response:
        digest = hashlib.sha256()
        while chunk := response.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest() == doc["sha256"]


def _glance_unchanged(record: Record, token: Future[str]) -> bool:
    images: list[dict] = []
    url: str | None = record.glance_list_url
    base = record.glance_list_url.split("/v2/", 1)[0]
    while url:
        headers = {"X-Auth-Token": token.result(), "Accept": "application/json"}
        with _open(url, headers, verify=record.verify) as response:
            page = json.load(response)
        images.extend(page.get("images", []))
        url = base + page["next"] if page.get("next") else None
    return glance_fingerprint(images, record.content_id, record.project_id) == record.glance_images


def _catalog_unchanged(record: Record, token: Future[str]) -> bool:
    headers = {"X-Auth-Token": token.result(), "Accept": "application/json"}
    with _open(record.catalog_url, headers, verify=record.verify) as response:
        catalog = json.load(response)["catalog"]
    return catalog_fingerprint(catalog) == record.catalog


def _swift_all_unchanged(record: Record, token: Future[str]) -> bool:
    """The container's ACL, then each object: one after the other, so that Swift validates the new token
    once (the first request) rather than once per concurrent request."""
    if record.swift_container and not _swift_acl_unchanged(record, token):
        return False
    return all(_swift_unchanged(record, token, url, etag) for url, etag in record.swift_objects.items())


def _swift_unchanged(record: Record, token: Future[str], url: str, etag: str) -> bool:
    with _open(
        url, {"X-Auth-Token": token.result()}, method="HEAD", proxy=record.swift_proxy, verify=record.verify
    ) as response:
        return response.headers.get("ETag", "").strip('"') == etag


def _served_unchanged(record: Record, url: str, digest: str) -> bool:
    """The unit's web server still serves that file, anonymously."""
    with _open(url, {}, verify=record.verify) as response:
        return hashlib.sha256(response.read()).hexdigest() == digest


def _swift_acl_unchanged(record: Record, token: Future[str]) -> bool:
    with _open(
        record.swift_container,
        {"X-Auth-Token": token.result()},
        method="HEAD",
        proxy=record.swift_proxy,
        verify=record.verify,
    ) as response:
        return response.headers.get("X-Container-Read", "") == record.swift_read_acl


def _open(url: str, headers: dict, **options):
    return open_url(url, headers, timeout=TIMEOUT, **options)
