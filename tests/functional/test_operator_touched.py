"""Images of ours that an operator touched, against the real local cloud: protected, used by a server or
deactivated, they are never deleted and never published; the run says so once, and does not fail."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone

import glanceclient
import pytest

from simplestreams_sync.state import SyncResult
from sync_charm.sync_report import decisions_summary
from tests.functional.conftest import created_ids, our_images, published_image_ids, published_products
from tests.localcloud.source import make_qcow2

pytestmark = pytest.mark.functional

QUICK = "(quick check; --full-check redoes it all)"
# What the sync sets on an image it creates and later reads back to recognise and verify it.
SYNC_PROPERTIES = (
    "content_id",
    "source_content_id",
    "product_name",
    "version_name",
    "item_name",
    "os_distro",
    "os_version",
    "architecture",
    "simplestreams_metadata",
)
MARKS = ("verified_source_hash", "verified_stored_hash")  # set when the sync creates an image


def image_of_ours_with_other_bytes(
    source, sync, glance, cloud, tmp_path, seed: int, marked: bool = False
) -> tuple[list[dict], dict, str]:
    """Sync one image, then put in its place what an older tool (or a run that died before marking it
    verified) may leave: an image with our properties, not marked verified, whose bytes are not the source's
    (another valid qcow2: Glance checks the format); `marked`: with the synced image's marks, as an upload
    whose rollback failed leaves it. Returns the mirrors, that image, and how the sync says that the bytes
    of an unmarked one do not match."""
    source.add_image(seed=seed)
    source.write()
    mirrors = [sync.mirror(source.url)]
    first = sync.run(mirrors)
    assert first.returncode == 0, first.stderr
    (synced,) = our_images(glance, sync.content_id)
    as_sync_user = glanceclient.Client("2", session=cloud.sync_session())
    wrong = as_sync_user.images.create(
        name=synced["name"],
        disk_format="qcow2",
        container_format="bare",
        **{key: synced[key] for key in SYNC_PROPERTIES if key in synced},
        **({key: synced[key] for key in MARKS} if marked else {}),
    )
    other = tmp_path / "other.img"
    make_qcow2(other, 256 << 10, seed=seed + 1000)
    with open(other, "rb") as stream:
        as_sync_user.images.upload(wrong["id"], stream)
    glance.images.delete(synced["id"])
    expected = json.loads(synced["simplestreams_metadata"])["sha256"]
    mismatch = (
        f"its bytes (sha256:{hashlib.sha256(other.read_bytes()).hexdigest()}) do not match the source "
        f"(sha256:{expected})"
    )
    return mirrors, dict(glance.images.get(wrong["id"])), mismatch


def lines_naming(image: dict, output: str) -> list[str]:
    return [line for line in output.splitlines() if image["id"] in line]


def last_sync(sync) -> dict:
    return json.loads((sync.state_dir / "last-sync.json").read_text())


def published_ids(cloud, sync) -> set[str]:
    return published_image_ids(published_products(cloud, sync.content_id))


def test_protected_image_whose_bytes_do_not_match_stays_with_a_warning_and_is_never_published(
    source, sync, glance, cloud, tmp_path
):
    mirrors, wrong, mismatch = image_of_ours_with_other_bytes(source, sync, glance, cloud, tmp_path, seed=800)
    glance.images.update(wrong["id"], protected=True)
    try:
        first = sync.run(mirrors)
        recorded = last_sync(sync)
        again = sync.run(mirrors)
        repeated = last_sync(sync)
    finally:
        glance.images.update(wrong["id"], protected=False)
    unprotected = sync.run(mirrors)

    warning = (
        f"warning: kept {wrong['id']}: {wrong['name']} ({mismatch}; protected, so not deleted and "
        f"not published: unprotect it (openstack image set --unprotected {wrong['id']}) and the next sync "
        "deletes it)"
    )
    assert first.returncode == 0, first.stderr
    assert lines_naming(wrong, first.stdout) == [warning]
    (replacement,) = created_ids(first.stdout)
    assert published_ids(cloud, sync) == {replacement}
    assert recorded["ok"] and [entry["id"] for entry in recorded["kept"]] == [wrong["id"]]
    assert decisions_summary(SyncResult.from_dict(recorded)) == (
        f"1 image needs an operator's decision: {wrong['name']} ({wrong['id']}) "
        "protected, but its bytes do not match the source"
    )

    assert again.returncode == 0, again.stderr
    assert QUICK in again.stdout and lines_naming(wrong, again.stdout) == [warning]
    assert repeated["needs_decision"] == recorded["needs_decision"] and repeated["kept"] == recorded["kept"]

    assert unprotected.returncode == 0, unprotected.stderr
    assert f"deleted {wrong['id']}: {wrong['name']} ({mismatch})" in unprotected.stdout.splitlines()
    assert [image["id"] for image in our_images(glance, sync.content_id)] == [replacement]
    assert last_sync(sync)["needs_decision"] == []


def downloads_of(cloud, image_id: str) -> int:
    """How many times Glance served the image's bytes (its access log)."""
    return (cloud.logs / "glance.log").read_text(errors="replace").count(f'"GET /v2/images/{image_id}/file ')


