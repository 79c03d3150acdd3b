"""Verification of image bytes while they stream from the source to Glance.

Every checksum the source lists (sha256, md5) and its size are checked on the stream itself: a mismatch
raises *before the last byte reaches Glance*, so Glance never completes an upload of wrong data. The
digest the stored image is checked with (Glance's md5 `checksum`, or its `os_hash_algo`, sha512 by
default) is computed on the same bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator

from .source import SourceError, SourceImage

CHECKSUM = "md5"  # the algorithm of Glance's `checksum` field, which it computes for every upload


def expected_source_digest(image: SourceImage) -> str:
    """The "algo:hex" the source lists for the image, in its strongest algorithm: what `source_digest`
    is once the bytes have passed."""
    return f"sha256:{image.sha256.lower()}" if image.sha256 else f"md5:{(image.md5 or '').lower()}"


class VerificationError(Exception):
    """Bytes from the source, or the image Glance stored, do not match what the source promised."""


class VerifyingStream:
    """Iterate over image chunks; raises VerificationError when size or checksums do not match.
    `stored_algo` is the digest Glance's answer is checked with: CHECKSUM, or Glance's os_hash_algo."""

    def __init__(
        self,
        image: SourceImage,
        chunks: Iterable[bytes],
        stored_algo: str,
        on_bytes: Callable[[int], None] = lambda n: None,
    ):
        self.image = image
        self._chunks = chunks
        self._on_bytes = on_bytes
        self.size = 0
        listed = {"sha256": image.sha256, "md5": image.md5}
        self._expected = {algo: value.lower() for algo, value in listed.items() if value}
        if not self._expected:
            raise VerificationError(f"{image.url}: the source gives no sha256 or md5 to verify against")
        self.stored_algo = stored_algo
        self._hashes = {algo: hashlib.new(algo) for algo in [*self._expected, stored_algo]}

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._source_chunks():
            self.size += len(chunk)
            if self.image.size is not None and self.size > self.image.size:
                raise VerificationError(
                    f"{self.image.url}: source sent more than the {self.image.size} bytes its metadata lists"
                )
            for digest in self._hashes.values():
                digest.update(chunk)
            self._on_bytes(len(chunk))
            if self.image.size is not None and self.size == self.image.size:
                self._check_source()
            yield chunk
        self._check_source()

    def _source_chunks(self) -> Iterator[bytes]:
        """The source's chunks; a broken source connection is reported as the source's fault (the HTTP
        stack sending to Glance would otherwise report it as a failed connection to Glance). A
        SourceError (a download that could not be resumed, or must restart) keeps its own words."""
        chunks = iter(self._chunks)
        while True:
            try:
                chunk = next(chunks)
            except StopIteration:
                return
            except SourceError:
                raise
            except Exception as error:
                raise VerificationError(
                    f"{self.image.url}: reading the source failed after {self.size} bytes: {type(error).__name__}"
                ) from None
            yield chunk

    def _check_source(self) -> None:
        if self.image.size is not None and self.size != self.image.size:
            raise VerificationError(f"{self.image.url}: got {self.size} bytes, the source lists {self.image.size}")
        for algo, expected in self._expected.items():
            digest = self._hashes[algo].hexdigest()
            if digest != expected:
                raise VerificationError(f"{self.image.url}: {algo} {digest} does not match the source's {expected}")

    @property
    def source_digest(self) -> str:
        """The "algo:hex" of the bytes, in the source's strongest algorithm."""
        algo = next(iter(self._expected))
        return f"{algo}:{self._hashes[algo].hexdigest()}"

    @property
    def stored_digest(self) -> str:
        """The "algo:hex" of the bytes in `stored_algo`: what Glance must answer for the stored image."""
        return f"{self.stored_algo}:{self._hashes[self.stored_algo].hexdigest()}"

    def check_stored(self, stored: dict) -> None:
        """Compare what Glance reports for the stored image with what went through this stream."""
        problems = []
        if stored.get("status") != "active":
            problems.append(f"status {stored.get('status')}")
        if stored.get("size") != self.size:
            problems.append(f"size {stored.get('size')} != {self.size}")
        digest = self._hashes[self.stored_algo].hexdigest()
        if self.stored_algo == CHECKSUM:
            if stored.get("checksum") != digest:
                problems.append(f"{CHECKSUM} checksum {stored.get('checksum')} != {digest}")
        elif stored.get("os_hash_algo") != self.stored_algo:
            problems.append(f"Glance hashed with {stored.get('os_hash_algo')}, expected {self.stored_algo}")
        elif stored.get("os_hash_value") != digest:
            problems.append(f"{self.stored_algo} {stored.get('os_hash_value')} != {digest}")
        if problems:
            raise VerificationError(f"Glance stored image {stored.get('id')} wrongly: " + "; ".join(problems))
