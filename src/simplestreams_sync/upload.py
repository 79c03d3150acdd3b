"""One new image into Glance: create it, send the verified bytes, check what Glance stored; on any error
delete it again, so that nothing half-made or wrong stays. An image is marked verified when it is
created, with the digests its bytes must have: Glance only makes it active once the stream has checked
them (transfer.py), and Glance's md5 `checksum` of what it stored must match the mark's, then and in
every later run (plan.py). A source without md5, and an import with conversion, are marked afterwards.
A download that cannot resume (the source changed) starts again from the first byte, with or without
the image-modifier."""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from .config import SyncConfig
from .image_properties import disk_format, image_properties
from .modify import ModifyHookError, modified_image, run_modify_hook
from .openstack import CloudError
from .plan import VERIFIED_PROPERTY, VERIFIED_STORED_PROPERTY
from .report import RunReport
from .source import SourceImage
from .source_http import HttpSession, SourceChanged, SourceError, open_url_chunks
from .state import ProgressFile
from .transfer import CHECKSUM, VerificationError, VerifyingStream, expected_source_digest

if TYPE_CHECKING:  # glanceclient is loaded only by a run that changes Glance (image_listing.py)
    from .glance import GlanceStore

LOG = logging.getLogger(__name__)

RESTARTS = 2  # times an image starts again from its first byte when its source cannot resume a download
IMPORT_POLL_FIRST = 0.5  # seconds between the first looks at an import's status, doubled up to the next
IMPORT_POLL_MAX = 5.0
# Held by Glance's import flow until its last step: until then the flow saves the image whole, dropping a
# property set meanwhile (such as the verified mark).
IMPORT_LOCK_PROPERTY = "os_glance_import_task"


class RunProgress:
    """Thread-safe progress of a run: item k of N and bytes done of total, kept in progress.json."""

    def __init__(self, progress_file: ProgressFile | None):
        self.file = progress_file
        self.lock = threading.Lock()
        self.bytes_done = 0
        self.items_started = 0

    def phase(self, phase: str, **details) -> None:
        if self.file:
            self.file.update(force=True, phase=phase, **details)

    def start_uploads(self, images: list[SourceImage]) -> None:
        total = sum(image.size or 0 for image in images)
        self.phase("uploading", item_count=len(images), bytes_total=total, item_index=0, bytes_done=0)

    def item_started(self, name: str) -> None:
        with self.lock:
            self.items_started += 1
            if self.file:
                self.file.update(force=True, item=name, item_index=self.items_started)

    def add_bytes(self, count: int) -> None:
        with self.lock:
            self.bytes_done += count
            if self.file:
                self.file.update(bytes_done=self.bytes_done)

    def close(self) -> None:
        if self.file:
            self.file.close()


class SyncStopped(BaseException):
    """Raised between two chunks of an upload once the run is asked to stop: the image is rolled back.
    Not an Exception, so that no handler of a failed read or upload mistakes it for one."""


