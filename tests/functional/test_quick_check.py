"""The quick no-op (quick_check.py) against the real local cloud: it stops early only when the source,
Glance and Swift are all as the last clean run left them, and otherwise the full sync runs."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import requests

from tests.functional.conftest import (
    QUICK,
    assert_full_run,
    created_ids,
    our_images,
    published_image_ids,
    published_products,
)

pytestmark = pytest.mark.functional


def first_sync(source, sync, seed: int) -> list[dict]:
    source.add_image(serial="20210101", seed=seed)
    source.write()
    result = sync.run([sync.mirror(source.url)])
    assert result.returncode == 0, result.stderr
    assert_full_run(result, sync, images=1, published=True)
    return [sync.mirror(source.url)]


def record(sync) -> dict:
    return json.loads((sync.state_dir / "unchanged.json").read_text())


def test_nothing_changed_stops_at_the_quick_check(source, sync, glance):
    mirrors = first_sync(source, sync, seed=700)
    before = our_images(glance, sync.content_id)
    source.server.clear_requests()

    result = sync.run(mirrors)

    assert result.returncode == 0, result.stderr
    assert QUICK in result.stdout
    assert "sync finished: 0 created, 0 failed, 0 deleted, 0 errors" in result.stdout
    assert "the source, our 1 images in Glance and the metadata at " in result.stdout
    fetched = sorted(r["path"] for r in source.server.wait_for_requests(2))
    assert fetched == ["/streams/v1/com.ubuntu.cloud:released:download.sjson", "/streams/v1/index.sjson"]
    assert our_images(glance, sync.content_id) == before
    last = json.loads((sync.state_dir / "last-sync.json").read_text())
    assert last["ok"] and last["published"] and last["last_success"] == last["finished"]


def test_the_result_says_whether_the_run_ended_at_the_quick_check_and_counts_active_images(source, sync):
    mirrors = first_sync(source, sync, seed=709)
    full = json.loads((sync.state_dir / "last-sync.json").read_text())

    assert QUICK in sync.run(mirrors).stdout
    quick = json.loads((sync.state_dir / "last-sync.json").read_text())

    assert (full["quick_check"], full["images_active"]) == (False, 1)
    assert (quick["quick_check"], quick["images_active"]) == (True, 1)


def test_the_record_holds_no_secret_and_only_the_sync_reads_it(source, sync):
    mirrors = first_sync(source, sync, seed=701)
    assert QUICK in sync.run(mirrors).stdout

    text = (sync.state_dir / "unchanged.json").read_text()

    assert stat.S_IMODE((sync.state_dir / "unchanged.json").stat().st_mode) == 0o600
    assert not {"token", "token_expires"} & json.loads(text).keys()
    assert "gAAAA" not in text  # how every Fernet token begins
    assert sync.cloud.sync_identity["password"] not in text


def test_a_new_version_in_the_source_is_synced(source, sync, glance):
    mirrors = first_sync(source, sync, seed=702)
    source.add_image(serial="20210201", seed=703)
    source.write()

    result = sync.run(mirrors)

    assert result.returncode == 0, result.stderr
    assert_full_run(result, sync, images=1, published=True)
    assert len(created_ids(result.stdout)) == 1
    assert [i["version_name"] for i in our_images(glance, sync.content_id)] == ["20210201"]


def test_an_image_deleted_in_glance_is_uploaded_again(source, sync, glance):
    mirrors = first_sync(source, sync, seed=704)
    glance.images.delete(our_images(glance, sync.content_id)[0]["id"])

    result = sync.run(mirrors)

    assert result.returncode == 0, result.stderr
    assert_full_run(result, sync, images=1, published=True)
    assert len(created_ids(result.stdout)) == 1


def test_a_property_changed_in_glance_means_a_full_check(source, sync, glance):
    mirrors = first_sync(source, sync, seed=705)
    glance.images.update(our_images(glance, sync.content_id)[0]["id"], latest="maybe")

    result = sync.run(mirrors)

    assert result.returncode == 0, result.stderr
    assert_full_run(result, sync, images=1, published=False)


def test_metadata_deleted_in_swift_is_published_again(source, sync, glance, cloud):
    mirrors = first_sync(source, sync, seed=706)
    products_url = next(url for url in record(sync)["swift_objects"] if not url.endswith("index.json"))
    assert cloud.sync_session().delete(products_url).status_code == 204

    result = sync.run(mirrors)

    assert result.returncode == 0, result.stderr
    assert_full_run(result, sync, images=1, published=True)
    assert published_image_ids(published_products(cloud, sync.content_id)) == {
        i["id"] for i in our_images(glance, sync.content_id)
    }


def test_changed_settings_mean_a_full_check(source, sync):
    mirrors = first_sync(source, sync, seed=707)
    sync.settings = {"custom_properties": {"hw_rng_model": "virtio"}}

    result = sync.run(mirrors)

    assert result.returncode == 0, result.stderr
    assert_full_run(result, sync, images=1, published=False)


@pytest.mark.parametrize("changed", ["keyring", "ca_file"])
def test_a_changed_keyring_or_ca_file_means_a_full_check(source, sync, cloud, test_key, other_key, tmp_path, changed):
    keyring = tmp_path / "keyring.gpg"
    keyring.write_bytes(test_key.keyring.read_bytes())
    ca_file = tmp_path / "ca-bundle.pem"
    ca_file.write_text(Path("/etc/ssl/certs/ca-certificates.crt").read_text())
    sync.keyring = keyring
    sync.identity_override = {**cloud.sync_identity, "ca_file": str(ca_file)}
    mirrors = first_sync(source, sync, seed=717 if changed == "keyring" else 718)
    assert QUICK in sync.run(mirrors).stdout
    if changed == "keyring":  # the same key and another one: the source still verifies
        keyring.write_bytes(test_key.keyring.read_bytes() + other_key.keyring.read_bytes())
    else:
        ca_file.write_text(ca_file.read_text() + "\n")

    result = sync.run(mirrors)

    assert result.returncode == 0, result.stderr
    assert_full_run(result, sync, images=1, published=False)


def test_a_record_of_the_previous_version_loses_its_token_and_means_a_full_check(source, sync):
    mirrors = first_sync(source, sync, seed=708)
    data = record(sync)
    old = {**data, "version": 1, "token": "gAAAA-old-token", "token_expires": "2000-01-01T00:00:00+00:00"}
    (sync.state_dir / "unchanged.json").write_text(json.dumps(old))

    result = sync.run(mirrors)

    assert result.returncode == 0, result.stderr
    assert_full_run(result, sync, images=1, published=False)
    assert "gAAAA" not in (sync.state_dir / "unchanged.json").read_text()
    assert record(sync)["version"] == data["version"]


def test_full_check_option_skips_the_quick_check(source, sync):
    mirrors = first_sync(source, sync, seed=710)

    result = sync.run(mirrors, "--full-check")

    assert result.returncode == 0, result.stderr
    assert_full_run(result, sync, images=1, published=False)


def test_a_run_that_leaves_work_behind_records_nothing(source, sync, glance, nova):
    """A server's use of an image is not among what the quick check observes: every run asks Nova again."""
    mirrors = first_sync(source, sync, seed=711)
    old = our_images(glance, sync.content_id)[0]
    source.add_image(serial="20210201", seed=712)
    source.write()
    nova.servers = [{"id": "vm-1", "image": {"id": old["id"]}}]

    kept = sync.run(mirrors)
    again = sync.run(mirrors)

    assert "superseded but in use by a server" in kept.stdout and "superseded but in use by a server" in again.stdout
    assert_full_run(again, sync, images=1, published=False)  # the image in use is not published
    assert not (sync.state_dir / "unchanged.json").exists()


