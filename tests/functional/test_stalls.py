"""Services that accept a connection and then never answer (a load balancer's failover): a TcpRelay in
front of Keystone, Glance, the object store or the source stalls, for new connections or for those
already open. The run ends bounded, says which service and URL did not answer within its deadline,
records the failure with its retry, and the next run (the relay gone) succeeds with the cloud clean.

The deadlines are the production ones overridden through the engine's environment (timeouts.py), so
that a stall ends in seconds; tests/engine/test_deadlines_and_crashes.py proves the defaults are what
each request gets.
"""

from __future__ import annotations

import json
import subprocess
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from keystoneclient.v3 import client as keystone_v3

from tests.functional.conftest import assert_cloud_is_clean, created_ids, our_images, sync_environment
from tests.functional.test_faults import hold, wait_until_uploading
from tests.localcloud.relay import TcpRelay

pytestmark = pytest.mark.functional

DEADLINE = 5  # seconds: each deadline of the stalled runs
SHORT_DEADLINES = {
    f"SIMPLESTREAMS_SYNC_TIMEOUT_{name}": str(DEADLINE) for name in ("CONNECT", "READ", "UPLOAD_ANSWER", "SOURCE_READ")
}
BOUND = 300  # seconds: a stalled service ends the run within 5 minutes
MIB = 1 << 20


def run_with_short_deadlines(sync, mirrors: list[dict]) -> subprocess.CompletedProcess:
    """The sync with every deadline at DEADLINE; subprocess.TimeoutExpired if it outlives BOUND."""
    env = {**sync_environment(), **SHORT_DEADLINES}
    return subprocess.run(sync.command(mirrors), capture_output=True, text=True, env=env, timeout=BOUND)


def relayed(url: str, relay: TcpRelay) -> str:
    """`url` with its host and port those of the relay."""
    return url.replace(urlsplit(url).netloc, f"127.0.0.1:{relay.port}", 1)


@contextmanager
def endpoints_behind(cloud, service_type: str):
    """A relay in front of the service, its catalog endpoints (every interface) at the relay for the block."""
    ks = keystone_v3.Client(session=cloud.admin_session(), interface="public")
    (service,) = ks.services.list(type=service_type)
    endpoints = ks.endpoints.list(service=service, region=cloud.region)
    with TcpRelay(urlsplit(endpoints[0].url).port) as relay:
        try:
            for endpoint in endpoints:
                ks.endpoints.update(endpoint, url=relayed(endpoint.url, relay))
            yield relay
        finally:
            for endpoint in endpoints:
                ks.endpoints.update(endpoint, url=endpoint.url)


def assert_failed_with_retry(sync, stalled: subprocess.CompletedProcess, error: str) -> None:
    """Exit 1, `error` said and recorded in last-sync.json with ok false and the retry due."""
    result = json.loads((sync.state_dir / "last-sync.json").read_text())
    assert stalled.returncode == 1, stalled.stderr
    assert error in stalled.stderr
    assert any(error in line for line in result["errors"] + [f["error"] for f in result["failed"]]), result
    assert (result["ok"], result["failures_in_a_row"], bool(result["next_try"])) == (False, 1, True)
    assert not (sync.state_dir / "progress.json").exists()


def assert_next_run_succeeds(sync, mirrors, glance, cloud, source, created: int) -> None:
    after = sync.run(mirrors)
    assert after.returncode == 0, after.stderr
    assert len(created_ids(after.stdout)) == created
    assert json.loads((sync.state_dir / "last-sync.json").read_text())["next_try"] == ""
    assert_cloud_is_clean(glance, cloud, sync.content_id, source)


@pytest.fixture
def one_image(source, sync):
    source.add_image(seed=140)
    source.write()
    sync.settings["frequency"] = "hourly"
    return [sync.mirror(source.url)]


def test_a_stalled_keystone_ends_the_run_naming_it_and_the_next_run_succeeds(one_image, sync, glance, cloud, source):
    with TcpRelay(urlsplit(cloud.auth_url).port) as relay:
        auth_url = relayed(cloud.auth_url, relay)
        sync.identity_override = {**cloud.sync_identity, "auth_url": auth_url}
        relay.stall()
        stalled = run_with_short_deadlines(sync, one_image)

    assert relay.stalled_connections >= 1
    assert_failed_with_retry(sync, stalled, f"keystone {auth_url}: {auth_url}/auth/tokens: no answer within 5 s")
    assert our_images(glance, sync.content_id) == []
    sync.identity_override = None
    assert_next_run_succeeds(sync, one_image, glance, cloud, source, created=1)


