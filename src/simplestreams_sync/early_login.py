"""A run's first requests, sent as soon as it holds the lock and before it loads anything heavy (the quick
check's modules, pydantic, keystoneauth, simplestreams), so that Keystone, Glance and Swift answer
meanwhile, one after the other (each validates the new token with Keystone once):
- the Keystone login keystoneauth's v3.Password makes (api.py), whose answer carries the token and its
  catalog, without a proxy, trusting the sync's CAs;
- then, with that token, the listings of our images in Glance (api.image_list_urls);
- then, for a full run that publishes to Swift without a proxy, a HEAD of the metadata's container, so
  that Swift has validated the token before the publish's requests go at once.
What they send comes from identity.yaml and mirrors.yaml as written. Standard library and PyYAML.

The quick check and the full run take an answer only for the very request they would send themselves
(the same login; the same listing URL with the same token), a listing only once; otherwise, or when the
request failed, they send their own (which then says what is wrong)."""

from __future__ import annotations

import json
import threading
import urllib.error

from . import api, timeouts
from .raw_http import open_url, system_ca_certificates

# identity.yaml's fields of a login, with IdentityConfig's defaults (config.py); a login sent with any
# other value than the validated identity's is not used.
FIELDS = {"auth_url": None, "username": None, "password": None, "project_name": None,
          "user_domain_name": "Default", "project_domain_name": "Default", "ca_file": None}  # fmt: skip
# Where the listings go: identity.yaml's region and interface, mirrors.yaml's content_id_template and
# region, with the defaults of IdentityConfig and SyncOptions (config.py).
LISTING_DEFAULTS = {"region": "RegionOne", "interface": "public", "content_id_template": "auto.sync"}
# mirrors.yaml's keys that send the metadata to Swift without a proxy, with SyncConfig's defaults.
DIRECT_TO_SWIFT = {"use_swift": True, "ignore_proxy_for_object_store": True, "local_metadata": None}


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


class FirstRequests:
    """What one run sent before its imports, and their answers."""

    def __init__(self, key: tuple, place: tuple[str, str, str] | None):
        self.key = key  # login_key() of the login
        self.place = place  # listing_place(): the endpoints' region and interface, our content id
        self.login = Pending()  # (token, Keystone's answer)
        self.listings: dict[tuple[str, str], Pending] = {}  # (URL, token) -> the images of every page
        self.listed = threading.Event()  # set once the listings are answered (or none is to be sent)
        self.warm_up: Pending | None = None  # (container URL, token) once Swift answered its HEAD


_lock = threading.Lock()
_current: FirstRequests | None = None


def login_key(token_url: str, body: dict, verify: str | bool) -> tuple:
    """What makes two logins the same request: where it goes, what it says, whom it trusts."""
    return token_url, json.dumps(body, sort_keys=True), verify


def login(key: tuple) -> tuple[str, dict]:
    """(token, Keystone's answer: {"token": ...}) of the password login `key` (login_key) names."""
    token_url, body, verify = key
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    data = body.encode()
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
    key = login_key(api.token_url(auth_url), body, ca_file or system_ca_certificates())
    place = listing_place({**LISTING_DEFAULTS, **identity}, mirrors) if mirrors is not None else None
    run = FirstRequests(key, place)
    global _current
    with _lock:
        _current = run
    # A daemon: a run that ends early (a config error) does not wait for Keystone.
    threading.Thread(target=_send, args=(run,), name="early-login", daemon=True).start()


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


def _send(run: FirstRequests) -> None:
    try:
        token, answer = login(run.key)
    except Exception as error:  # login_answer() hands out None; the caller's own login reports the problem
        run.login.set(error=error)
        run.listed.set()
        return
    endpoint, urls = _listings_of(answer["token"], run.place) if run.place else ("", [])
    pending = {url: Pending() for url in urls}
    with _lock:
        run.listings.update({(url, token): listing for url, listing in pending.items()})
    run.login.set((token, answer))
    for url, listing in pending.items():
        try:
            listing.set(_pages(endpoint, url, token, run.key[2]))
        except Exception as error:  # the caller lists again and reports what fails
            listing.set(error=error)
    run.listed.set()


