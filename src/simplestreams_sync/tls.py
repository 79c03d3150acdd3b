"""TLS settings for the connections this package makes without requests (the quick check, uploads)."""

from __future__ import annotations

import os
import ssl


def tls_context(verify: str | bool) -> ssl.SSLContext:
    """A verifying client context: `verify` is a CA file or directory, or True for OpenSSL's default store."""
    if isinstance(verify, str):
        if os.path.isdir(verify):
            return ssl.create_default_context(capath=verify)
        return ssl.create_default_context(cafile=verify)
    return ssl.create_default_context()
