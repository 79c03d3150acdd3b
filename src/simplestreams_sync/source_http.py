"""HTTP from the source: errors are errors, transient ones retried with backoff, dropped downloads resumed
(with If-Range, so that a changed file is never spliced), every request bounded by timeouts.py."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from urllib.parse import urlparse

import requests
import urllib3

from . import timeouts
from .openstack import proxy_for
from .quick_check import Observations

LOG = logging.getLogger(__name__)

CHUNK_SIZE = 1024 * 1024
RETRIES = 3
RETRY_BACKOFF = 1.0  # seconds, doubled after each attempt
RETRIABLE_STATUS = {408, 429, 500, 502, 503, 504}
RESUME_ATTEMPTS = 5  # resumed connections in a row that bring no new byte, before giving up
RESUME_BACKOFF = 0.5  # seconds before the first resume, doubled after each one that brought nothing


class SourceError(Exception):
    """The source could not be read, or failed verification; the message says which file and why."""


class SourceChanged(SourceError):
    """A dropped download cannot continue where it stopped (the source ignores Range requests, or the
    file changed meanwhile): the image has to start again from its first byte."""


class HttpSession:
    """GETs with a user agent, bounded retries of transient failures, and clear errors."""

    def __init__(self, user_agent: str, proxies: dict | None = None, observations: Observations | None = None):
        self.session = requests.Session()
        self.session.headers["User-Agent"] = user_agent
        if proxies is not None:
            self.session.trust_env = False
            self.session.proxies.update(proxies)
        self.observations = observations or Observations()  # every metadata document read, for the quick check

    def proxy_for(self, url: str) -> str | None:
        return proxy_for(url, self.session.proxies, self.session.trust_env)

    def get(self, url: str, headers: dict | None = None) -> requests.Response:
        """A streamed 200 answer (or 206 to a Range request), after bounded retries of transient failures."""
        accepted = {200, 206} if headers and "Range" in headers else {200}
        delay = RETRY_BACKOFF
        for attempt in range(1, RETRIES + 1):
            try:
                response = self.session.get(url, headers=headers, stream=True, timeout=timeouts.source())
            except requests.Timeout as error:
                problem = _timeout_problem(error)
            except requests.ConnectionError as error:
                problem = f"cannot connect: {type(error).__name__}"
            else:
                if response.status_code in accepted:
                    return response
                response.close()
                problem = f"HTTP {response.status_code}"
                if response.status_code not in RETRIABLE_STATUS:
                    raise SourceError(f"{url}: {problem}")
            if attempt < RETRIES:
                LOG.warning("%s: %s; retrying in %.0fs (attempt %d of %d)", url, problem, delay, attempt, RETRIES)
                time.sleep(delay)
                delay *= 2
        raise SourceError(f"{url}: {problem} after {RETRIES} attempts")


def open_url_chunks(url: str, http: HttpSession) -> tuple[Iterator[bytes], Callable[[], None]]:
    """Chunks of a file:// or http(s):// URL, and a function that closes it."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        try:
            stream = open(parsed.path, "rb")  # noqa: SIM115 (the caller closes it through the returned function)
        except OSError as error:
            raise SourceError(f"{url}: {error.strerror}") from None
        return iter(lambda: stream.read(CHUNK_SIZE), b""), stream.close
    download = Download(url, http)
    return iter(download), download.close