def test_a_protected_image_whose_bytes_do_not_match_is_hashed_once(source, sync, glance, cloud, tmp_path):
    mirrors, wrong, mismatch = image_of_ours_with_other_bytes(source, sync, glance, cloud, tmp_path, seed=803)
    glance.images.update(wrong["id"], protected=True)
    before = downloads_of(cloud, wrong["id"])
    try:
        runs = [sync.run(mirrors, "--full-check") for _ in range(3)]
        hashed = downloads_of(cloud, wrong["id"]) - before
        glance.images.update(wrong["id"], min_ram=1)  # a change to the image: its updated_at moves
        changed = sync.run(mirrors, "--full-check")
    finally:
        glance.images.update(wrong["id"], protected=False)

    warning = (
        f"warning: kept {wrong['id']}: {wrong['name']} ({mismatch}; protected, so not deleted and "
        f"not published: unprotect it (openstack image set --unprotected {wrong['id']}) and the next sync "
        "deletes it)"
    )
    assert [run.returncode for run in runs] == [0, 0, 0], runs[-1].stderr
    assert [lines_naming(wrong, run.stdout) for run in runs] == [[warning]] * 3
    assert hashed == 1
    assert changed.returncode == 0 and lines_naming(wrong, changed.stdout) == [warning]
    assert downloads_of(cloud, wrong["id"]) - before == 2  # hashed again once it changed


def test_image_whose_bytes_do_not_match_is_not_deleted_while_a_server_uses_it(
    source, sync, glance, cloud, nova, tmp_path
):
    mirrors, wrong, mismatch = image_of_ours_with_other_bytes(source, sync, glance, cloud, tmp_path, seed=801)
    nova.servers = [{"id": "vm-1", "image": {"id": wrong["id"]}}]

    used = sync.run(mirrors)
    after_used = {image["id"] for image in our_images(glance, sync.content_id)}
    recorded_for_the_quick_check = (sync.state_dir / "unchanged.json").exists()
    listings_in_the_first_run = nova.listings
    nova.servers = []
    unused = sync.run(mirrors)

    assert used.returncode == 0, used.stderr
    assert lines_naming(wrong, used.stdout) == [
        f"warning: kept {wrong['id']}: {wrong['name']} ({mismatch}; in use by a server, so not deleted and "
        "not published until no server uses it; hidden)"
    ]
    (replacement,) = created_ids(used.stdout)
    assert (listings_in_the_first_run, nova.listings) == (1, 2)  # asked once per run, every run
    assert after_used == {wrong["id"], replacement}
    assert not recorded_for_the_quick_check

    assert unused.returncode == 0, unused.stderr
    assert QUICK not in unused.stdout, "a server's use is not observed by the quick check: Nova is asked again"
    assert f"deleted {wrong['id']}: {wrong['name']} ({mismatch})" in unused.stdout.splitlines()
    assert [image["id"] for image in our_images(glance, sync.content_id)] == [replacement]
    assert published_ids(cloud, sync) == {replacement}


def test_image_whose_bytes_do_not_match_is_deleted_after_the_metadata_without_it(source, sync, glance, cloud, tmp_path):
    mirrors, wrong, mismatch = image_of_ours_with_other_bytes(source, sync, glance, cloud, tmp_path, seed=802)

    result = sync.run(mirrors)

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    deleted = f"deleted {wrong['id']}: {wrong['name']} ({mismatch})"
    published = next(index for index, line in enumerate(lines) if line.startswith("published metadata for 1 images"))
    assert lines.index(deleted) > published
    (replacement,) = created_ids(result.stdout)
    assert published_ids(cloud, sync) == {replacement}


