"""The full run's Keystone login, sent before its heavy imports (pydantic, keystoneauth, simplestreams)
so that Keystone answers while they load: the POST keystoneauth's v3.Password makes (api.py), whose answer
carries the token and its catalog, without a proxy, trusting the sync's CAs. Standard library and PyYAML.

openstack.Cloud takes the answer only for the very identity it validated, and only once; otherwise, or
when this login failed, it logs in through keystoneauth itself (which then says what is wrong)."""

from __future__ import annotations

import json
import threading
from concurrent.futures import Future

from . import api, timeouts
from .raw_http import open_url, system_ca_certificates

# identity.yaml's fields of a login, with IdentityConfig's defaults (config.py); a login sent with any
# other value than the validated identity's is not used.
FIELDS = {"auth_url": None, "username": None, "password": None, "project_name": None,
          "user_domain_name": "Default", "project_domain_name": "Default", "ca_file": None}  # fmt: skip

_lock = threading.Lock()
_started: dict[tuple, Future] = {}  # the login's fields (as FIELDS orders them) -> (token, its body)


def start(identity_path: str) -> None:
    """Send the login identity.yaml (as written) describes, in the background; nothing when it is not
    a readable mapping with every field a login needs (the full load then names the problem)."""
    import yaml

    from .yaml_file import read_yaml

    try:
        data = read_yaml(identity_path)
    except (OSError, yaml.YAMLError):
        return
    if not isinstance(data, dict):
        return
    fields = tuple(data.get(name, default) for name, default in FIELDS.items())
    *needed, ca_file = fields
    if not all(isinstance(value, str) and value for value in needed) or not isinstance(ca_file, (str, type(None))):
        return
    answer: Future = Future()
    with _lock:
        _started[fields] = answer
    # A daemon: a run that ends early (a config error) does not wait for Keystone.
    threading.Thread(target=_answer, args=(answer, fields), name="early-login", daemon=True).start()


def _answer(answer: Future, fields: tuple) -> None:
    try:
        answer.set_result(_login(*fields))
    except Exception as error:  # answer_for() hands out None; the caller's own login reports the problem
        answer.set_exception(error)


def answer_for(fields: tuple) -> tuple[str, dict] | None:
    """(token, Keystone's answer) of the login started for exactly these fields (as FIELDS orders them),
    once; None when none was, or it failed."""
    with _lock:
        login = _started.pop(fields, None)
    if login is None:
        return None
    try:
        return login.result()
    except Exception:  # the caller logs in itself
        return None


def _login(auth_url, user, password, project, user_domain, project_domain, ca_file) -> tuple[str, dict]:
    body = api.password_login(user, user_domain, password, project, project_domain)
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    data = json.dumps(body).encode()
    verify = ca_file or system_ca_certificates()
    url = api.token_url(auth_url)
    with open_url(url, headers, method="POST", data=data, verify=verify, timeout=timeouts.READ) as response:
        token = response.headers["X-Subject-Token"]
        answer = json.load(response)
    if not token or "token" not in answer:
        raise ValueError("keystone answered without a token")
    return token, answer
