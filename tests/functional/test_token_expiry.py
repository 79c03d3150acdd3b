"""A sync that outlives its token: Keystone tokens here last seconds, the source is throttled.

Every request of the sync (Glance through glanceclient and the raw chunked upload, Swift, Nova) must
re-authenticate when its token has expired; the quick check, which reuses the token of the last run,
must fall through to the full sync when that token no longer works.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.functional.conftest import assert_cloud_is_clean, assert_full_run, created_ids, our_images
from tests.localcloud.cloud import LocalCloud

pytestmark = pytest.mark.functional

TOKEN_LIFETIME = 5  # seconds
MIB = 1 << 20
THROTTLE = 256 * 1024  # bytes per second, per image


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    with LocalCloud(tmp_path_factory.mktemp("short-token-cloud"), token_lifetime=TOKEN_LIFETIME) as local_cloud:
        yield local_cloud


def test_a_sync_outlives_several_tokens_and_the_quick_check_falls_through(source, sync, glance, cloud):
    items = [
        source.add_image(release=release, version=version, seed=140 + n, size=4 * MIB)
        for n, (release, version) in enumerate([("focal", "20.04"), ("jammy", "22.04"), ("noble", "24.04")])
    ]
    source.write()
    source.server.set_faults({"/" + item.path: {"kind": "slow", "bytes_per_second": THROTTLE} for item in items})

    started = time.monotonic()
    result = sync.run([sync.mirror(source.url)])
    duration = time.monotonic() - started

    print(f"token lifetime {TOKEN_LIFETIME}s, sync duration {duration:.1f}s")
    assert result.returncode == 0, result.stderr
    assert len(created_ids(result.stdout)) == 3
    assert duration > min(item.size for item in items) / THROTTLE > 3 * TOKEN_LIFETIME  # the throttle's floor
    assert all(image["status"] == "active" for image in our_images(glance, sync.content_id))
    assert_cloud_is_clean(glance, cloud, sync.content_id, source)

    # The record of that clean run holds a token that has now expired; let it claim a day more.
    record_file = sync.state_dir / "unchanged.json"
    record = json.loads(record_file.read_text())
    expired_at = datetime.fromisoformat(record["token_expires"])
    recorded_at = datetime.fromisoformat(record["recorded"].replace("Z", "+00:00"))
    assert expired_at <= recorded_at + timedelta(seconds=TOKEN_LIFETIME + 1), "keystone's tokens are not short"
    while datetime.now(UTC) <= expired_at + timedelta(seconds=1):
        time.sleep(0.5)
    record["token_expires"] = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    record_file.write_text(json.dumps(record))

    again = sync.run([sync.mirror(source.url)])

    assert again.returncode == 0, again.stderr
    assert_full_run(again, sync, images=3, published=False)
    assert created_ids(again.stdout) == [] and "0 created, 0 failed" in again.stdout
