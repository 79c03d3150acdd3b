"""A crash is a result: an answer the sync does not expect (a 200 from a proxy whose body is no JSON, as
a load balancer's error page) ends the run with exit 4, its traceback in the log, and last-sync.json
saying it crashed, with the retry scheduled; the next run succeeds and the cloud is clean."""

from __future__ import annotations

import json

import pytest

from tests.functional.conftest import assert_cloud_is_clean, created_ids, our_images
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
    proxy = HttpProxy(tmp_path / "proxy", upstream=f"127.0.0.1:{glance_port}", garbage={"GET": 1})
    with proxy, cloud.image_endpoints_at(proxy.url):
        crashed = sync.run(mirrors)

    result = json.loads((sync.state_dir / "last-sync.json").read_text())
    assert crashed.returncode == EXIT_CRASHED, crashed.stderr
    assert result["crashed"] == "JSONDecodeError: Expecting value: line 1 column 1 (char 0)"
    assert [entry["status"] for entry in proxy.requests()][:1] == ["garbage"]
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
