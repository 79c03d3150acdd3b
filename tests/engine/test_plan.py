"""The run's decisions, one row per rule: what it uploads, adopts, publishes, deletes, keeps, hides and
leaves to an operator, given what it observed. No cloud: `make_plan` does no I/O."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from simplestreams_sync.plan import Facts, GlanceImage, make_plan
from simplestreams_sync.source import SourceImage

SCID = "com.ubuntu.cloud:released:download"
FOCAL = "com.ubuntu.cloud:server:20.04:amd64"
JAMMY = "com.ubuntu.cloud:server:22.04:amd64"
DAILY = "com.ubuntu.cloud:daily:download"
SHA = "a" * 64


def wanted(version, product=FOCAL, scid=SCID, item="disk1.img"):
    return SourceImage(scid, product, version, item, "http://x", 1, SHA, None, {})


def ours(image_id, version, product=FOCAL, scid=SCID, item="disk1.img", **listed):
    return GlanceImage.from_glance(
        {
            "id": image_id,
            "name": f"auto-sync/{product}-{version}",
            "status": "active",
            "verified_source_hash": f"sha256:{SHA}",
            "source_content_id": scid,
            "product_name": product,
            "version_name": version,
            "item_name": item,
            "simplestreams_metadata": json.dumps({"sha256": SHA}),
            **listed,
        }
    )


def stamp(moment):
    """As Glance lists updated_at."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def unmarked(image_id, version, **listed):
    return replace(ours(image_id, version, **listed), verified="")


def ids(images):
    return [image.id for image in images]


def kept(plan):
    return {entry.image.id: entry.reason for entry in plan.keep}


def deleted(plan):
    return {entry.image.id: entry.reason for entry in plan.delete_after_publish}


def summary(plan):
    """Everything a plan says, as plain data: one comparison checks a whole row."""
    return {
        "delete_now": {entry.image.id: entry.reason for entry in plan.delete_now},
        "adopt": ids(plan.adopt),
        "upload": [(image.product_name, image.version_name) for image in plan.upload],
        "publish": ids(plan.publish),
        "delete": deleted(plan),
        "keep": kept(plan),
        "hide": ids(plan.hide),
        "unhide": ids(plan.unhide),
        "decide": {entry.image.id: entry.reason for entry in plan.needs_decision},
        "settled": plan.settled,
        "ask_servers": plan.ask_servers,
    }


EMPTY = {
    "delete_now": {},
    "adopt": [],
    "upload": [],
    "publish": [],
    "delete": {},
    "keep": {},
    "hide": [],
    "unhide": [],
    "decide": {},
    "settled": True,
    "ask_servers": False,
}
UNPROTECT = "unprotect it (openstack image set --unprotected {}) and the next sync deletes it"
NONE_USED = frozenset()
# Glance listed the images at NOW; an upload in flight updates its image at least every 15 minutes.
NOW = datetime(2026, 1, 31, 12, 0, 0, tzinfo=timezone.utc)
SECOND = timedelta(seconds=1)
LISTED = {"now": NOW, "in_flight_quiet": timedelta(minutes=15)}
AGO_15 = NOW - timedelta(minutes=15)
AGO_16 = NOW - timedelta(minutes=16)
IN_FLIGHT = ": possibly an upload in flight (another unit's sync), so not deleted until not updated for 15 min"
WITHIN = "an upload in flight is updated at least every 15 min)"
STALE_16 = " (not updated for 16 min; " + WITHIN
STORED_AS_MARKED = {"os_hash_algo": "sha512", "os_hash_value": "b" * 128, "verified_stored_hash": "sha512:" + "b" * 128}
STORED_OTHERWISE = {**STORED_AS_MARKED, "os_hash_value": "c" * 128}
MARK_CONTRADICTED = (
    f"Glance's digest of its bytes (sha512:{'c' * 128}) is not the one verified on upload (sha512:{'b' * 128})"
)
# Marked when created: Glance's md5 `checksum` of what it stored must be the source's md5.
CHECKSUM_AS_MARKED = {**STORED_AS_MARKED, "checksum": "d" * 32, "verified_stored_hash": "md5:" + "d" * 32}
CHECKSUM_OTHERWISE = {**CHECKSUM_AS_MARKED, "checksum": "e" * 32, "os_hash_value": "d" * 128}
CHECKSUM_CONTRADICTED = (
    f"Glance's digest of its bytes (md5:{'e' * 32}) is not the one verified on upload (md5:{'d' * 32})"
)

