"""Verification of image bytes while they stream from the source to Glance.

The source's checksum and size are checked on the stream itself: a mismatch raises *before the last
byte reaches Glance*, so Glance never completes an upload of wrong data. The hash Glance will report
(`os_hash_algo`, sha512 by default) is computed on the same bytes so the stored image can be checked too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator

from .source import SourceError, SourceImage


class VerificationError(Exception):
    """Bytes from the source, or the image Glance stored, do not match what the source promised."""


class VerifyingStream:
    """Iterate over image chunks; raises VerificationError when size or checksum do not match."""

    def __init__(
        self,
        image: SourceImage,
        chunks: Iterable[bytes],
        glance_hash_algo: str,
        on_bytes: Callable[[int], None] = lambda n: None,
    ):
        self.image = image
        self._chunks = chunks
        self._on_bytes = on_bytes
        self.size = 0
        if image.sha256:
            self.source_algo, self.source_expected = "sha256", image.sha256.lower()
        elif image.md5:
            self.source_algo, self.source_expected = "md5", image.md5.lower()
        else:
            raise VerificationError(f"{image.url}: the source gives no sha256 or md5 to verify against")
        self._source_hash = hashlib.new(self.source_algo)
        self.glance_hash_algo = glance_hash_algo
        # A Glance configured to hash with the source's algorithm needs no second pass over the bytes.
        self._hashes = [self._source_hash]
        if glance_hash_algo == self.source_algo:
            self._glance_hash = self._source_hash
        else:
            self._glance_hash = hashlib.new(glance_hash_algo)
            self._hashes.append(self._glance_hash)

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._source_chunks():
            self.size += len(chunk)
            if self.image.size is not None and self.size > self.image.size:
                raise VerificationError(
                    f"{self.image.url}: source sent more than the {self.image.size} bytes its metadata lists"
                )
            for digest in self._hashes:
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
        digest = self._source_hash.hexdigest()
        if digest != self.source_expected:
            raise VerificationError(
                f"{self.image.url}: {self.source_algo} {digest} does not match the source's {self.source_expected}"
            )

    @property
    def source_digest(self) -> str:
        return f"{self.source_algo}:{self._source_hash.hexdigest()}"

    @property
    def glance_digest(self) -> str:
        return self._glance_hash.hexdigest()

    def check_stored(self, stored: dict) -> None:
        """Compare what Glance reports for the stored image with what went through this stream."""
        problems = []
        if stored.get("status") != "active":
            problems.append(f"status {stored.get('status')}")
        if stored.get("size") != self.size:
            problems.append(f"size {stored.get('size')} != {self.size}")
        algo = stored.get("os_hash_algo")
        if algo != self.glance_hash_algo:
            problems.append(f"Glance hashed with {algo}, expected {self.glance_hash_algo}")
        elif stored.get("os_hash_value") != self.glance_digest:
            problems.append(f"{algo} {stored.get('os_hash_value')} != {self.glance_digest}")
        if problems:
            raise VerificationError(f"Glance stored image {stored.get('id')} wrongly: " + "; ".join(problems))
