"""How long the sync waits on the network: every request to Keystone, Glance, Swift or RGW, Nova and the
source names one of these, so that a connection accepted and then never answered ends the request.

Chosen for real clouds behind load balancers: a healthy API answers in seconds; an upload's answer after
its last byte can take minutes on Ceph RBD (Glance writes out and closes the image first).

Each can be overridden, in seconds, by the environment variable `SIMPLESTREAMS_SYNC_TIMEOUT_<NAME>`
(e.g. `SIMPLESTREAMS_SYNC_TIMEOUT_READ=5`): the tests make stalls end within seconds that way. The charm
never sets them (the sync runs with a clean environment).
"""

from __future__ import annotations

import os

ENV_PREFIX = "SIMPLESTREAMS_SYNC_TIMEOUT_"
DEFAULTS = {
    "CONNECT": 10.0,  # seconds to open a TCP (and TLS) connection
    "READ": 60.0,  # seconds an API call may go without receiving a byte
    "UPLOAD_ANSWER": 240.0,  # seconds Glance may take to answer once an upload's last byte is sent
    "SOURCE_READ": 60.0,  # seconds a download from the source may go without receiving a byte
    # seconds a run may go without progress (progress.json unchanged) before the watchdog ends it: longer
    # than any single wait above, retries and Glance's import included (import_timeout defaults to 1800)
    "NO_PROGRESS": 3600.0,
}


def _seconds(name: str) -> float:
    text = os.environ.get(ENV_PREFIX + name)
    if text is None:
        return DEFAULTS[name]
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if value <= 0:
        raise ValueError(f"{ENV_PREFIX}{name}={text!r}: not a positive number of seconds")
    return value


CONNECT = _seconds("CONNECT")
READ = _seconds("READ")
UPLOAD_ANSWER = _seconds("UPLOAD_ANSWER")
SOURCE_READ = _seconds("SOURCE_READ")
NO_PROGRESS = _seconds("NO_PROGRESS")


def api() -> tuple[float, float]:
    """(connect, read) for requests and keystoneauth sessions."""
    return (CONNECT, READ)


def source() -> tuple[float, float]:
    """(connect, read) for the source's downloads."""
    return (CONNECT, SOURCE_READ)


def seconds(value: float) -> str:
    """A deadline as error messages give it: '60 s', '2.5 s'."""
    return f"{value:g} s"