def test_a_stalled_glance_ends_the_run_naming_it_and_the_next_run_succeeds(one_image, sync, glance, cloud, source):
    with endpoints_behind(cloud, "image") as relay:
        relay.stall()
        stalled = run_with_short_deadlines(sync, one_image)

    assert relay.stalled_connections >= 1
    assert_failed_with_retry(sync, stalled, f"127.0.0.1:{relay.port}/")
    assert f"no answer within {DEADLINE} s" in stalled.stderr
    assert_next_run_succeeds(sync, one_image, glance, cloud, source, created=1)


def test_glance_stalling_an_upload_already_under_way_ends_the_run(source, sync, glance, cloud, tmp_path: Path):
    item = source.add_image(seed=141, size=4 * MIB)
    source.write()
    sync.settings["frequency"] = "hourly"
    mirrors = [sync.mirror(source.url)]
    release = tmp_path / "release-upload"
    hold(source, item, release)
    assert our_images(glance, sync.content_id) == []  # the test's own token: its catalog names Glance itself
    with endpoints_behind(cloud, "image") as relay:
        env = {**sync_environment(), **SHORT_DEADLINES}
        running = subprocess.Popen(
            sync.command(mirrors), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        try:
            wait_until_uploading(glance, sync.content_id)
            relay.stall()  # the upload's connection is open: from now on nothing gets through it
            release.touch()
            stdout, stderr = running.communicate(timeout=BOUND)
        finally:
            release.touch()
            running.kill()
            running.wait()
    source.server.clear_faults()

    stalled = subprocess.CompletedProcess(running.args, running.returncode, stdout, stderr)
    assert_failed_with_retry(sync, stalled, "no answer within 5 s")
    assert f"127.0.0.1:{relay.port}/v2/images/" in stderr
    [left] = [image for image in our_images(glance, sync.content_id) if image["status"] != "active"]
    # The stalled upload could not be rolled back; once not updated for longer than an upload in flight
    # can be (plan.py), the next run deletes it.
    cloud.set_image_updated_at(left["id"], datetime.now(timezone.utc) - timedelta(hours=1))
    assert_next_run_succeeds(sync, mirrors, glance, cloud, source, created=1)


def test_a_stalled_object_store_ends_the_run_naming_it_and_the_next_run_publishes(
    one_image, sync, glance, cloud, source
):
    with endpoints_behind(cloud, "object-store") as relay:
        relay.stall()
        stalled = run_with_short_deadlines(sync, one_image)

    assert relay.stalled_connections >= 1
    assert_failed_with_retry(
        sync,
        stalled,
        "no answer within 5 s: the object store (Swift proxy or Ceph RGW) accepted the connection and did not answer",
    )
    assert f"127.0.0.1:{relay.port}/" in stalled.stderr
    assert len(created_ids(stalled.stdout)) == 1  # the images still synced
    after = sync.run(one_image)
    assert after.returncode == 0, after.stderr
    assert "published metadata for 1 images" in after.stdout
    assert_cloud_is_clean(glance, cloud, sync.content_id, source)


def test_a_stalled_source_ends_the_run_naming_it_and_the_next_run_succeeds(source, sync, glance, cloud):
    source.add_image(seed=142)
    source.write()
    sync.settings["frequency"] = "hourly"
    with TcpRelay(urlsplit(source.url).port) as relay:
        stalled_mirrors = [sync.mirror(relayed(source.url, relay))]
        relay.stall()
        stalled = run_with_short_deadlines(sync, stalled_mirrors)

    assert relay.stalled_connections == 3  # the index, tried 3 times
    assert_failed_with_retry(
        sync, stalled, f"{relayed(source.url, relay)}streams/v1/index.sjson: no answer within 5 s after 3 attempts"
    )
    assert_next_run_succeeds(sync, [sync.mirror(source.url)], glance, cloud, source, created=1)
