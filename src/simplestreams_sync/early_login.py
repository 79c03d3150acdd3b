"""A run's first requests, sent as soon as it holds the lock and before it loads anything heavy (the quick
check's modules, pydantic, keystoneauth, simplestreams), so that Keystone and Glance answer meanwhile:
- the Keystone login keystoneauth's v3.Password makes (api.py), whose answer carries the token and its
  catalog, without a proxy, trusting the sync's CAs;
- then, with that token, the listings of our images in Glance (api.image_list_urls), one after the other
  so that Glance validates the new token with Keystone once.
What they send comes from identity.yaml and mirrors.yaml as written. Standard library and PyYAML.

The quick check and the full run take an answer only for the very request they would send themselves
(the same login; the same listing URL with the same token), a listing only once; otherwise, or when the
request failed, they send their own (which then says what is wrong)."""

from __future__ import annotations

import json
import threading

from . import api, timeouts
from .raw_http import open_url, system_ca_certificates

# identity.yaml's fields of a login, with IdentityConfig's defaults (config.py); a login sent with any
# other value than the validated identity's is not used.
FIELDS = {"auth_url": None, "username": None, "password": None, "project_name": None,
          "user_domain_name": "Default", "project_domain_name": "Default", "ca_file": None}  # fmt: skip
# Where the listings go: identity.yaml's region and interface, mirrors.yaml's content_id_template and
# region, with the defaults of IdentityConfig and SyncOptions (config.py).
LISTING_DEFAULTS = {"region": "RegionOne", "interface": "public", "content_id_template": "auto.sync"}


class Pending:
    """The answer of a request sent in the background (concurrent.futures would load logging first)."""

    def __init__(self) -> None:
        self._done = threading.Event()
        self._value: object = None
        self._error: BaseException | None = None

    def set(self, value: object = None, error: BaseException | None = None) -> None:
        self._value, self._error = value, error
        self._done.set()

    def result(self) -> object:
        self._done.wait()
        if self._error is not None:
            raise self._error
        return self._value


_lock = threading.Lock()
_login: tuple[tuple, Pending] | None = None  # (login_key of the request, its (token, answer))
_listings: dict[tuple[str, str], Pending] = {}  # (URL, token) -> the images of every page


def login_key(token_url: str, body: dict, verify: str | bool) -> tuple:
    """What makes two logins the same request: where it goes, what it says, whom it trusts."""
    return token_url, json.dumps(body, sort_keys=True), verify


def login(token_url: str, body: dict, verify: str | bool) -> tuple[str, dict]:
    """(token, Keystone's answer: {"token": ...}) of one password login (api.password_login)."""
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    data = json.dumps(body).encode()
    with open_url(token_url, headers, method="POST", data=data, verify=verify, timeout=timeouts.READ) as response:
        token = response.headers["X-Subject-Token"]
        answer = json.load(response)
    if not token or "token" not in answer:
        raise ValueError("keystone answered without a token")
    return token, answer


def start(identity_path: str, mirrors: dict | None = None) -> None:
    """Send the login identity.yaml (as written) describes, then the listings `mirrors` (mirrors.yaml as
    written) names, in the background; nothing when identity.yaml is not a readable mapping with every
    field a login needs (the full load then names the problem). Replaces what an earlier start sent."""
    import yaml

    from .yaml_file import read_yaml

    forget()
    try:
        identity = read_yaml(identity_path)
    except (OSError, yaml.YAMLError):
        return
    if not isinstance(identity, dict):
        return
    *needed, ca_file = (identity.get(name, default) for name, default in FIELDS.items())
    if not all(isinstance(value, str) and value for value in needed) or not isinstance(ca_file, (str, type(None))):
        return
    auth_url, user, password, project, user_domain, project_domain = (str(value) for value in needed)
    body = api.password_login(user, user_domain, password, project, project_domain)
    verify = ca_file or system_ca_certificates()
    key = login_key(api.token_url(auth_url), body, verify)
    answer = Pending()
    global _login
    with _lock:
        _login = (key, answer)
    where = listing_place({**LISTING_DEFAULTS, **identity}, mirrors) if mirrors is not None else None
    # A daemon: a run that ends early (a config error) does not wait for Keystone.
    threading.Thread(target=_send, args=(key, answer, where), name="early-login", daemon=True).start()


