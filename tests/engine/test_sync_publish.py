"""The metadata container's read ACL, and object-store errors that keep their reason.

The answers below are those Swift and Ceph RGW give (tests/functional covers Swift for real; the RGW
answers are the ones recorded in the shared notes on RGW: 409 BucketAlreadyExists to a PUT of an
existing container whose ACL differs, plain-text error codes)."""

from __future__ import annotations

import socket

import pytest
import requests
from keystoneauth1 import exceptions as ks_exceptions
from keystoneauth1 import session as ks_session

from simplestreams_sync.object_store import (
    PUBLIC_READ_ACL,
    answer_text,
    ensure_public_container,
    grants_public_read,
    refusal,
    unreachable,
)
from simplestreams_sync.openstack import CloudError

CONTAINER_URL = "http://127.0.0.1:8080/v1/AUTH_p1/simplestreams"
SWIFT_FORBIDDEN = "<html><h1>Forbidden</h1><p>Access was denied to this resource.</p></html>"


def answer(status: int, reason: str, body: str = "", acl: str | None = None) -> requests.Response:
    response = requests.Response()
    response.status_code, response.reason, response._content = status, reason, body.encode()
    response.encoding = "utf-8"
    if acl is not None:
        response.headers["X-Container-Read"] = acl
    return response


class ObjectStore:
    """Gives the scripted answers in turn and notes each request: (method, X-Container-Read sent)."""

    def __init__(self, *answers: requests.Response):
        self.answers = list(answers)
        self.requests: list[tuple[str, str | None]] = []

    def __call__(self, method: str, url: str, **kwargs) -> requests.Response:
        assert url == (f"{CONTAINER_URL}?limit=1" if method == "GET" else CONTAINER_URL)
        self.requests.append((method, kwargs.get("headers", {}).get("X-Container-Read")))
        return self.answers.pop(0)


def test_a_missing_container_is_created_readable_by_anyone():
    store = ObjectStore(
        answer(404, "Not Found"), answer(201, "Created"), answer(204, "No Content", acl=".rlistings,.r:*")
    )

    assert ensure_public_container(store, CONTAINER_URL) == (".rlistings,.r:*", None)  # as the store spells it
    assert store.requests == [("HEAD", None), ("PUT", PUBLIC_READ_ACL), ("HEAD", None)]


@pytest.mark.parametrize("acl", [PUBLIC_READ_ACL, ".rlistings, .r:*", ".r:*,.rlistings,p1:reader"])
def test_a_container_anyone_may_read_and_list_is_left_alone(acl):
    store = ObjectStore(answer(204, "No Content", acl=acl))

    assert ensure_public_container(store, CONTAINER_URL) == (acl, None)
    assert store.requests == [("HEAD", None)]


@pytest.mark.parametrize("acl", [".r:example.com", ".r:*", ""])
def test_a_drifted_read_acl_is_set_again_with_post(acl):
    store = ObjectStore(
        answer(204, "No Content", acl=acl), answer(204, "No Content"), answer(204, "No Content", acl=PUBLIC_READ_ACL)
    )

    assert ensure_public_container(store, CONTAINER_URL) == (PUBLIC_READ_ACL, acl)
    assert store.requests == [("HEAD", None), ("POST", PUBLIC_READ_ACL), ("HEAD", None)]


def test_rgw_409_to_the_put_of_a_container_made_meanwhile_falls_back_to_post():
    store = ObjectStore(
        answer(404, "Not Found"),
        answer(409, "Conflict", "BucketAlreadyExists"),
        answer(204, "No Content", acl=".r:example.com"),
        answer(204, "No Content"),
        answer(204, "No Content", acl=PUBLIC_READ_ACL),
    )

    assert ensure_public_container(store, CONTAINER_URL) == (PUBLIC_READ_ACL, ".r:example.com")
    assert [method for method, _ in store.requests] == ["HEAD", "PUT", "HEAD", "POST", "HEAD"]


def test_rgw_409_for_a_bucket_of_another_account_says_so_and_what_to_do():
    store = ObjectStore(
        answer(404, "Not Found"), answer(409, "Conflict", "BucketAlreadyExists"), answer(404, "Not Found")
    )

    with pytest.raises(CloudError) as raised:
        ensure_public_container(store, CONTAINER_URL)

    message = str(raised.value)
    assert message.startswith(f"object store: PUT {CONTAINER_URL}: HTTP 409 Conflict: BucketAlreadyExists; ")
    assert "another account may own a bucket of that name" in message
    assert message.endswith("remove that bucket or turn implicit tenants on")


