"""What a sync run does, decided from what it has observed: no I/O here.

The engine observes (the selected source images, our images as Glance lists them, which images Nova's
servers use, what its own effects answered), and `make_plan` turns those `Facts` into a `Plan`: what to
delete now, adopt (verify), upload, publish, delete once the metadata no longer names it, keep and why,
hide, and name as needing an operator's decision. An effect that changes the picture (an adoption whose
hash does not match, a delete the image store refuses, a publish that failed) goes back into the facts,
and the engine plans again: every decision is made here, in one place.

Retention: per product of a mirror, the versions the source selection keeps (newest `max` passing the
filters) stay; older versions of ours are superseded and deleted, but only once every selected item of
that product is active and verified in Glance, and never when the image is protected or in use (by a
server, or by volumes and disks the image store cloned from it). Images of a product no mirror selects
are listed, never deleted. Superseded images kept only as in use are hidden and left out of the metadata.

Unfinished images (queued, saving, ...) may be another unit's upload in flight (the sync lock is per
machine; a deposed leader's sync can still be uploading). Glance updates an image in flight at least
every `Facts.in_flight_quiet` (in_flight.py refreshes a property while the bytes flow), so only an
unfinished image not updated for longer is deleted as left by an interrupted sync.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any, NamedTuple

from .source import SourceImage
from .timestamps import duration, parse_time

# On an active image: its bytes were checked against the source's digest (upload.py, glance_effects.adopt).
VERIFIED_PROPERTY = "verified_source_hash"
# Set with it by an upload: "algo:hex" of the bytes Glance must store, as its md5 `checksum` or in its
# os_hash_algo. A mark that Glance's digest contradicts is on bytes that do not match: a mismatch.
VERIFIED_STORED_PROPERTY = "verified_stored_hash"
# Set with os_hidden by the sync, so that it only ever shows again the images it hid itself.
HIDDEN_PROPERTY = "hidden_by_sync"
# Left by an upload of ours that is in flight or was interrupted (see the module docstring); no upload goes
# on into a killed image: it is deleted however recently it was updated.
UNFINISHED_STATUSES = frozenset({"queued", "saving", "killed", "uploading", "importing"})
NEVER_IN_FLIGHT = frozenset({"killed"})

SUPERSEDED = "superseded by a newer version"
WAITING_FOR_REPLACEMENT = "superseded, kept until its replacement is active and verified"
SUPERSEDED_PROTECTED = "superseded but protected"
SUPERSEDED_USED_BY_SERVER = "superseded but in use by a server"
SUPERSEDED_USED_IN_STORE = "superseded; in use in the image store by volumes or disks cloned from it"
NEWER_THAN_SOURCE = "newer than anything the source offers; not deleted"
NO_LONGER_SELECTED = "its product is no longer selected by any mirror's filters; not deleted"
MIRROR_UNREAD = "not offered by the mirrors read in this run"
HIDDEN = "hidden"
UNPUBLISHED_SUPERSEDED = "superseded, kept until metadata without it is published"
UNPUBLISHED_MISMATCH = "its bytes do not match the source, kept until metadata without it is published"
USED_BY_SERVER = "in use by a server, so not deleted and not published until no server uses it"
USED_IN_STORE = (
    "in use in the image store by volumes or disks cloned from it, so not deleted and not published until they are gone"
)
DEACTIVATED = (
    "deactivated: never published nor deleted by the sync; reactivate it (openstack image reactivate {id}) or delete it"
)


def _unprotect(image_id: str) -> str:
    return f"unprotect it (openstack image set --unprotected {image_id}) and the next sync deletes it"


def _is_true(value: object) -> bool:
    return str(value).lower() == "true"


@dataclass(frozen=True)
class GlanceImage:
    """One of our images as Glance listed it."""

    id: str
    name: str
    status: str
    protected: bool
    hidden: bool
    hidden_by_sync: bool
    verified: str  # the source digest it was verified against, or ""
    source_content_id: str
    product_name: str
    version_name: str
    item_name: str
    source_digest: str | None  # "algo:hex" from the source item it was made from, if it names one
    mark_mismatch: str  # how Glance's digest contradicts the one verified on upload, or ""
    properties: Mapping[str, Any] = field(compare=False, repr=False)  # everything Glance listed
    updated_at: datetime | None = field(default=None, compare=False)  # Glance's clock; None: not listed

    @classmethod
    def from_glance(cls, listed: Mapping[str, Any]) -> GlanceImage:
        return cls(
            id=listed["id"],
            name=listed.get("name") or "",
            status=listed.get("status") or "",
            protected=_is_true(listed.get("protected")),
            hidden=_is_true(listed.get("os_hidden")),
            hidden_by_sync=_is_true(listed.get(HIDDEN_PROPERTY)),
            verified=listed.get(VERIFIED_PROPERTY) or "",
            source_content_id=listed.get("source_content_id") or "",
            product_name=listed.get("product_name") or "",
            version_name=listed.get("version_name") or "",
            item_name=listed.get("item_name") or "",
            source_digest=_source_digest(listed.get("simplestreams_metadata")),
            mark_mismatch=_mark_mismatch(listed),
            properties=MappingProxyType(dict(listed)),
            updated_at=_timestamp(listed.get("updated_at")),
        )

    @property
    def key(self) -> tuple[str, str, str, str]:
        """The source item it was made from."""
        return (self.source_content_id, self.product_name, self.version_name, self.item_name)

    @property
    def product(self) -> tuple[str, str]:
        return (self.source_content_id, self.product_name)


def _timestamp(value: object) -> datetime | None:
    try:
        return parse_time(str(value))  # Glance lists updated_at in the sync's own format
    except ValueError:
        return None


def _source_digest(metadata: object) -> str | None:
    try:
        item = json.loads(str(metadata or "{}"))
    except ValueError:
        return None
    if not isinstance(item, dict):
        return None
    for algo in ("sha256", "md5"):
        if item.get(algo):
            return f"{algo}:{str(item[algo]).lower()}"
    return None


def _mark_mismatch(listed: Mapping[str, Any]) -> str:
    marked = str(listed.get(VERIFIED_STORED_PROPERTY) or "")
    hashed = f"{listed.get('os_hash_algo')}:{listed.get('os_hash_value')}"
    stored = f"md5:{listed.get('checksum')}" if marked.startswith("md5:") else hashed  # md5: Glance's `checksum`
    if not marked or marked == stored:
        return ""
    return f"Glance's digest of its bytes ({stored}) is not the one verified on upload ({marked})"


@dataclass(frozen=True)
class Facts:
    """What a run has observed so far; the engine adds to it as its effects answer."""

    desired: tuple[SourceImage, ...]  # the source images the mirrors select
    owned: tuple[GlanceImage, ...]  # our images in Glance, with those this run created
    all_sources_read: bool = True
    servers_use: frozenset[str] | None = None  # ids of images Nova's servers use; None: not asked
    servers_unknown: bool = False  # Nova could not be asked: nothing that a server may use is deleted
    adopted: frozenset[str] = frozenset()  # unmarked images whose bytes this run found to match
    mismatched: Mapping[str, str] = field(default_factory=dict)  # id -> how its bytes differ from the source
    not_verified: frozenset[str] = frozenset()  # unmarked images this run could not hash
    store_uses: frozenset[str] = frozenset()  # ids whose delete the image store refused: clones use them
    metadata_published: bool = True  # False once publishing failed: nothing may be deleted then
    now: datetime | None = None  # when Glance was listed; None: unfinished images count as in flight
    in_flight_quiet: timedelta = timedelta(0)  # the longest an upload in flight leaves its image unchanged


class Kept(NamedTuple):
    """An image that is not wanted, yet not deleted. `settled`: it stays kept for the same reason for as
    long as Glance and the sources stay as they are, which the quick check observes (Nova's servers and
    the image store's clones it does not)."""

    image: GlanceImage
    reason: str
    settled: bool
    warning: bool = False


class Deletion(NamedTuple):
    """An image to delete, why (as the deletion is reported), and why it is kept if the metadata that
    still names it could not be replaced."""

    image: GlanceImage
    reason: str
    waiting: str = ""


class Decision(NamedTuple):
    """An image the sync leaves to an operator. `announce`: say so in its own warning line (otherwise
    the kept line already says it)."""

    image: GlanceImage
    reason: str
    announce: bool = False


@dataclass
class Plan:
    delete_now: list[Deletion] = field(default_factory=list)  # left unfinished by an interrupted run
    adopt: list[GlanceImage] = field(default_factory=list)  # active, unmarked: hash before trusting
    upload: list[SourceImage] = field(default_factory=list)
    publish: list[GlanceImage] = field(default_factory=list)
    delete_after_publish: list[Deletion] = field(default_factory=list)
    keep: list[Kept] = field(default_factory=list)
    hide: list[GlanceImage] = field(default_factory=list)
    unhide: list[GlanceImage] = field(default_factory=list)
    needs_decision: list[Decision] = field(default_factory=list)
    unverifiable: list[GlanceImage] = field(default_factory=list)  # no source checksum: left alone
    # Deleting depends on which images Nova's servers use: ask it, add the answer, plan again.
    ask_servers: bool = False

    @property
    def settled(self) -> bool:
        """Nothing is left that a later run may settle differently without Glance or the sources changing."""
        return all(kept.settled for kept in self.keep) and not self.unverifiable


def make_plan(facts: Facts) -> Plan:
    plan = Plan()
    verified: list[GlanceImage] = []
    mismatched: list[GlanceImage] = []
    for image in facts.owned:
        if image.status in UNFINISHED_STATUSES:
            _unfinished(plan, facts, image)
        elif image.status == "deactivated":
            plan.needs_decision.append(Decision(image, DEACTIVATED.format(id=image.id), announce=True))
        elif image.status != "active" or image.id in facts.not_verified:
            continue
        elif image.id in facts.mismatched or image.mark_mismatch:
            mismatched.append(image)
        elif image.verified or image.id in facts.adopted:
            verified.append(image)
        elif image.source_digest is None:
            plan.unverifiable.append(image)
        else:
            plan.adopt.append(image)
    present = {image.key for image in [*verified, *plan.adopt]}
    plan.upload = [image for image in facts.desired if image.key not in present]
    superseded = _plan_retention(plan, facts, verified)
    _plan_mismatched(plan, facts, mismatched)
    plan.publish = [image for image in verified if image.id not in superseded]
    plan.unhide = [image for image in plan.publish if image.hidden and image.hidden_by_sync]
    if not facts.metadata_published:
        _keep_waiting(plan)
    return plan


def _unfinished(plan: Plan, facts: Facts, image: GlanceImage) -> None:
    quiet = facts.now - image.updated_at if facts.now and image.updated_at else None
    if image.status not in NEVER_IN_FLIGHT and (quiet is None or quiet <= facts.in_flight_quiet):
        updated = f"updated {duration(quiet)} ago" if quiet is not None else "not known when it was updated"
        reason = (
            f"{image.status}, {updated}: possibly an upload in flight (another unit's sync), so not deleted "
            f"until not updated for {duration(facts.in_flight_quiet)}"
        )
        plan.keep.append(Kept(image, reason, settled=False))
        return
    left = f"left {image.status} by an interrupted sync"
    if quiet is not None and image.status not in NEVER_IN_FLIGHT:
        every = duration(facts.in_flight_quiet)
        left += f" (not updated for {duration(quiet)}; an upload in flight is updated at least every {every})"
    if not image.protected:
        plan.delete_now.append(Deletion(image, left))
        return
    reason = f"{left}, but protected: {_unprotect(image.id)}"
    plan.keep.append(Kept(image, reason, settled=True, warning=True))
    plan.needs_decision.append(Decision(image, reason))


def _plan_retention(plan: Plan, facts: Facts, verified: list[GlanceImage]) -> set[str]:
    """Add what happens to verified images the source no longer selects; return the ids of the
    superseded ones that leave the metadata (deleted, or kept hidden while in use). While Nova cannot
    be asked (servers_unknown) a superseded image is neither: it stays in the metadata."""
    selected_versions: dict[tuple, set[str]] = {}
    selected_items: dict[tuple, set[tuple]] = {}
    for wanted in facts.desired:
        group = (wanted.source_content_id, wanted.product_name)
        selected_versions.setdefault(group, set()).add(wanted.version_name)
        selected_items.setdefault(group, set()).add((wanted.version_name, wanted.item_name))
    present: dict[tuple, set[tuple]] = {}
    for image in verified:
        present.setdefault(image.product, set()).add((image.version_name, image.item_name))

    superseded: set[str] = set()
    for image in verified:
        versions = selected_versions.get(image.product)
        if versions is None:
            settled = facts.all_sources_read
            plan.keep.append(Kept(image, NO_LONGER_SELECTED if settled else MIRROR_UNREAD, settled))
        elif image.version_name in versions:
            continue
        elif image.version_name > max(versions):
            plan.keep.append(Kept(image, NEWER_THAN_SOURCE, settled=True))
        elif not selected_items[image.product] <= present.get(image.product, set()):
            plan.keep.append(Kept(image, WAITING_FOR_REPLACEMENT, settled=False))
        elif image.protected:
            plan.keep.append(Kept(image, SUPERSEDED_PROTECTED, settled=True))
        elif facts.servers_unknown:
            continue
        else:
            superseded.add(image.id)
            _delete_unless_used(plan, facts, Deletion(image, SUPERSEDED, UNPUBLISHED_SUPERSEDED))
    return superseded


def _plan_mismatched(plan: Plan, facts: Facts, images: Iterable[GlanceImage]) -> None:
    """Images of ours whose bytes do not match the source: never published; a protected one stays, with
    a warning, until an operator decides."""
    for image in images:
        mismatch = facts.mismatched.get(image.id) or image.mark_mismatch
        if facts.servers_unknown and not image.protected:
            continue
        if image.protected:
            reason = f"{mismatch}; protected, so not deleted and not published: {_unprotect(image.id)}"
            plan.keep.append(Kept(image, reason, settled=True, warning=True))
            decision = f"protected, but its bytes do not match the source: {_unprotect(image.id)}"
            plan.needs_decision.append(Decision(image, decision))
        else:
            _delete_unless_used(plan, facts, Deletion(image, mismatch, UNPUBLISHED_MISMATCH), warning=True)


def _delete_unless_used(plan: Plan, facts: Facts, deletion: Deletion, warning: bool = False) -> None:
    """Delete an image nothing uses; keep and hide one that servers or the image store's clones use."""
    image = deletion.image
    if facts.servers_use is None:
        plan.ask_servers = True
    if image.id in (facts.servers_use or ()):
        _keep_used(plan, deletion, SUPERSEDED_USED_BY_SERVER, USED_BY_SERVER, warning)
    elif image.id in facts.store_uses:
        _keep_used(plan, deletion, SUPERSEDED_USED_IN_STORE, USED_IN_STORE, warning)
    else:
        plan.delete_after_publish.append(deletion)


def _keep_used(plan: Plan, deletion: Deletion, superseded_reason: str, used: str, warning: bool) -> None:
    image = deletion.image
    reason = superseded_reason if deletion.reason == SUPERSEDED else f"{deletion.reason}; {used}"
    if not image.hidden:
        plan.hide.append(image)
    plan.keep.append(Kept(image, f"{reason}; {HIDDEN}", settled=False, warning=warning))


def _keep_waiting(plan: Plan) -> None:
    """The metadata could not be replaced: what it may still name stays, and says why."""
    for deletion in plan.delete_after_publish:
        plan.keep.append(Kept(deletion.image, deletion.waiting, settled=False))
    plan.delete_after_publish = []
