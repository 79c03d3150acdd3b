"""The sync engine's command line and the OpenStack clients' environment, as the tests, the demo and the
bench run them against the local cloud."""

from __future__ import annotations

import os
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"


def engine_argv(mirrors: Path, identity: Path, *extra: str) -> list[str]:
    """`python -m simplestreams_sync` with these config files, as cron runs it."""
    return [sys.executable, "-m", "simplestreams_sync", "--mirrors", str(mirrors), "--identity", str(identity), *extra]


def engine_env() -> dict[str, str]:
    """The environment with the engine importable from the repository's src/."""
    return {**os.environ, "PYTHONPATH": str(SRC)}


def openstack_env(identity: dict, **extra: str) -> dict[str, str]:
    """The environment plus the OS_* variables that let the OpenStack clients (openstack,
    sstream-mirror-glance) act as the sync's user."""
    return {
        **os.environ,
        "OS_AUTH_URL": identity["auth_url"],
        "OS_USERNAME": identity["username"],
        "OS_PASSWORD": identity["password"],
        "OS_PROJECT_NAME": identity["project_name"],
        "OS_USER_DOMAIN_NAME": identity["user_domain_name"],
        "OS_PROJECT_DOMAIN_NAME": identity["project_domain_name"],
        "OS_REGION_NAME": identity["region"],
        "OS_IDENTITY_API_VERSION": "3",
        **extra,
    }
