"""Resume, not restart: a download that drops mid-image continues from the byte it had.

The source server drops connections at chosen file offsets (tests/localcloud/source_server.py, fault
`drop`); the sync must end with the image active and verified, having asked for each remaining part
with a Range request guarded by If-Range, and the source must have served the image about once.
"""

from __future__ import annotations

import pytest

from tests.functional.conftest import assert_cloud_is_clean, created_ids, our_images

pytestmark = pytest.mark.functional

MIB = 1 << 20


def image_requests(source, item) -> list[dict]:
    return [entry for entry in source.server.requests() if entry["path"] == "/" + item.path]


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
    served = image_requests(source, item)
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
    whole_file_answers = [entry for entry in image_requests(source, item) if entry["status"] == 200]
    assert len(whole_file_answers) == 3  # the first download, the answer to the resume, the restart
    assert_cloud_is_clean(glance, cloud, sync.content_id, source)
