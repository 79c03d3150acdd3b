"""Resume, not restart: a download that drops mid-image continues from the byte it had.

The source server drops connections at chosen file offsets (tests/localcloud/source_server.py, fault
`drop`); the sync must end with the image active and verified, having asked for each remaining part
with a Range request guarded by If-Range, and the source must have served the image about once.
"""

from __future__ import annotations

import email.utils
import hashlib

import pytest

from tests.functional.conftest import assert_cloud_is_clean, created_ids, our_images
from tests.functional.test_lifecycle import MODIFIER

pytestmark = pytest.mark.functional

MIB = 1 << 20


def image_requests(source, item, count: int) -> list[dict]:
    """The source's log of the item's file, once it holds `count` entries (each is logged after its answer)."""
    return source.server.wait_for_requests(count, path="/" + item.path)


def test_dropped_connections_resume_where_they_stopped(source, sync, glance, cloud):
    item = source.add_image(seed=130, size=8 * MIB, incompressible=True)
    source.write()
    drops = [item.size // 4, item.size // 2, item.size * 3 // 4]
    source.server.set_faults({"/" + item.path: {"kind": "drop", "at": drops}})

    result = sync.run([sync.mirror(source.url)])

    assert result.returncode == 0, result.stderr
    assert len(created_ids(result.stdout)) == 1
    assert "restarting" not in result.stdout
    assert result.stderr.count("resuming from there") == len(drops)
    served = image_requests(source, item, 1 + len(drops))
    assert [(entry["status"], entry["range"]) for entry in served] == [(200, None)] + [
        (206, f"bytes={offset}-") for offset in drops
    ]
    served_bytes = sum(entry["bytes_sent"] for entry in served)
    print(f"source bytes served / image size: {served_bytes} / {item.size} = {served_bytes / item.size:.4f}")
    assert served_bytes == item.size
    [image] = our_images(glance, sync.content_id)
    assert image["status"] == "active" and image["size"] == item.size
    assert_cloud_is_clean(glance, cloud, sync.content_id, source)


@pytest.mark.parametrize(
    "fault, said",
    [
        ({"ranges": False}, "with HTTP 200, not 206"),
        ({"new_etag_after_drop": True}, "changed since the download began"),
    ],
    ids=["source-ignores-ranges", "source-changed-meanwhile"],
)
def test_a_source_that_cannot_resume_restarts_the_image_cleanly(source, sync, glance, cloud, fault, said):
    item = source.add_image(seed=131, size=4 * MIB, incompressible=True)
    source.add_image(release="jammy", version="22.04", seed=132)
    source.write()
    source.server.set_faults({"/" + item.path: {"kind": "drop", "at": [item.size // 2], **fault}})

    result = sync.run([sync.mirror(source.url)])

    assert result.returncode == 0, result.stderr
    [restart] = [line for line in result.stdout.splitlines() if line.startswith("restarting ")]
    assert restart.startswith("restarting auto-sync/ubuntu-focal") and " from its first byte: " in restart
    assert said in restart
    assert len(created_ids(result.stdout)) == 2
    assert sorted(i["os_version"] for i in our_images(glance, sync.content_id)) == ["20.04", "22.04"]
    served = image_requests(source, item, 3)
    assert [(entry["status"], entry["range"]) for entry in served] == [
        (200, None),  # the first download, dropped halfway
        (200, f"bytes={item.size // 2}-"),  # the resume, answered with the whole file
        (200, None),  # the restart
    ]
    assert_cloud_is_clean(glance, cloud, sync.content_id, source)


def test_with_the_image_modifier_a_changed_source_restarts_the_image_too(source, sync, glance, cloud, tmp_path):
    """The local copy the image-modifier works on is dropped halfway by a source that then answers the
    whole file: the image starts again from its first byte (a new copy, the script run on it), as without
    the script."""
    item = source.add_image(seed=137, size=4 * MIB, incompressible=True)
    source.write()
    source.server.set_faults({"/" + item.path: {"kind": "drop", "at": [item.size // 2], "ranges": False}})
    log = tmp_path / "modifier.log"
    script = tmp_path / "modify.sh"
    script.write_text(MODIFIER.replace("{log}", str(log)))
    script.chmod(0o755)
    sync.settings = {"modify_hook": str(script)}

    result = sync.run([sync.mirror(source.url)])

    assert result.returncode == 0, result.stderr
    [restart] = [line for line in result.stdout.splitlines() if line.startswith("restarting ")]
    assert restart.startswith("restarting auto-sync/ubuntu-focal") and "with HTTP 200, not 206" in restart
    assert log.read_text() == "20210720 disk1.img\n"  # the script ran once, on the complete copy
    [image] = our_images(glance, sync.content_id)
    stored = b"".join(glance.images.data(image["id"]))
    assert image["status"] == "active"
    assert image["verified_source_hash"] == f"sha256:{hashlib.sha256(stored).hexdigest()}"
    served = image_requests(source, item, 3)
    assert [(entry["status"], entry["range"]) for entry in served] == [
        (200, None),
        (200, f"bytes={item.size // 2}-"),
        (200, None),
    ]


def test_without_an_etag_a_resume_is_guarded_by_last_modified(source, sync, glance, cloud):
    item = source.add_image(seed=133, size=4 * MIB, incompressible=True)
    source.write()
    source.server.set_faults({"/" + item.path: {"kind": "drop", "at": [item.size // 2], "etag": False}})
    last_modified = email.utils.formatdate((source.builder.root / item.path).stat().st_mtime, usegmt=True)

    result = sync.run([sync.mirror(source.url)])

    assert result.returncode == 0, result.stderr
    assert "restarting" not in result.stdout
    served = image_requests(source, item, 2)
    assert [(entry["status"], entry["range"], entry["if_range"]) for entry in served] == [
        (200, None, None),
        (206, f"bytes={item.size // 2}-", last_modified),
    ]
    assert_cloud_is_clean(glance, cloud, sync.content_id, source)


def test_an_image_restarts_at_most_twice_then_fails_leaving_nothing(source, sync, glance, cloud):
    item = source.add_image(seed=134, size=4 * MIB, incompressible=True)
    source.add_image(release="jammy", version="22.04", seed=135)
    source.write()
    # Each answer the file gets is cut at the next of these offsets, and each cut makes the file "change":
    # the download, then each restart, is cut; each resume is answered with the whole (changed) file.
    drops = [item.size * eighth // 8 for eighth in range(1, 8)]
    source.server.set_faults({"/" + item.path: {"kind": "drop", "at": drops, "new_etag_after_drop": True}})

    result = sync.run([sync.mirror(source.url)])

    assert result.returncode == 1
    restarts = [line for line in result.stdout.splitlines() if line.startswith("restarting ")]
    assert len(restarts) == 2
    [failure] = [line for line in result.stderr.splitlines() if line.startswith("failed ")]
    assert failure.startswith("failed auto-sync/ubuntu-focal-20.04-amd64-server-")
    assert failure.endswith(" (after 2 restarts)")
    assert [image["os_version"] for image in our_images(glance, sync.content_id)] == ["22.04"]
    assert len(created_ids(result.stdout)) == 1
    assert_cloud_is_clean(glance, cloud, sync.content_id, source)
