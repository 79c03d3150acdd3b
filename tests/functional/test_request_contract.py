"""One definition of each request (api.py): the quick check and the full run, against the real local cloud,
log in as the same user, list the same images of ours (hidden ones included) and read the same metadata
objects; an image an operator hid therefore leaves the scheduled run at the quick check."""

from __future__ import annotations

import ast
import json
import subprocess
import sys

import pytest

from simplestreams_sync import api, quick_check
from simplestreams_sync.config import load_identity
from simplestreams_sync.glance import GlanceStore
from simplestreams_sync.image_listing import glance_endpoint, owned_images
from simplestreams_sync.openstack import Cloud
from simplestreams_sync.publish import INDEX_PATH, PREFIX
from tests.functional.conftest import QUICK, assert_full_run, our_images, sync_environment

pytestmark = pytest.mark.functional


def synced_with_one_hidden_by_an_operator(source, sync, glance) -> tuple[list[dict], str]:
    """Two images of ours in Glance, one of them hidden by an operator after the first sync, and a
    record of the clean run that saw them so; (mirrors, the hidden image's id)."""
    source.add_image(release="jammy", version="22.04", serial="20210101", seed=760)
    source.add_image(release="focal", version="20.04", serial="20210101", seed=761)
    source.write()
    mirrors = [sync.mirror(source.url)]
    first = sync.run(mirrors)
    assert first.returncode == 0, first.stderr
    assert_full_run(first, sync, images=2, published=True)
    hidden_id = sorted(image["id"] for image in our_images(glance, sync.content_id))[0]
    glance.images.update(hidden_id, os_hidden=True)

    seen_hidden = sync.run(mirrors)

    assert seen_hidden.returncode == 0, seen_hidden.stderr
    assert QUICK not in seen_hidden.stdout  # Glance changed since the record: the full run looks again
    assert "sync finished: 0 created, 0 failed, 0 deleted, 0 errors" in seen_hidden.stdout
    return mirrors, hidden_id


def test_an_image_an_operator_hid_leaves_the_next_scheduled_run_at_the_quick_check(source, sync, glance):
    mirrors, hidden_id = synced_with_one_hidden_by_an_operator(source, sync, glance)

    result = sync.run(mirrors)

    assert result.returncode == 0, result.stderr
    assert QUICK in result.stdout
    assert "the source, our 2 images in Glance and the metadata at " in result.stdout
    assert glance.images.get(hidden_id)["os_hidden"] is True


def test_the_quick_check_and_the_full_run_see_the_same_images_objects_and_catalog(source, sync, glance):
    synced_with_one_hidden_by_an_operator(source, sync, glance)
    record = quick_check.load(sync.state_dir)
    assert record is not None
    cloud = Cloud(load_identity(str(sync.workdir / "identity.yaml")))
    full_run_view = owned_images(cloud, glance_endpoint(cloud), sync.content_id)

    token, catalog = quick_check.login_of(record)
    quick_view = quick_check.listings_of(record, lambda: token)

    assert sorted(image["id"] for image in quick_view) == sorted(image["id"] for image in full_run_view)
    assert [image["os_hidden"] for image in sorted(quick_view, key=lambda image: image["os_hidden"])] == [False, True]
    assert quick_check.glance_fingerprint(quick_view, record.content_id, record.project_id) == (
        quick_check.glance_fingerprint(full_run_view, sync.content_id, cloud.project_id)
    )
    assert quick_check.catalog_fingerprint(catalog) == quick_check.catalog_fingerprint(cloud.catalog())
    container = f"{sync.cloud.swift_url}/simplestreams"
    products_path = f"streams/v1/{sync.content_id}.json"
    assert sorted(record.swift_objects) == sorted(
        api.metadata_object_url(container, PREFIX, path) for path in (INDEX_PATH, products_path)
    )
    assert all(quick_check.object_unchanged(record, url, etag) for url, etag in record.swift_objects.items())
    assert json.loads((sync.state_dir / quick_check.RECORD_FILE).read_text())["version"] == quick_check.RECORD_VERSION


def test_the_full_run_lists_our_images_as_glanceclient_lists_them_field_for_field(source, sync, glance):
    synced_with_one_hidden_by_an_operator(source, sync, glance)
    cloud = Cloud(load_identity(str(sync.workdir / "identity.yaml")))
    listings = api.owned_image_filters(cloud.project_id, sync.content_id)
    by_glanceclient = [dict(i) for filters in listings for i in GlanceStore(cloud).client.images.list(filters=filters)]

    listed = owned_images(cloud, glance_endpoint(cloud), sync.content_id)

    assert len(listed) == 2
    assert sorted(listed, key=lambda image: image["id"]) == sorted(by_glanceclient, key=lambda image: image["id"])


# Python statements that record every request the run sends: (thread, method, path without the query).
RECORD_REQUESTS = (
    "import http.client, threading; sent = []; putrequest = http.client.HTTPConnection.putrequest; "
    "http.client.HTTPConnection.putrequest = lambda self, method, url, *a, **k: ("
    "sent.append((threading.current_thread().name, method, url.split('?')[0])), "
    "putrequest(self, method, url, *a, **k))[1]"
)
SENT = "print('sent:', sent)"


