"""State files the sync leaves for the charm and for monitoring."""

import pytest

from simplestreams_sync.metrics import METRICS_FILE, write_metrics
from simplestreams_sync.state import (
    SyncResult,
    publish_only_lines,
    read_publish_only_lines,
    read_result,
    write_result,
)
from simplestreams_sync.sync_lock import SyncAlreadyRunning, SyncLock

URLS = {
    "public": "https://swift.public:443/v1/AUTH_p/simplestreams/data",
    "internal": "http://swift.internal:8080/v1/AUTH_p/simplestreams/data",
    "admin": "http://swift.admin:8080/v1/AUTH_p/simplestreams/data",
}


def test_last_success_carries_over_a_failed_run(tmp_path):
    write_result(tmp_path, SyncResult(started="2026-11-24T10:00:00Z", finished="2026-11-24T10:02:00Z"))
    write_result(
        tmp_path, SyncResult(started="2026-11-25T10:00:00Z", finished="2026-11-25T10:02:00Z", errors=["keystone down"])
    )
    result = read_result(tmp_path)
    assert (result.ok, result.last_success) == (False, "2026-11-24T10:02:00Z")


def test_a_result_file_of_another_version_reads_what_it_knows(tmp_path):
    (tmp_path / "last-sync.json").write_text(
        '{"started": "2026-11-24T10:00:00Z", "created": [{"id": "a"}], "from_a_newer_engine": 1}'
    )

    assert read_result(tmp_path) == SyncResult(started="2026-11-24T10:00:00Z", created=[{"id": "a"}])


def test_publish_only_names_where_it_wrote_and_each_interfaces_url():
    lines = publish_only_lines(URLS["internal"], URLS)

    assert lines == [
        f"metadata_url {URLS['internal']}",
        f"public_url {URLS['public']}",
        f"internal_url {URLS['internal']}",
        f"admin_url {URLS['admin']}",
    ]
    assert read_publish_only_lines(lines) == (URLS["internal"], URLS)


@pytest.mark.parametrize("dropped", range(4))
def test_publish_only_output_without_one_of_its_urls_names_none(dropped):
    lines = publish_only_lines(URLS["internal"], URLS)
    del lines[dropped]

    assert read_publish_only_lines(lines) is None


def test_something_that_is_no_result_reads_as_none(tmp_path):
    (tmp_path / "last-sync.json").write_text('["not", "a", "result"]')

    assert read_result(tmp_path) is None


def test_result_file_is_readable_by_monitoring_but_not_writable(tmp_path):
    write_result(tmp_path, SyncResult(started="2026-11-24T10:00:00Z"))
    assert oct((tmp_path / "last-sync.json").stat().st_mode & 0o777) == "0o644"


def test_metrics_in_prometheus_text_format(tmp_path):
    result = SyncResult(
        started="2026-11-24T10:00:00Z",
        finished="2026-11-24T10:02:00Z",
        created=[{"id": "a", "name": "x"}],
        bytes_transferred=1234,
        duration_seconds=120.5,
    )
    write_result(tmp_path, result)
    write_metrics(tmp_path, result)
    text = (tmp_path / METRICS_FILE).read_text()
    assert "glance_simplestreams_sync_last_success_timestamp_seconds 1795514520\n" in text
    assert "glance_simplestreams_sync_last_run_images_created 1\n" in text
    assert "glance_simplestreams_sync_last_run_bytes_transferred 1234\n" in text
    assert "# TYPE glance_simplestreams_sync_last_run_success gauge\n" in text


def test_second_lock_holder_is_refused_with_the_holders_pid(tmp_path):
    with (
        SyncLock(tmp_path),
        pytest.raises(SyncAlreadyRunning, match=r"another sync is already running \(pid \d+\)"),
        SyncLock(tmp_path),
    ):
        pass
    with SyncLock(tmp_path):  # released
        pass