def listing_place(identity: dict, mirrors: dict) -> tuple[str, str, str] | None:
    """(region, interface, content_id) of the listings, or None when the files as written do not say."""
    region, interface = identity["region"], identity["interface"]
    template = mirrors.get("content_id_template", LISTING_DEFAULTS["content_id_template"])
    content_region = mirrors.get("region", LISTING_DEFAULTS["region"])
    if not all(isinstance(value, str) for value in (region, interface, template, content_region)):
        return None
    try:
        return region, interface, template.format(region=content_region)
    except (KeyError, IndexError, AttributeError, ValueError):
        return None


def _send(key: tuple, answer: Pending, where: tuple[str, str, str] | None) -> None:
    token_url, body, verify = key
    try:
        token, login_answer = login(token_url, json.loads(body), verify)
    except Exception as error:  # login_answer() hands out None; the caller's own login reports the problem
        answer.set(error=error)
        return
    endpoint, urls = _listings_of(login_answer["token"], where) if where else ("", [])
    pending = {url: Pending() for url in urls}
    with _lock:
        _listings.update({(url, token): listing for url, listing in pending.items()})
    answer.set((token, login_answer))
    for url, listing in pending.items():
        try:
            listing.set(_pages(endpoint, url, token, verify))
        except Exception as error:  # the caller lists again and reports what fails
            listing.set(error=error)


def _listings_of(token: dict, where: tuple[str, str, str]) -> tuple[str, list[str]]:
    """(Glance's endpoint, the first page of each listing of our images) for this token."""
    region, interface, content_id = where
    project_id = (token.get("project") or {}).get("id")
    endpoint = glance_in_catalog(token.get("catalog") or [], region, interface)
    if not (project_id and endpoint):
        return "", []
    return endpoint, api.image_list_urls(endpoint, project_id, content_id)


def glance_in_catalog(catalog: list, region: str, interface: str) -> str | None:
    """Glance's URL, without its version, in a Keystone v3 catalog, as keystoneauth picks it."""
    for service in catalog:
        if service.get("type") != "image":
            continue
        for endpoint in service.get("endpoints", []):
            if endpoint.get("interface") == interface and region in (endpoint.get("region_id"), endpoint.get("region")):
                return str(endpoint.get("url", "")).rstrip("/").removesuffix("/v2") or None
    return None


def _pages(endpoint: str, url: str, token: str, verify: str | bool) -> list[dict]:
    """Every page of one listing, from its first page's URL, each image without api.UNLISTED_FIELDS."""
    images: list[dict] = []
    next_url: str | None = url
    while next_url:
        headers = {"X-Auth-Token": token, "Accept": "application/json"}
        with open_url(next_url, headers, verify=verify, timeout=timeouts.READ) as response:
            page = json.load(response)
        images.extend({k: v for k, v in image.items() if k not in api.UNLISTED_FIELDS} for image in page["images"])
        next_url = endpoint + page["next"] if page.get("next") else None
    return images


def login_answer(key: tuple) -> tuple[str, dict] | None:
    """(token, Keystone's answer) of the login started for exactly this request (login_key); None when
    none was, or it failed."""
    with _lock:
        started = _login
    if started is None or started[0] != key:
        return None
    try:
        return started[1].result()  # type: ignore[return-value]
    except Exception:  # the caller logs in itself
        return None


def listing(url: str, token: str) -> list[dict] | None:
    """The images of the listing started for this URL with this token, once; None when none was, or it failed."""
    with _lock:
        started = _listings.pop((url, token), None)
    if started is None:
        return None
    try:
        return started.result()  # type: ignore[return-value]
    except Exception:
        return None


def forget() -> None:
    """Drop what was started: the next run (in the same process) sends its own."""
    global _login
    with _lock:
        _login = None
        _listings.clear()