def test_a_read_acl_that_cannot_be_set_names_the_container_the_acl_and_the_fix():
    store = ObjectStore(answer(204, "No Content", acl=".r:example.com"), answer(403, "Forbidden", SWIFT_FORBIDDEN))

    with pytest.raises(CloudError) as raised:
        ensure_public_container(store, CONTAINER_URL)

    message = str(raised.value)
    assert message.startswith(f"container simplestreams at {CONTAINER_URL} has read ACL '.r:example.com', ")
    assert f"POST {CONTAINER_URL}: HTTP 403 Forbidden: Access was denied to this resource.; " in message
    assert message.endswith(f"swift post -r '{PUBLIC_READ_ACL}' simplestreams")


def test_a_refused_head_is_an_error_with_its_reason():
    store = ObjectStore(
        answer(401, "Unauthorized"),
        answer(
            401,
            "Unauthorized",
            "<html><h1>Unauthorized</h1><p>This server could not verify that you are authorized.</p></html>",
        ),
    )

    with pytest.raises(
        CloudError,
        match=r"GET \S+: HTTP 401 Unauthorized: This server could not verify that "
        r"you are authorized\.; the object store did not accept",
    ):
        ensure_public_container(store, CONTAINER_URL)


def test_a_container_the_sync_user_may_not_use_names_both_causes():
    store = ObjectStore(answer(403, "Forbidden"), answer(403, "Forbidden", "AccessDenied"))

    with pytest.raises(CloudError) as raised:
        ensure_public_container(store, CONTAINER_URL)

    assert store.requests == [("HEAD", None), ("GET", None)]  # the answer to the GET has the reason
    assert f"GET {CONTAINER_URL}: HTTP 403 Forbidden: AccessDenied; " in str(raised.value)
    assert "another project may own a container of that name" in str(raised.value)
    assert "lacks a role the object store treats as the account's operator" in str(raised.value)


def test_grants_public_read_needs_both_read_and_listing():
    assert grants_public_read(" .r:* ,.rlistings")
    assert not grants_public_read(".r:*")
    assert not grants_public_read(".r:example.com,.rlistings")


@pytest.mark.parametrize(
    "status, reason, advice",
    [
        (503, "Service Unavailable", "the object store failed: see its logs; the next sync tries again"),
        (507, "Insufficient Storage", "the object store is out of space"),
        (418, "I'm a teapot", None),
    ],
)
def test_refusal_keeps_status_reason_and_says_what_to_do(status, reason, advice):
    message = refusal(answer(status, reason, "<html><h1>Oops</h1><p>Details &amp; more.</p></html>"))

    assert message.startswith(f"HTTP {status} {reason}: Oops: Details & more.")
    assert (advice in message) if advice else message == f"HTTP {status} {reason}: Oops: Details & more."


def test_a_long_answer_keeps_its_start_and_its_end():
    body = "<html><h1>Bad Gateway</h1><p>" + "filler " * 300 + "upstream refused: Connection reset</p></html>"

    text = answer_text(body)

    assert len(text) <= 1000
    assert text.startswith("Bad Gateway: filler") and text.endswith("upstream refused: Connection reset")


def test_a_refused_connection_keeps_the_system_reason_and_the_url():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again below: nothing listens there
    url = f"http://127.0.0.1:{port}/v1/AUTH_p1/simplestreams/data/streams/v1/index.json"
    with pytest.raises(ks_exceptions.ConnectFailure) as raised:
        ks_session.Session().request(url, "GET", connect_retries=0)

    assert unreachable(raised.value) == (
        f"cannot connect to {url} ([Errno 111] Connection refused): check that the object store (Swift proxy "
        "or Ceph RGW) is running and reachable from this machine; the next sync publishes once it is"
    )


def test_a_timeout_says_timed_out():
    message = unreachable(ks_exceptions.ConnectTimeout(f"Request to {CONTAINER_URL} timed out"))

    assert message.startswith(f"cannot connect to {CONTAINER_URL} (timed out): ")