def test_an_image_kept_for_as_long_as_glance_stays_so_does_not_stop_the_quick_check(source, sync, glance):
    """A protected superseded image stays until someone unprotects it, which changes Glance's listing: the
    quick check applies, and says and records again what the full run said of it."""
    mirrors = first_sync(source, sync, seed=715)
    old = our_images(glance, sync.content_id)[0]
    source.add_image(serial="20210201", seed=716)
    source.write()
    glance.images.update(old["id"], protected=True)
    try:
        kept = sync.run(mirrors)
        again = sync.run(mirrors)
        last = json.loads((sync.state_dir / "last-sync.json").read_text())
    finally:
        glance.images.update(old["id"], protected=False)
    unprotected = sync.run(mirrors)

    line = f"kept {old['id']}: {old['name']} (superseded but protected)"
    assert kept.returncode == again.returncode == unprotected.returncode == 0
    assert line in kept.stdout.splitlines()
    assert_full_run(kept, sync, images=2, published=True)  # kept, so still published
    assert line in again.stdout.splitlines() and QUICK in again.stdout
    assert [entry["id"] for entry in last["kept"]] == [old["id"]] and last["ok"]
    assert_full_run(unprotected, sync, images=1, published=True)
    assert f"deleted {old['id']}: {old['name']} (superseded by a newer version)" in unprotected.stdout.splitlines()
    assert [i["version_name"] for i in our_images(glance, sync.content_id)] == ["20210201"]


def test_an_unreachable_source_means_a_full_check_that_says_so(source, sync):
    mirrors = first_sync(source, sync, seed=713)
    url = source.url
    source.server.stop()

    result = sync.run(mirrors)

    assert result.returncode == 1
    assert QUICK not in result.stdout
    assert "cannot connect" in result.stderr
    with pytest.raises(requests.ConnectionError):
        requests.get(url, timeout=5)


def test_the_quick_check_respects_the_lock(source, sync):
    from simplestreams_sync.sync_lock import SyncLock

    mirrors = first_sync(source, sync, seed=714)
    with SyncLock(sync.state_dir):
        result = sync.run(mirrors)

    assert result.returncode == 3
    assert "another sync is already running" in result.stderr