def run_reporting(sync, mirrors: list[dict], at_exit: str, first: str = "pass", flags=()):
    """A run in a fresh interpreter that runs `first` (Python statements) before anything and `at_exit`
    (an expression, with sys imported) as it ends."""
    mirrors_file, identity_file = sync.write_files(mirrors)
    argv = ["simplestreams_sync", "--mirrors", str(mirrors_file), "--identity", str(identity_file), *flags]
    command = (
        f"{first}; import atexit, sys; atexit.register(lambda: {at_exit}); sys.argv = {argv!r}; "
        "import runpy; runpy.run_module('simplestreams_sync', run_name='__main__', alter_sys=True)"
    )
    result = subprocess.run(
        [sys.executable, "-c", command], capture_output=True, text=True, env=sync_environment(), timeout=600
    )
    assert result.returncode == 0, result.stderr
    return result


def full_check_reporting(sync, mirrors: list[dict], at_exit: str, first: str = "pass") -> subprocess.CompletedProcess:
    result = run_reporting(sync, mirrors, at_exit, first, flags=["--full-check"])
    assert QUICK not in result.stdout
    assert "sync finished: 0 created, 0 failed, 0 deleted, 0 errors" in result.stdout
    return result


def requests_sent(result: subprocess.CompletedProcess) -> list[tuple[str, str, str]]:
    """(thread, method, path) of each request the run sent, in order (RECORD_REQUESTS, SENT)."""
    return ast.literal_eval(result.stdout.splitlines()[-1].removeprefix("sent: "))


def logins_and_listings(result: subprocess.CompletedProcess) -> list[tuple[str, str]]:
    """(thread, "login" or "listing") of each Keystone login and Glance listing the run sent, in order."""
    kinds = {"/auth/tokens": "login", "/v2/images": "listing"}
    return [
        (thread, kind) for thread, _, path in requests_sent(result) for end, kind in kinds.items() if path.endswith(end)
    ]


def container_heads(result: subprocess.CompletedProcess) -> list[str]:
    """The thread of each HEAD of the metadata's container the run sent, in order."""
    return [
        thread
        for thread, method, path in requests_sent(result)
        if (method, path.rsplit("/", 1)[-1]) == ("HEAD", "simplestreams")
    ]


def test_a_full_check_that_changes_nothing_loads_no_glanceclient(source, sync, glance):
    mirrors, _ = synced_with_one_hidden_by_an_operator(source, sync, glance)

    result = full_check_reporting(sync, mirrors, "print('glanceclient loaded:', 'glanceclient' in sys.modules)")

    assert result.stdout.splitlines()[-1] == "glanceclient loaded: False"


def test_a_full_check_logs_in_once_and_lists_glance_before_its_heavy_imports(source, sync, glance):
    mirrors, _ = synced_with_one_hidden_by_an_operator(source, sync, glance)

    result = full_check_reporting(sync, mirrors, SENT, first=RECORD_REQUESTS)

    # The listings at the end of the run, which the quick check's record holds, are read afresh.
    sent_early = [(thread == "early-login", kind) for thread, kind in logins_and_listings(result)]
    assert sent_early == [(True, "login"), (True, "listing"), (True, "listing"), (False, "listing"), (False, "listing")]
    # Swift validates the token once, before the publish's requests: the publish's own HEAD follows.
    assert container_heads(result) == ["early-warm-up", "MainThread"]


def test_a_scheduled_run_that_ends_at_the_quick_check_sends_every_request_it_waits_for_first(source, sync, glance):
    mirrors, _ = synced_with_one_hidden_by_an_operator(source, sync, glance)

    result = run_reporting(sync, mirrors, SENT, first=RECORD_REQUESTS)

    assert QUICK in result.stdout
    early = [("early-login", "login"), ("early-login", "listing"), ("early-login", "listing")]
    assert logins_and_listings(result) == early
    assert all(thread != "early-warm-up" for thread, _, _ in requests_sent(result))  # Swift is read anonymously


def test_a_quick_check_that_falls_through_leaves_its_login_to_the_full_run(source, sync, glance):
    mirrors, hidden_id = synced_with_one_hidden_by_an_operator(source, sync, glance)
    glance.images.update(hidden_id, operator_note="kept hidden")

    result = run_reporting(sync, mirrors, SENT, first=RECORD_REQUESTS)

    assert QUICK not in result.stdout
    assert "sync finished: 0 created, 0 failed, 0 deleted, 0 errors" in result.stdout
    assert [thread for thread, kind in logins_and_listings(result) if kind == "login"] == ["early-login"]
    assert container_heads(result)[1:] == ["early-warm-up", "MainThread"]  # the first: the quick check's, anonymous


def test_nothing_heavy_is_loaded_before_a_run_sends_its_first_requests(source, sync, glance):
    mirrors, _ = synced_with_one_hidden_by_an_operator(source, sync, glance)
    heavy = ("logging", "dataclasses", "concurrent.futures", "pydantic", "keystoneauth1")
    heavy += ("simplestreams_sync.quick_check",)
    loaded_at_start = (
        "import sys, simplestreams_sync.early_login as early; start = early.start; loaded = []; "
        f"early.start = lambda *a: (loaded.extend(m for m in {heavy!r} if m in sys.modules), start(*a))[1]"
    )

    result = run_reporting(sync, mirrors, "print('loaded:', loaded)", first=loaded_at_start)

    assert QUICK in result.stdout
    assert result.stdout.splitlines()[-1] == "loaded: []"