ROWS = {
    # -- uploads and adoption ------------------------------------------------------------------------
    "an empty Glance gets every selected image": (
        Facts(desired=(wanted("2"), wanted("1", JAMMY)), owned=()),
        {"upload": [(FOCAL, "2"), (JAMMY, "1")]},
    ),
    "a verified image is published, not uploaded again": (
        Facts(desired=(wanted("2"),), owned=(ours("v2", "2"),)),
        {"publish": ["v2"]},
    ),
    "an unmarked active image is adopted before anything is uploaded for its item": (
        Facts(desired=(wanted("2"),), owned=(unmarked("u2", "2"),)),
        {"adopt": ["u2"]},
    ),
    "an adopted image is published": (
        Facts(desired=(wanted("2"),), owned=(unmarked("u2", "2"),), adopted=frozenset({"u2"})),
        {"publish": ["u2"]},
    ),
    "an image whose bytes do not match is replaced, then deleted after publishing": (
        Facts(desired=(wanted("2"),), owned=(unmarked("u2", "2"),), mismatched={"u2": "its bytes differ"}),
        {"upload": [(FOCAL, "2")], "delete": {"u2": "its bytes differ"}, "ask_servers": True},
    ),
    "a verified image whose upload mark names Glance's hash is published": (
        Facts(desired=(wanted("2"),), owned=(ours("v2", "2", **STORED_AS_MARKED),)),
        {"publish": ["v2"]},
    ),
    "a verified image whose upload mark contradicts Glance's hash is replaced, then deleted": (
        Facts(desired=(wanted("2"),), owned=(ours("w2", "2", **STORED_OTHERWISE),)),
        {"upload": [(FOCAL, "2")], "delete": {"w2": MARK_CONTRADICTED}, "ask_servers": True},
    ),
    "a verified image whose md5 mark is Glance's checksum is published": (
        Facts(desired=(wanted("2"),), owned=(ours("v2", "2", **CHECKSUM_AS_MARKED),)),
        {"publish": ["v2"]},
    ),
    "a verified image whose md5 mark contradicts Glance's checksum is replaced, then deleted": (
        Facts(desired=(wanted("2"),), owned=(ours("w2", "2", **CHECKSUM_OTHERWISE),)),
        {"upload": [(FOCAL, "2")], "delete": {"w2": CHECKSUM_CONTRADICTED}, "ask_servers": True},
    ),
    "an image that could not be hashed is neither published nor deleted; its item is uploaded": (
        Facts(desired=(wanted("2"),), owned=(unmarked("u2", "2"),), not_verified=frozenset({"u2"})),
        {"upload": [(FOCAL, "2")]},
    ),
    "an unmarked image without a source checksum is left alone and unsettles the run": (
        Facts(desired=(), owned=(unmarked("x", "2", simplestreams_metadata="{}"),)),
        {"settled": False},
    ),
    # -- what an interrupted run left ----------------------------------------------------------------
    "an image left queued, not updated for longer than an upload in flight can be, is deleted before uploading": (
        Facts(desired=(wanted("2"),), owned=(ours("q", "2", status="queued", updated_at=stamp(AGO_16)),), **LISTED),
        {"delete_now": {"q": "left queued by an interrupted sync" + STALE_16}, "upload": [(FOCAL, "2")]},
    ),
    "an image saving, updated within the time an upload in flight can be quiet, is kept and its item uploaded": (
        Facts(
            desired=(wanted("2"),),
            owned=(ours("s", "2", status="saving", updated_at=stamp(AGO_15 + 60 * SECOND)),),
            **LISTED,
        ),
        {"keep": {"s": "saving, updated 14 min ago" + IN_FLIGHT}, "upload": [(FOCAL, "2")], "settled": False},
    ),
    "an image saving, updated exactly as long ago as an upload in flight can be quiet, is kept": (
        Facts(desired=(), owned=(ours("s", "2", status="saving", updated_at=stamp(AGO_15)),), **LISTED),
        {"keep": {"s": "saving, updated 15 min ago" + IN_FLIGHT}, "settled": False},
    ),
    "an image saving, one second past the time an upload in flight can be quiet, is deleted": (
        Facts(desired=(), owned=(ours("s", "2", status="saving", updated_at=stamp(AGO_15 - SECOND)),), **LISTED),
        {"delete_now": {"s": "left saving by an interrupted sync (not updated for 15 min; " + WITHIN}},
    ),
    "an image importing, updated seconds ago, is kept": (
        Facts(desired=(), owned=(ours("i", "2", status="importing", updated_at=stamp(NOW - 30 * SECOND)),), **LISTED),
        {"keep": {"i": "importing, updated 30 s ago" + IN_FLIGHT}, "settled": False},
    ),
    "a killed image is deleted however recently it was updated: no upload goes on into it": (
        Facts(desired=(), owned=(ours("k", "2", status="killed", updated_at=stamp(NOW)),), **LISTED),
        {"delete_now": {"k": "left killed by an interrupted sync"}},
    ),
    "an unfinished image Glance lists without updated_at is kept: it may be in flight": (
        Facts(desired=(), owned=(ours("q", "2", status="queued"),), **LISTED),
        {"keep": {"q": "queued, not known when it was updated" + IN_FLIGHT}, "settled": False},
    ),
    "a protected image left saving is kept with a warning and left to an operator": (
        Facts(desired=(), owned=(ours("s", "2", status="saving", protected=True, updated_at=stamp(AGO_16)),), **LISTED),
        {
            "keep": {
                "s": "left saving by an interrupted sync" + STALE_16 + ", but protected: " + UNPROTECT.format("s")
            },
            "decide": {
                "s": "left saving by an interrupted sync" + STALE_16 + ", but protected: " + UNPROTECT.format("s")
            },
        },
    ),
    "a protected image saving, updated recently, is kept as in flight, not left to an operator": (
        Facts(desired=(), owned=(ours("s", "2", status="saving", protected=True, updated_at=stamp(AGO_15)),), **LISTED),
        {"keep": {"s": "saving, updated 15 min ago" + IN_FLIGHT}, "settled": False},
    ),
    # -- images an operator touched ------------------------------------------------------------------
    "a deactivated image is never published nor deleted, and needs a decision": (
        Facts(desired=(wanted("2"),), owned=(ours("d", "2", status="deactivated"),)),
        {
            "upload": [(FOCAL, "2")],
            "decide": {
                "d": "deactivated: never published nor deleted by the sync; reactivate it "
                "(openstack image reactivate d) or delete it"
            },
        },
    ),
    "a protected image whose bytes do not match is kept, unpublished, and needs a decision": (
        Facts(
            desired=(wanted("2"),),
            owned=(unmarked("p", "2", protected=True), ours("v", "2")),
            mismatched={"p": "its bytes differ"},
        ),
        {
            "publish": ["v"],
            "keep": {"p": "its bytes differ; protected, so not deleted and not published: " + UNPROTECT.format("p")},
            "decide": {"p": "protected, but its bytes do not match the source: " + UNPROTECT.format("p")},
        },
    ),
    "a mismatching image a server uses is kept, hidden and unpublished until no server uses it": (
        Facts(
            desired=(wanted("2"),),
            owned=(unmarked("m", "2"), ours("v", "2")),
            mismatched={"m": "its bytes differ"},
            servers_use=frozenset({"m"}),
        ),
        {
            "publish": ["v"],
            "keep": {
                "m": "its bytes differ; in use by a server, so not deleted and not published until no server "
                "uses it; hidden"
            },
            "hide": ["m"],
            "settled": False,
        },
    ),
    "a mismatching image nothing uses is deleted after publishing": (
        Facts(
            desired=(wanted("2"),),
            owned=(unmarked("m", "2"), ours("v", "2")),
            mismatched={"m": "its bytes differ"},
            servers_use=NONE_USED,
        ),
        {"publish": ["v"], "delete": {"m": "its bytes differ"}},
    ),
    # -- retention -----------------------------------------------------------------------------------
    "a superseded image: Nova is asked before deciding": (
        Facts(desired=(wanted("2"),), owned=(ours("old", "1"), ours("new", "2"))),
        {"publish": ["new"], "delete": {"old": "superseded by a newer version"}, "ask_servers": True},
    ),
    "a superseded image nothing uses is deleted once the metadata without it is published": (
        Facts(desired=(wanted("2"),), owned=(ours("old", "1"), ours("new", "2")), servers_use=NONE_USED),
        {"publish": ["new"], "delete": {"old": "superseded by a newer version"}},
    ),
    "a superseded image stays published until its replacement is verified": (
        Facts(desired=(wanted("2"),), owned=(ours("old", "1"),), servers_use=NONE_USED),
        {
            "upload": [(FOCAL, "2")],
            "publish": ["old"],
            "keep": {"old": "superseded, kept until its replacement is active and verified"},
            "settled": False,
        },
    ),
    "a protected superseded image is kept and still published": (
        Facts(desired=(wanted("2"),), owned=(ours("old", "1", protected=True), ours("new", "2"))),
        {"publish": ["old", "new"], "keep": {"old": "superseded but protected"}},
    ),
    "a superseded image a server uses is kept, hidden and unpublished": (
        Facts(desired=(wanted("2"),), owned=(ours("old", "1"), ours("new", "2")), servers_use=frozenset({"old"})),
        {
            "publish": ["new"],
            "keep": {"old": "superseded but in use by a server; hidden"},
            "hide": ["old"],
            "settled": False,
        },
    ),
    "an image already hidden is not hidden again": (
        Facts(
            desired=(wanted("2"),),
            owned=(ours("old", "1", os_hidden=True, hidden_by_sync="true"), ours("new", "2")),
            servers_use=frozenset({"old"}),
        ),
        {"publish": ["new"], "keep": {"old": "superseded but in use by a server; hidden"}, "settled": False},
    ),
    "max 2 keeps both selected versions and deletes the third": (
        Facts(
            desired=(wanted("3"), wanted("2")),
            owned=(ours("a", "1"), ours("b", "2"), ours("c", "3")),
            servers_use=NONE_USED,
        ),
        {"publish": ["b", "c"], "delete": {"a": "superseded by a newer version"}},
    ),
    "a product no longer selected is listed, published, never deleted": (
        Facts(desired=(wanted("2"),), owned=(ours("new", "2"), ours("bionic", "1", product="b"))),
        {
            "publish": ["new", "bionic"],
            "keep": {"bionic": "its product is no longer selected by any mirror's filters; not deleted"},
        },
    ),
    "the images of a mirror that could not be read are kept, unsettled": (
        Facts(desired=(), owned=(ours("a", "1"),), all_sources_read=False),
        {"publish": ["a"], "keep": {"a": "not offered by the mirrors read in this run"}, "settled": False},
    ),
    "a version newer than the source's is kept": (
        Facts(desired=(wanted("2"),), owned=(ours("new", "2"), ours("newer", "3"))),
        {"publish": ["new", "newer"], "keep": {"newer": "newer than anything the source offers; not deleted"}},
    ),
    "several mirrors: each product's retention is its own": (
        Facts(
            desired=(wanted("2"), wanted("7", scid=DAILY)),
            owned=(ours("r1", "1"), ours("r2", "2"), ours("d6", "6", scid=DAILY), ours("d7", "7", scid=DAILY)),
            servers_use=NONE_USED,
        ),
        {
            "publish": ["r2", "d7"],
            "delete": {"r1": "superseded by a newer version", "d6": "superseded by a newer version"},
        },
    ),
    "a version is superseded only once every selected item of it is present": (
        Facts(
            desired=(wanted("2"), wanted("2", item="root.tar.xz")),
            owned=(ours("old", "1"), ours("new", "2")),
            servers_use=NONE_USED,
        ),
        {
            "upload": [(FOCAL, "2")],
            "publish": ["old", "new"],
            "keep": {"old": "superseded, kept until its replacement is active and verified"},
            "settled": False,
        },
    ),
    "Nova could not be asked: nothing a server may use is deleted": (
        Facts(desired=(wanted("2"),), owned=(ours("old", "1"), ours("new", "2")), servers_unknown=True),
        {"publish": ["old", "new"]},
    ),
    # -- Ceph-backed Glance: clones in the image store -----------------------------------------------
    "a superseded image the store refused to delete is kept, hidden, unpublished, unsettled": (
        Facts(
            desired=(wanted("2"),),
            owned=(ours("old", "1"), ours("new", "2")),
            servers_use=NONE_USED,
            store_uses=frozenset({"old"}),
        ),
        {
            "publish": ["new"],
            "keep": {"old": "superseded; in use in the image store by volumes or disks cloned from it; hidden"},
            "hide": ["old"],
            "settled": False,
        },
    ),
    "a mismatching image the store refused to delete is kept and hidden with its reason": (
        Facts(
            desired=(wanted("2"),),
            owned=(unmarked("m", "2"), ours("v", "2")),
            mismatched={"m": "its bytes differ"},
            servers_use=NONE_USED,
            store_uses=frozenset({"m"}),
        ),
        {
            "publish": ["v"],
            "keep": {
                "m": "its bytes differ; in use in the image store by volumes or disks cloned from it, so not "
                "deleted and not published until they are gone; hidden"
            },
            "hide": ["m"],
            "settled": False,
        },
    ),
    "a hidden image of ours that is selected again is shown again": (
        Facts(desired=(wanted("1"),), owned=(ours("old", "1", os_hidden=True, hidden_by_sync="true"),)),
        {"publish": ["old"], "unhide": ["old"]},
    ),
    "an image an operator hid is published but left hidden": (
        Facts(desired=(wanted("1"),), owned=(ours("old", "1", os_hidden=True),)),
        {"publish": ["old"]},
    ),
    # -- when publishing failed ----------------------------------------------------------------------
    "nothing the old metadata names is deleted when publishing failed": (
        Facts(
            desired=(wanted("2"),),
            owned=(ours("old", "1"), ours("new", "2")),
            servers_use=NONE_USED,
            metadata_published=False,
        ),
        {
            "publish": ["new"],
            "keep": {"old": "superseded, kept until metadata without it is published"},
            "settled": False,
        },
    ),
}


@pytest.mark.parametrize("facts, expected", ROWS.values(), ids=ROWS.keys())
def test_plan(facts, expected):
    assert summary(make_plan(facts)) == {**EMPTY, **expected}


def test_a_glance_listing_becomes_a_typed_record():
    listed = {
        "id": "i",
        "name": "n",
        "status": "active",
        "protected": False,
        "os_hidden": True,
        "hidden_by_sync": "true",
        "verified_source_hash": "sha256:ab",
        "source_content_id": SCID,
        "product_name": FOCAL,
        "version_name": "2",
        "item_name": "disk1.img",
        "simplestreams_metadata": json.dumps({"md5": "CD", "sha256": "AB"}),
    }
    image = GlanceImage.from_glance(listed)
    assert (image.protected, image.hidden, image.hidden_by_sync, image.verified) == (False, True, True, "sha256:ab")
    assert image.key == (SCID, FOCAL, "2", "disk1.img") and image.source_digest == "sha256:ab"
    assert dict(image.properties) == listed