def _listings_of(token: dict, place: tuple[str, str, str]) -> tuple[str, list[str]]:
    """(Glance's endpoint, the first page of each listing of our images) for this token."""
    region, interface, content_id = place
    project_id = (token.get("project") or {}).get("id")
    endpoint = (catalog_url(token.get("catalog") or [], "image", region, interface) or "").removesuffix("/v2")
    if not (project_id and endpoint):
        return "", []
    return endpoint, api.image_list_urls(endpoint, project_id, content_id)


def catalog_url(catalog: list, service_type: str, region: str, interface: str) -> str | None:
    """A service's URL in a Keystone v3 catalog for a region and interface, as keystoneauth picks it,
    without a trailing slash."""
    for service in catalog:
        if service.get("type") != service_type:
            continue
        for endpoint in service.get("endpoints", []):
            if endpoint.get("interface") == interface and region in (endpoint.get("region_id"), endpoint.get("region")):
                return str(endpoint.get("url", "")).rstrip("/") or None
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


def warm_up_object_store(mirrors: dict | None) -> None:
    """For a full run: once the listings are answered, a HEAD of the metadata's container with the token,
    when mirrors.yaml (as written) has the metadata go to Swift without a proxy, as the run's own
    object-store session then goes."""
    with _lock:
        run = _current
    if run is None or run.place is None or mirrors is None:
        return
    if any(mirrors.get(name, default) != default for name, default in DIRECT_TO_SWIFT.items()):
        return
    warmed = Pending()
    with _lock:
        run.warm_up = warmed
    threading.Thread(target=_head_container, args=(run, warmed), name="early-warm-up", daemon=True).start()


def _head_container(run: FirstRequests, warmed: Pending) -> None:
    try:
        logged_in: tuple[str, dict] = run.login.result()  # type: ignore[assignment]
        token, answer = logged_in
        run.listed.wait()
        region, interface, _ = run.place  # type: ignore[misc]
        storage = catalog_url(answer["token"].get("catalog") or [], "object-store", region, interface)
        if storage is None:
            warmed.set(None)
            return
        url = f"{storage}/{api.CONTAINER}"
        try:
            with open_url(url, {"X-Auth-Token": token}, method="HEAD", verify=run.key[2], timeout=timeouts.READ):
                pass
        except urllib.error.HTTPError:  # the container is not there yet: Swift validated the token all the same
            pass
        warmed.set((url, token))
    except Exception as error:  # the run's own warm-up goes instead
        warmed.set(error=error)


def login_answer(key: tuple) -> tuple[str, dict] | None:
    """(token, Keystone's answer) of the login started for exactly this request (login_key); None when
    none was, or it failed."""
    with _lock:
        run = _current
    if run is None or run.key != key:
        return None
    try:
        return run.login.result()  # type: ignore[return-value]
    except Exception:  # the caller logs in itself
        return None


def listing(url: str, token: str) -> list[dict] | None:
    """The images of the listing started for this URL with this token, once; None when none was, or it failed."""
    with _lock:
        started = _current.listings.pop((url, token), None) if _current else None
    if started is None:
        return None
    try:
        return started.result()  # type: ignore[return-value]
    except Exception:
        return None


def object_store_warmed_up(container_url: str, token: str) -> bool:
    """Whether Swift has answered a HEAD of this container with this token (warm_up_object_store), once
    that HEAD is answered."""
    with _lock:
        warmed = _current.warm_up if _current else None
    if warmed is None:
        return False
    try:
        return warmed.result() == (container_url, token)
    except Exception:
        return False


def forget() -> None:
    """Drop what was started: the next run (in the same process) sends its own."""
    global _current
    with _lock:
        _current = None