class Uploader:
    """Uploads of one run: the source's bytes through a VerifyingStream into a new Glance image."""

    def __init__(
        self,
        glance: GlanceStore,
        http: HttpSession,
        config: SyncConfig,
        hash_algo: str,
        progress: RunProgress,
        report: RunReport,
        stop_reason: Callable[[], str | None] = lambda: None,
    ):
        self.stop_reason = stop_reason  # why to stop before the next chunk; None: go on
        self.glance = glance
        self.http = http
        self.config = config
        self.hash_algo = hash_algo
        self.progress = progress
        self.report = report

    def upload_reported(self, image: SourceImage, name: str) -> dict | None:
        """`upload`, reported as created or failed: the image as Glance stored it, or None (also when the
        run was asked to stop before it began)."""
        if self.stop_reason() is not None:
            return None
        self.progress.item_started(name)
        try:
            stored = self.upload(image, name)
        except (SourceError, VerificationError, CloudError, ModifyHookError) as error:
            self.report.failed(name, str(error))
            return None
        except SyncStopped:
            self.report.out(f"rolled back {name}: the run was asked to stop")
            return None
        except Exception as error:
            LOG.exception("unexpected error uploading %s", name)
            self.report.failed(name, f"{type(error).__name__}: {error}")
            return None
        self.report.created(stored, name)
        return stored

    def upload(self, image: SourceImage, name: str) -> dict:
        """The image as Glance stored and marked it; raises SourceError, VerificationError, CloudError or
        ModifyHookError when it could not, with nothing left in Glance."""
        restarts = 0
        while True:
            try:
                return self._attempt(image, name)
            except SourceChanged as error:
                if restarts == RESTARTS:
                    raise SourceChanged(f"{error} (after {RESTARTS} restarts)") from None
                restarts += 1
                self.report.out(f"restarting {name} from its first byte: {error}")

    def _attempt(self, image: SourceImage, name: str) -> dict:
        command = self.config.modify_hook  # the image-modifier's script, or what runs it as root
        if not command:
            return self._store(image, name)
        with tempfile.TemporaryDirectory(prefix="gss-modify-") as workdir:
            local = Path(workdir) / "image"
            self._copy_verified(image, local)
            run_modify_hook(command, local, image.metadata)
            return self._store(modified_image(image, local), name)

    def _copy_verified(self, image: SourceImage, local: Path) -> None:
        """The image-modifier's input: the source's bytes, verified, in a local file."""
        chunks, close = open_url_chunks(image.url, self.http)
        try:
            with open(local, "wb") as copy:
                for chunk in VerifyingStream(image, chunks, "sha256"):
                    copy.write(chunk)
        finally:
            close()

    def _store(self, image: SourceImage, name: str) -> dict:
        chunks, close = open_url_chunks(image.url, self.http)
        chunks = self._until_stopped(chunks)
        stream = None
        marked = bool(image.md5) and not self.config.image_import_conversion
        try:
            stored_algo = CHECKSUM if marked else self.hash_algo
            stream = VerifyingStream(image, chunks, stored_algo, on_bytes=self.progress.add_bytes)
            properties = image_properties(
                image, self.config.content_id, self.config.custom_properties, self.config.hypervisor_mapping
            )
            if marked:
                properties |= {
                    VERIFIED_PROPERTY: expected_source_digest(image),
                    VERIFIED_STORED_PROPERTY: f"{CHECKSUM}:{(image.md5 or '').lower()}",
                }
            ftype = disk_format(image.metadata.get("ftype"))
            image_id = self.glance.create(name, ftype, self.config.visibility, properties)["id"]
            try:
                return self._fill(image_id, stream, marked)
            except BaseException:
                self._roll_back(image_id)
                raise
        except SourceChanged:
            self.progress.add_bytes(-stream.size if stream else 0)
            raise
        finally:
            close()

    def _until_stopped(self, chunks):
        for chunk in chunks:
            if self.stop_reason() is not None:
                raise SyncStopped
            yield chunk

    def _roll_back(self, image_id: str) -> None:
        """Delete the image of a failed upload; a failure is logged (the next run deletes what is left)."""
        try:
            self.glance.delete(image_id)
        except CloudError as error:
            LOG.error("could not delete image %s: %s; the next sync will", image_id, error)

    def _fill(self, image_id: str, stream: VerifyingStream, marked: bool) -> dict:
        """Send the bytes; check what Glance stored against what went through the stream. Marked when
        created: Glance's answer to one GET. Otherwise the mark, naming the digest this run computed (a
        mark left on wrong bytes, whose rollback failed, then contradicts Glance's hash), is set now and
        its answer checked. Imported with conversion: Glance stores other bytes (raw), so the check is
        that it converted them."""
        if not self.config.image_import_conversion:
            self.glance.send_data(image_id, "file", stream)
            if marked:
                stored = self.glance.get(image_id)
            else:
                stored = self.glance.mark_verified(image_id, stream.source_digest, stream.stored_digest)
            stream.check_stored(stored)
            return stored
        self.glance.send_data(image_id, "stage", stream)
        self.glance.start_import(image_id)
        wait_for_import(self.glance, image_id, self.config.import_timeout)
        return self.glance.mark_verified(image_id, stream.source_digest)


def wait_for_import(glance: GlanceStore, image_id: str, timeout: int) -> dict:
    """The image once Glance has imported it as raw and its import flow has ended; CloudError when the
    import failed or took longer than `timeout` seconds, VerificationError when Glance did not convert it."""
    deadline = time.monotonic() + timeout
    delay = IMPORT_POLL_FIRST
    while True:
        stored = glance.get(image_id)
        status = stored.get("status")
        if status == "active" and IMPORT_LOCK_PROPERTY not in stored:
            if stored.get("disk_format") != "raw":
                raise VerificationError(
                    f"Glance imported {image_id} as {stored.get('disk_format')}, "
                    "not raw: is the image_conversion import plugin enabled?"
                )
            return stored
        if stored.get("os_glance_failed_import") or status == "killed":
            raise CloudError(f"glance: import of {image_id} failed (status {status})")
        if time.monotonic() > deadline:
            raise CloudError(f"glance: import of {image_id} not finished after {timeout}s (status {status})")
        time.sleep(delay)
        delay = min(delay * 2, IMPORT_POLL_MAX)