def test_an_image_whose_stored_bytes_contradict_the_mark_it_was_created_with_is_replaced(
    source, sync, glance, cloud, tmp_path
):
    """What an upload whose check found other bytes in Glance leaves when its rollback fails: an active
    image created marked with the digests its bytes must have, holding other bytes."""
    mirrors, wrong, _ = image_of_ours_with_other_bytes(source, sync, glance, cloud, tmp_path, seed=803, marked=True)

    result = sync.run(mirrors)

    assert result.returncode == 0, result.stderr
    stored = hashlib.md5((tmp_path / "other.img").read_bytes()).hexdigest()
    contradicted = (
        f"Glance's digest of its bytes (md5:{stored}) is not the one verified on upload "
        f"({wrong['verified_stored_hash']})"
    )
    assert f"deleted {wrong['id']}: {wrong['name']} ({contradicted})" in result.stdout.splitlines()
    (replacement,) = created_ids(result.stdout)
    assert published_ids(cloud, sync) == {replacement}
    assert [image["id"] for image in our_images(glance, sync.content_id)] == [replacement]


def test_deactivated_image_is_named_for_an_operators_decision_and_never_published(source, sync, glance, cloud):
    source.add_image(seed=803)
    source.write()
    mirrors = [sync.mirror(source.url)]
    assert sync.run(mirrors).returncode == 0
    (deactivated,) = our_images(glance, sync.content_id)
    glance.images.deactivate(deactivated["id"])

    dry = sync.run(mirrors, "--dry-run")
    first = sync.run(mirrors)
    recorded = last_sync(sync)
    again = sync.run(mirrors)

    warning = (
        f"warning: {deactivated['id']}: {deactivated['name']} needs an operator's decision (deactivated: "
        "never published nor deleted by the sync; reactivate it (openstack image reactivate "
        f"{deactivated['id']}) or delete it)"
    )
    assert lines_naming(deactivated, dry.stdout) == [warning]
    assert first.returncode == 0, first.stderr
    assert lines_naming(deactivated, first.stdout) == [warning]
    (replacement,) = created_ids(first.stdout)
    assert published_ids(cloud, sync) == {replacement}
    assert {image["id"]: image["status"] for image in our_images(glance, sync.content_id)} == {
        deactivated["id"]: "deactivated",
        replacement: "active",
    }
    assert [entry["id"] for entry in recorded["needs_decision"]] == [deactivated["id"]] and recorded["ok"]
    assert decisions_summary(SyncResult.from_dict(recorded)) == (
        f"1 image needs an operator's decision: {deactivated['name']} ({deactivated['id']}) deactivated"
    )

    assert again.returncode == 0, again.stderr
    assert QUICK in again.stdout and lines_naming(deactivated, again.stdout) == [warning]
    assert last_sync(sync)["needs_decision"] == recorded["needs_decision"]


def test_protected_image_left_unfinished_stays_with_a_warning(source, sync, glance, cloud):
    source.add_image(seed=804)
    source.write()
    as_sync_user = glanceclient.Client("2", session=cloud.sync_session())
    left = as_sync_user.images.create(
        name="auto-sync/left-queued", disk_format="qcow2", container_format="bare", content_id=sync.content_id
    )
    glance.images.update(left["id"], protected=True)
    cloud.set_image_updated_at(left["id"], datetime.now(timezone.utc) - timedelta(hours=3))  # no upload is in flight
    try:
        protected = sync.run([sync.mirror(source.url)])
    finally:
        glance.images.update(left["id"], protected=False)
    cloud.set_image_updated_at(left["id"], datetime.now(timezone.utc) - timedelta(hours=3))
    unprotected = sync.run([sync.mirror(source.url)])

    assert protected.returncode == 0, protected.stderr
    assert lines_naming(left, protected.stdout) == [
        f"warning: kept {left['id']}: auto-sync/left-queued (left queued by an interrupted sync (not updated for "
        f"3 h 0 min; an upload in flight is updated at least every 15 min), but protected: "
        f"unprotect it (openstack image set --unprotected {left['id']}) and the next sync deletes it)"
    ]
    assert unprotected.returncode == 0, unprotected.stderr
    assert f"deleted {left['id']}: auto-sync/left-queued (left queued by an interrupted sync (not updated for" in (
        unprotected.stdout
    )
    assert [image["status"] for image in our_images(glance, sync.content_id)] == ["active"]


def test_a_dry_run_names_the_unmarked_images_a_real_run_would_hash(source, sync, glance, cloud, tmp_path):
    mirrors, unmarked, _ = image_of_ours_with_other_bytes(source, sync, glance, cloud, tmp_path, seed=851)

    dry = sync.run(mirrors, "--dry-run")

    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines() == [
        f"would adopt {unmarked['id']}: {unmarked['name']} (once its bytes are found to match the source)",
        "dry run: 0 would be created, 0 errors",
    ]
    assert "verified_source_hash" not in glance.images.get(unmarked["id"])
