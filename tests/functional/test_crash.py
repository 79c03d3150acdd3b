"""A crash is a result: an answer the sync does not expect (a 200 from a proxy whose body is no JSON, as
a load balancer's error page), or the engine's test hook in each phase, ends the run with exit 4, its
traceback in the log, and last-sync.json saying it crashed, with the retry scheduled; the next run
succeeds and the cloud is clean."""

from __future__ import annotations

import json
import subprocess

import pytest

from simplestreams_sync.state import TEST_HOOK_CRASH_IN_PHASE
from tests.functional.conftest import assert_cloud_is_clean, created_ids, our_images, sync_environment
from tests.localcloud.proxy import HttpProxy

pytestmark = pytest.mark.functional

EXIT_CRASHED = 4


def test_garbage_from_glance_while_checking_it_is_a_crash_recorded_with_its_retry(
    source, sync, glance, cloud, tmp_path
):
    source.add_image(seed=150)
    source.write()
    sync.settings["frequency"] = "hourly"
    mirrors = [sync.mirror(source.url)]
    glance_port = cloud.glance_url.rsplit(":", 1)[1]
    proxy = HttpProxy(tmp_path / "proxy", upstream=f"127.0.0.1:{glance_port}", garbage={"GET": 100})
    with proxy, cloud.image_endpoints_at(proxy.url):
        crashed = sync.run(mirrors)

    result = json.loads((sync.state_dir / "last-sync.json").read_text())
    assert crashed.returncode == EXIT_CRASHED, crashed.stderr
    assert result["crashed"] == "JSONDecodeError: Expecting value: line 1 column 1 (char 0)"
    assert {entry["status"] for entry in proxy.requests()} == {"garbage"}
    assert "Traceback (most recent call last):" in crashed.stderr
    last_line = crashed.stderr.strip().splitlines()[-1]
    assert last_line == f"error: the sync crashed: {result['crashed']}"
    assert result["errors"] == [f"the sync crashed: {result['crashed']} (the traceback is in the sync log)"]
    assert (result["ok"], result["failures_in_a_row"], bool(result["next_try"])) == (False, 1, True)
    assert not (sync.state_dir / "progress.json").exists()
    assert our_images(glance, sync.content_id) == []

    after = sync.run(mirrors)

    assert after.returncode == 0, after.stderr
    assert len(created_ids(after.stdout)) == 1
    assert_cloud_is_clean(glance, cloud, sync.content_id, source)


def test_garbage_for_the_listing_sent_before_the_imports_is_listed_again(source, sync, glance, cloud, tmp_path):
    source.add_image(seed=152)
    source.write()
    glance_port = cloud.glance_url.rsplit(":", 1)[1]
    proxy = HttpProxy(tmp_path / "proxy", upstream=f"127.0.0.1:{glance_port}", garbage={"GET": 1})
    with proxy, cloud.image_endpoints_at(proxy.url):
        result = sync.run([sync.mirror(source.url)])

    assert result.returncode == 0, result.stderr
    assert [entry["status"] for entry in proxy.requests()][:1] == ["garbage"]
    assert len(created_ids(result.stdout)) == 1
    assert_cloud_is_clean(glance, cloud, sync.content_id, source)


PHASES = ["starting", "reading sources", "checking glance", "uploading", "publishing metadata"]


@pytest.mark.parametrize("phase", PHASES)
def test_a_crash_in_each_phase_leaves_a_result_and_the_next_run_completes(phase, source, sync, glance, cloud):
    """No real fault reaches every phase: the engine's test hook (state.TEST_HOOK_CRASH_IN_PHASE) crashes it."""
    source.add_image(seed=151)
    source.write()
    sync.settings["frequency"] = "hourly"
    mirrors = [sync.mirror(source.url)]
    env = {**sync_environment(), TEST_HOOK_CRASH_IN_PHASE: phase}
    crashed = subprocess.run(sync.command(mirrors), capture_output=True, text=True, env=env, timeout=600)

    result = json.loads((sync.state_dir / "last-sync.json").read_text())
    crash = f"HookedCrash: {TEST_HOOK_CRASH_IN_PHASE}: crashed entering phase {phase}"
    assert crashed.returncode == EXIT_CRASHED, crashed.stderr
    assert crashed.stderr.strip().splitlines()[-1] == f"error: the sync crashed: {crash}"
    assert (result["crashed"], result["errors"]) == (
        crash,
        [f"the sync crashed: {crash} (the traceback is in the sync log)"],
    )
    assert (result["ok"], result["failures_in_a_row"], bool(result["next_try"])) == (False, 1, True)
    assert not (sync.state_dir / "progress.json").exists()

    after = sync.run(mirrors)

    assert after.returncode == 0, after.stderr
    assert len(created_ids(after.stdout)) == (0 if phase == "publishing metadata" else 1)
    assert_cloud_is_clean(glance, cloud, sync.content_id, source)