class Download:
    """The bytes of one http(s) URL. When the connection drops or stalls, the download continues from
    the next byte with a `Range` request guarded by `If-Range` (the first answer's strong ETag, else its
    Last-Modified), so the consumer sees one uninterrupted stream. A source that answers the whole file
    instead (it ignores ranges, or the file changed) raises SourceChanged."""

    def __init__(self, url: str, http: HttpSession):
        self.url = url
        self.http = http
        self.response = http.get(url)
        self.validator = _validator(self.response)
        self.received = 0

    def close(self) -> None:
        self.response.close()

    def __iter__(self) -> Iterator[bytes]:
        fruitless, delay = 0, RESUME_BACKOFF
        while True:
            received_before = self.received
            # Undecoded reads hand over the bytes that came before a drop (a decoding read would
            # drop what it buffered); without a Content-Encoding they are the file's bytes.
            decode = self._encoding() != "identity"
            try:
                for chunk in self.response.raw.stream(CHUNK_SIZE, decode_content=decode):
                    self.received += len(chunk)
                    yield chunk
                return
            except (urllib3.exceptions.HTTPError, OSError) as error:
                problem = _connection_problem(error)
            if self.received > received_before:
                fruitless, delay = 0, RESUME_BACKOFF
            fruitless += 1
            self._give_up_unless_resumable(problem, fruitless)
            LOG.warning(
                "%s: %s after %d bytes; resuming from there in %.1fs (attempt %d of %d)",
                self.url,
                problem,
                self.received,
                delay,
                fruitless,
                RESUME_ATTEMPTS,
            )
            time.sleep(delay)
            delay *= 2
            self._resume()

    def _encoding(self) -> str:
        return self.response.headers.get("Content-Encoding", "identity").strip().lower() or "identity"

    def _give_up_unless_resumable(self, problem: str, fruitless: int) -> None:
        encoding = self._encoding()
        if encoding != "identity":
            raise SourceError(
                f"{self.url}: {problem} after {self.received} bytes (not resumable: the source "
                f"sent it with Content-Encoding {encoding}, so byte offsets are not the file's)"
            )
        if fruitless > RESUME_ATTEMPTS:
            raise SourceError(
                f"{self.url}: {problem} after {self.received} bytes; {RESUME_ATTEMPTS} "
                "attempts to resume from there brought no more"
            )

    def _resume(self) -> None:
        headers = {}
        if self.received:  # else a plain request starts it again
            headers["Range"] = f"bytes={self.received}-"
            if self.validator:
                headers["If-Range"] = self.validator
        try:
            response = self.http.get(self.url, headers=headers)
        except SourceChanged:
            raise
        except SourceError as error:
            raise SourceError(f"{error} (resuming after {self.received} bytes)") from None
        refusal = self._refusal(response)
        if refusal:
            response.close()
            raise SourceChanged(f"{self.url}: {refusal}")
        self.response.close()
        self.response = response

    def _refusal(self, response: requests.Response) -> str | None:
        """Why this answer to a resume request cannot continue the download, or None if it can."""
        if not self.received:
            return None
        old, new = _validator(self.response), _validator(response)
        if old and new and old != new:
            return f"changed since the download began ({old} is now {new})"
        if response.status_code != 206:
            return f"answered a request to resume at byte {self.received} with HTTP {response.status_code}, not 206"
        start = _range_start(response.headers.get("Content-Range", ""))
        if start != self.received:
            return f"answered a request to resume at byte {self.received} from byte {start}"
        return None


def _validator(response: requests.Response) -> str | None:
    """What If-Range can use: a strong ETag, else Last-Modified."""
    etag = response.headers.get("ETag")
    if etag and not etag.startswith("W/"):
        return etag
    return response.headers.get("Last-Modified")


def _range_start(content_range: str) -> int | None:
    """The first byte of `Content-Range: bytes FIRST-LAST/SIZE`."""
    unit, _, spec = content_range.partition(" ")
    try:
        return int(spec.split("-", 1)[0]) if unit == "bytes" else None
    except ValueError:
        return None


def _connection_problem(error: Exception) -> str:
    if isinstance(error, (urllib3.exceptions.ReadTimeoutError, TimeoutError)):
        return f"no answer within {timeouts.seconds(timeouts.SOURCE_READ)}"
    return f"connection lost ({type(error).__name__})"


def _timeout_problem(error: requests.Timeout) -> str:
    if isinstance(error, requests.ConnectTimeout):
        return f"no connection within {timeouts.seconds(timeouts.CONNECT)}"
    return f"no answer within {timeouts.seconds(timeouts.SOURCE_READ)}"
