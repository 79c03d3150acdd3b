"""A sync that outlives its token: Keystone tokens here last seconds, the source is throttled.

Every request of the sync (Glance through glanceclient and the raw chunked upload, Swift, Nova) must
re-authenticate when its token has expired; the quick check, which authenticates itself, still
applies once every token of the last run has expired.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

import pytest

from tests.functional.conftest import assert_cloud_is_clean, created_ids, our_images
from tests.localcloud.cloud import LocalCloud

pytestmark = pytest.mark.functional

# Long enough that a token is still valid when a loaded Glance gets round to validating it, short
# enough that the throttled sync outlives two of them.
TOKEN_LIFETIME = 12  # seconds
MIB = 1 << 20
THROTTLE = 128 * 1024  # bytes per second, per image


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    with LocalCloud(tmp_path_factory.mktemp("short-token-cloud"), token_lifetime=TOKEN_LIFETIME) as local_cloud:
        yield local_cloud


def test_a_sync_outlives_several_tokens_and_the_quick_check_outlives_them_all(source, sync, glance, cloud):
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
    assert duration > min(item.size for item in items) / THROTTLE > 2 * TOKEN_LIFETIME  # the throttle's floor
    assert all(image["status"] == "active" for image in our_images(glance, sync.content_id))
    assert_cloud_is_clean(glance, cloud, sync.content_id, source)

    # Every token of that run has expired by now (the last one was issued before it recorded): the
    # next run, as long after as a scheduled one, gets its own and still ends at the quick check.
    record = json.loads((sync.state_dir / "unchanged.json").read_text())
    recorded_at = datetime.fromisoformat(record["recorded"].replace("Z", "+00:00"))
    while datetime.now(timezone.utc) <= recorded_at + timedelta(seconds=TOKEN_LIFETIME + 1):
        time.sleep(0.5)

    again = sync.run([sync.mirror(source.url)])

    assert again.returncode == 0, again.stderr
    assert "(quick check; --full-check redoes it all)" in again.stdout
    assert created_ids(again.stdout) == [] and "0 created, 0 failed" in again.stdout
