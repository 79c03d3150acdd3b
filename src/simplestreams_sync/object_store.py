"""The object store's side of publishing (Swift or Ceph RGW): a container anyone may read, and what its
error answers mean, in one line with what to do."""

from __future__ import annotations

import html
import re

from .api import CONTAINER
from .openstack import CloudError, timed_out
from .text import shorten

PUBLIC_READ_ACL = ".r:*,.rlistings"
PUBLIC_READ_GRANTS = {".r:*", ".rlistings"}  # anyone may read objects, anyone may list them


def ensure_public_container(send, container_url: str) -> tuple[str, str | None]:
    """Create the container readable by anyone, or give an existing one that read ACL again; return
    its read ACL as the store reports it and, when it had to be set again, the one found.
    `send(method, url, **kwargs)` makes one request to the object store and returns its answer
    whatever the status.

    An existing container's ACL is set with POST: Swift also accepts a PUT, but Ceph RGW answers a PUT
    of an existing container whose ACL differs with 409 BucketAlreadyExists and keeps the old ACL."""

    def head():
        answer = send("HEAD", container_url)
        if answer.status_code < 400 or answer.status_code == 404:
            return answer
        # A HEAD answer has no body: the answer to a GET says why (Ceph RGW: AccessDenied, Swift: a page).
        answer = send("GET", f"{container_url}?limit=1")
        todo = CONTAINER_FORBIDDEN if answer.status_code == 403 else ""
        raise CloudError(f"object store: GET {container_url}: {refusal(answer, todo)}")

    found = head()
    if found.status_code == 404:
        headers = {"X-Container-Read": PUBLIC_READ_ACL}
        created = checked(send("PUT", container_url, headers=headers), "PUT", container_url, allow=(409,))
        if created.status_code != 409:
            return _read_acl(head()), None
        found = head()  # made meanwhile, or another account's
        if found.status_code == 404:
            raise CloudError(f"object store: PUT {container_url}: {refusal(created, NAME_TAKEN)}")
    acl = _read_acl(found)
    if grants_public_read(acl):
        return acl, None
    try:
        checked(send("POST", container_url, headers={"X-Container-Read": PUBLIC_READ_ACL}), "POST", container_url)
    except CloudError as error:
        raise CloudError(
            f"container {CONTAINER} at {container_url} has read ACL {acl!r}, which keeps anonymous "
            f"readers (Juju) out, and setting {PUBLIC_READ_ACL!r} failed: {error}; set it as the "
            f"container's owner: swift post -r '{PUBLIC_READ_ACL}' {CONTAINER}"
        ) from None
    return _read_acl(head()), acl


def _read_acl(head_answer) -> str:
    """The read ACL in a HEAD answer, in the store's own spelling (RGW may order the grants otherwise)."""
    return head_answer.headers.get("X-Container-Read", "")


def checked(response, method: str, url: str, allow: tuple[int, ...] = ()):
    """The answer, unless it is an error (other than the `allow`ed statuses): CloudError saying why."""
    if response.status_code >= 400 and response.status_code not in allow:
        raise CloudError(f"object store: {method} {url}: {refusal(response)}")
    return response


def grants_public_read(acl: str) -> bool:
    """Whether a container read ACL lets anyone read objects and list them (in any order, with more grants)."""
    return {grant.strip() for grant in acl.split(",")} >= PUBLIC_READ_GRANTS


# -- errors ---------------------------------------------------------------------------------------
MAX_ANSWER_TEXT = 1000  # characters of an error body kept; a longer one is a page, not a reason

WHAT_TO_DO = {
    401: "the object store did not accept the sync user's token: check that it validates tokens with "
    "this Keystone (Swift: the proxy's authtoken filter; Ceph RGW: rgw keystone url)",
    403: "the sync user may not write here: give it a role the object store treats as the account's "
    "operator (Swift: operator_roles of keystoneauth; Ceph RGW: rgw keystone accepted roles)",
    404: "the account or container is not there: check the object-store endpoint in the Keystone catalog",
    409: "the object store reports a conflict with another change; the next sync tries again",
    413: "the object store refuses the size: raise the account's quota or the maximum object size",
    507: "the object store is out of space: free or add capacity, then run the sync again",
}
SERVER_FAILED = "the object store failed: see its logs; the next sync tries again"
CONTAINER_FORBIDDEN = (
    f"the sync user may not use the container {CONTAINER}: another project may own a "
    "container of that name (Ceph RGW without implicit tenants shares names between "
    "projects), or the user lacks a role the object store treats as the account's operator "
    "(Swift: operator_roles of keystoneauth; Ceph RGW: rgw keystone accepted roles)"
)
NAME_TAKEN = (
    f"the container {CONTAINER} cannot be created and is not this account's: on Ceph RGW bucket "
    "names are shared by all accounts unless rgw keystone implicit tenants is on, so another "
    "account may own a bucket of that name; remove that bucket or turn implicit tenants on"
)


def refusal(response, todo: str = "") -> str:
    """An object-store error answer in one line: status, the store's own reason text (Swift: an HTML
    page; Ceph RGW: a code such as BucketAlreadyExists) and what to do about it (`todo`, or what
    usually helps with that status)."""
    status = response.status_code
    reason = response.reason or ""
    text = answer_text(response.text or "", reason)
    todo = todo or WHAT_TO_DO.get(status) or (SERVER_FAILED if status >= 500 else "")
    return "; ".join(part for part in (f"HTTP {status} {reason}".strip() + (f": {text}" if text else ""), todo) if part)


def answer_text(body: str, reason: str = "") -> str:
    """The words of an error body (HTML or XML tags dropped, entities decoded, whitespace collapsed),
    without a repeat of the HTTP reason phrase; a page-long one keeps its start and its end."""
    pieces = [" ".join(html.unescape(piece).split()) for piece in re.split(r"<[^>]*>", body)]
    return shorten(": ".join(piece for piece in pieces if piece and piece != reason), MAX_ANSWER_TEXT)


def unreachable(error: Exception) -> str:
    """A connection failure in one line: the URL, the system's reason (which keystoneauth puts at the
    end of a long message) and what to do."""
    deadline = timed_out(error)
    if deadline:
        return f"{deadline}: the object store (Swift proxy or Ceph RGW) accepted the connection and did not answer"
    message = " ".join(str(error).split())
    url = re.search(r"(?:connection to|Request to|exception for) (\S+?):? ", message)
    errno = re.search(r"\[Errno -?\d+\] [^'\")\]]+", message)
    if errno:
        reason = errno.group(0).strip()
    elif "timed out" in message:
        reason = "timed out"
    else:
        reason = message
    return (
        f"cannot connect to {url.group(1) if url else 'it'} ({reason}): check that the object store "
        "(Swift proxy or Ceph RGW) is running and reachable from this machine; the next sync publishes "
        "once it is"
    )
