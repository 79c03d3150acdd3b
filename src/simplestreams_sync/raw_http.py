"""The requests the sync makes below requests and keystoneauth, each for a measured reason (bench/README.md):
- `chunked_put`, the image upload: one HTTP chunk per verified piece, sent without copying it;
- `open_url`, the quick check's requests (a Keystone token, GETs and HEADs): the standard library only,
  so that a run with nothing to do ends before the heavy imports.
"""

from __future__ import annotations

import http.client
import os
import ssl
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

from . import timeouts


def system_ca_certificates() -> str | bool:
    """The machine's trust store, which update-ca-certificates maintains: OpenSSL's default CA file
    (Ubuntu: /usr/lib/ssl/cert.pem -> /etc/ssl/certs/ca-certificates.crt) or directory. Not requests'
    default, certifi's own copy of Mozilla's CAs, which knows nothing of the CAs this machine trusts.
    SSL_CERT_FILE/SSL_CERT_DIR are not followed (nothing is taken from the environment)."""
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.openssl_cafile, paths.openssl_capath):
        if candidate and os.path.exists(candidate):
            return candidate
    return True


def tls_context(verify: str | bool) -> ssl.SSLContext:
    """A verifying client context: `verify` is a CA file or directory, or True for OpenSSL's default store."""
    if isinstance(verify, str):
        if os.path.isdir(verify):
            return ssl.create_default_context(capath=verify)
        return ssl.create_default_context(cafile=verify)
    return ssl.create_default_context()


def open_url(
    url: str,
    headers: dict,
    *,
    verify: str | bool,
    timeout: float,
    method: str = "GET",
    proxy: str | None = None,
    data: bytes | None = None,
):
    """Urllib's opener: the given proxy or none (never the environment's), the given CAs."""
    scheme = urllib.parse.urlsplit(url).scheme
    handlers: list = [urllib.request.ProxyHandler({scheme: proxy} if proxy else {})]
    if scheme == "https":
        handlers.append(urllib.request.HTTPSHandler(context=tls_context(verify)))
    opener = urllib.request.build_opener(*handlers)
    return opener.open(urllib.request.Request(url, data=data, headers=headers, method=method), timeout=timeout)


class NoAnswer(TimeoutError):
    """The server took none of the body, or sent no answer, within its deadline (timeouts.py)."""


def chunked_put(
    url: str, pieces: Iterable[bytes | memoryview], headers: dict[str, str], *, verify: str | bool
) -> tuple[int, str]:
    """PUT `pieces` as an HTTP/1.1 chunked body, one HTTP chunk per piece; returns (status, body).

    Deadlines (timeouts.py): CONNECT to connect, READ for each piece to leave, UPLOAD_ANSWER for the
    answer once the last byte has left (Glance stores the image before it answers); NoAnswer after one.

    On a plain connection each chunk leaves in one sendmsg(): its size line, the piece itself and the
    closing CRLF, so no piece is copied into a new bytes object on the way (http.client and urllib3
    format every chunk into one). Exceptions from `pieces` (a VerificationError) come out unchanged,
    with the body left unfinished, so the server never sees a complete upload.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        connection = http.client.HTTPSConnection(
            host, parts.port, timeout=timeouts.CONNECT, context=tls_context(verify)
        )
    else:
        connection = http.client.HTTPConnection(host, parts.port, timeout=timeouts.CONNECT)
    try:
        try:
            connection.connect()
        except TimeoutError:
            raise NoAnswer(f"{url}: no connection within {timeouts.seconds(timeouts.CONNECT)}") from None
        connection.sock.settimeout(timeouts.READ)
        connection.putrequest("PUT", parts.path + (f"?{parts.query}" if parts.query else ""), skip_accept_encoding=True)
        for name, value in {**headers, "Transfer-Encoding": "chunked"}.items():
            connection.putheader(name, value)
        connection.endheaders()
        send = _chunk_sender(connection.sock)
        try:
            for piece in pieces:
                if len(piece):
                    send(b"%x\r\n" % len(piece), piece, b"\r\n")
            connection.sock.sendall(b"0\r\n\r\n")
        except TimeoutError:
            raise NoAnswer(
                f"{url}: no answer within {timeouts.seconds(timeouts.READ)} (it took no more of the body)"
            ) from None
        except OSError:
            pass  # the server may have answered (and closed) before taking the whole body: read that answer
        connection.sock.settimeout(timeouts.UPLOAD_ANSWER)
        try:
            response = connection.getresponse()
            return response.status, response.read().decode(errors="replace")
        except TimeoutError:
            raise NoAnswer(
                f"{url}: no answer within {timeouts.seconds(timeouts.UPLOAD_ANSWER)} after the last byte"
            ) from None
    finally:
        connection.close()


def _chunk_sender(sock) -> Callable[..., None]:
    if isinstance(sock, ssl.SSLSocket):  # no sendmsg() on TLS sockets
        return lambda *parts: sock.sendall(b"".join(parts))

    def send(*parts) -> None:
        sent = sock.sendmsg(parts)
        if sent < sum(len(part) for part in parts):  # a partial send (a signal, a full buffer): the rest
            sock.sendall(b"".join(parts)[sent:])

    return send
